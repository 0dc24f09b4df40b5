"""The serving engine: the inference threads, the admission limit (503) and a micro-batcher per
embedder, built around one face pipeline per embedder, all sharing the detector."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TypeVar

from threadpoolctl import threadpool_limits

from app.api.errors import Overloaded
from app.face.batcher import EmbedBatcher
from app.face.catalog import ModelCatalog
from app.face.detector import DetectorSettings, MtcnnDetector
from app.face.embedder import Embedder
from app.face.errors import ModelNotFound
from app.face.pipeline import FacePipeline, PipelineSettings, StageObserver, embed_directly
from app.face.runtime import WORKLOAD

T = TypeVar("T")


def counted(work: Callable[..., T], *args: object) -> T:
    """work(*args), counted in the process's workload while it runs (see ModelSession)."""
    with WORKLOAD.working():
        return work(*args)


def timed(work: Callable[..., T], *args: object) -> tuple[T, float]:
    """work(*args) and the milliseconds it took."""
    started = time.perf_counter()
    result = work(*args)
    return result, (time.perf_counter() - started) * 1000


@dataclass(frozen=True)
class EngineSettings:
    """How much work the engine takes on and how it batches embeddings."""

    workers: int = 4  # threads running the pipeline for requests
    max_pending: int = 64  # requests queued or running before 503
    max_batch: int = 16  # most chips in one embedder call
    max_batch_wait_ms: float = 0.0


class ServingEngine:
    """Runs blocking work for requests on a bounded pool, with a pipeline per embedder that
    micro-batches its chips; the first embedder is the default one."""

    def __init__(
        self,
        detector: MtcnnDetector,
        embedders: Sequence[Embedder],
        pipeline_settings: PipelineSettings,
        settings: EngineSettings,
        on_batch: Callable[[int], None] | None = None,
        on_stage: StageObserver | None = None,
    ) -> None:
        # numpy's (and faiss's) BLAS single-threaded: requests already run in parallel, and idle BLAS
        # workers spin after each product, taking the cores from ONNX Runtime (measured on 2 cores:
        # /identify, whose cohort statistics are one product, 55 ms p50 with them, 21 ms without).
        self._blas_limit = threadpool_limits(limits=1, user_api="blas")
        self._executor = ThreadPoolExecutor(max_workers=settings.workers, thread_name_prefix="inference")
        self._max_pending = settings.max_pending
        self._pending = 0
        self._lock = threading.Lock()
        self._batchers: list[EmbedBatcher] = []
        self.pipelines: dict[str, FacePipeline] = {}
        for embedder in embedders:
            # Waits for more chips only while more requests are in flight than it has gathered.
            batcher = EmbedBatcher(
                embed_directly(embedder, pipeline_settings),
                settings.max_batch,
                settings.max_batch_wait_ms,
                in_flight=lambda: self._pending,
                on_batch=on_batch,
            )
            self._batchers.append(batcher)
            self.pipelines[embedder.model_id] = FacePipeline(
                detector, embedder, pipeline_settings, embed_chips=batcher.embed, on_stage=on_stage
            )
        self.pipeline = self.pipelines[embedders[0].model_id]

    def pipeline_for(self, model_id: str) -> FacePipeline:
        """The pipeline of a loaded embedder (ModelNotFound for another)."""
        try:
            return self.pipelines[model_id]
        except KeyError:
            raise ModelNotFound(f"model {model_id!r} is not loaded") from None

    @classmethod
    def from_models(
        cls,
        models_dir: Path,
        pipeline_settings: PipelineSettings,
        detector_settings: DetectorSettings,
        settings: EngineSettings,
        on_batch: Callable[[int], None] | None = None,
        on_stage: StageObserver | None = None,
        default_model: str | None = None,
    ) -> ServingEngine:
        """Load and verify the detector and every embedder of the models folder (the default one first:
        the built one unless `default_model` names another), and start the engine around them."""
        catalog = ModelCatalog.load(models_dir)
        detector = MtcnnDetector(models_dir, catalog.manifest, detector_settings)
        default = catalog.find(default_model) if default_model else catalog.built
        ordered = [default, *(a for a in catalog.embedders() if a.id != default.id)]
        embedders = [Embedder(models_dir, artifact) for artifact in ordered]
        return cls(detector, embedders, pipeline_settings, settings, on_batch, on_stage)

    @property
    def pending(self) -> int:
        """Requests queued or running now."""
        return self._pending

    async def run(self, work: Callable[..., T], *args: object) -> T:
        """Run work(*args) on an inference thread; Overloaded (503) when the queue is full."""
        with self._lock:
            if self._pending >= self._max_pending:
                raise Overloaded()
            self._pending += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(
                self._executor, partial(counted, work, *args)
            )
        finally:
            with self._lock:
                self._pending -= 1

    async def run_timed(self, work: Callable[..., T], *args: object) -> tuple[T, float]:
        """run(), also returning the milliseconds the work itself took (queueing and hand-off excluded)."""
        return await self.run(timed, work, *args)

    def close(self) -> None:
        """Finish queued work, then stop the threads and the batcher."""
        self._executor.shutdown(wait=True)
        for batcher in self._batchers:
            batcher.close()
        self._blas_limit.restore_original_limits()
