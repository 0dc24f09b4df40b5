"""The serving engine: the inference threads, the admission limit (503) and the micro-batcher, built
around one face pipeline whose embeddings all go through that batcher."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TypeVar

from threadpoolctl import threadpool_limits

from app.api.errors import Overloaded
from app.face.batcher import EmbedBatcher
from app.face.detector import DetectorSettings, MtcnnDetector
from app.face.embedder import Embedder
from app.face.manifest import load_manifest
from app.face.pipeline import FacePipeline, PipelineSettings, StageObserver, embed_directly

T = TypeVar("T")


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
    """Runs blocking work for requests on a bounded pool, with a pipeline that micro-batches chips."""

    def __init__(
        self,
        detector: MtcnnDetector,
        embedder: Embedder,
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
        # Waits for more chips only while more requests are in flight than it has gathered.
        self._batcher = EmbedBatcher(
            embed_directly(embedder, pipeline_settings),
            settings.max_batch,
            settings.max_batch_wait_ms,
            in_flight=lambda: self._pending,
            on_batch=on_batch,
        )
        self.pipeline = FacePipeline(
            detector, embedder, pipeline_settings, embed_chips=self._batcher.embed, on_stage=on_stage
        )

    @classmethod
    def from_models(
        cls,
        models_dir: Path,
        pipeline_settings: PipelineSettings,
        detector_settings: DetectorSettings,
        settings: EngineSettings,
        on_batch: Callable[[int], None] | None = None,
        on_stage: StageObserver | None = None,
    ) -> ServingEngine:
        """Load and verify the manifest's detector and embedder, and start the engine around them."""
        manifest = load_manifest(models_dir)
        detector = MtcnnDetector(models_dir, manifest, detector_settings)
        embedder = Embedder(models_dir, manifest)
        return cls(detector, embedder, pipeline_settings, settings, on_batch, on_stage)

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
            return await asyncio.get_running_loop().run_in_executor(self._executor, partial(work, *args))
        finally:
            with self._lock:
                self._pending -= 1

    async def run_timed(self, work: Callable[..., T], *args: object) -> tuple[T, float]:
        """run(), also returning the milliseconds the work itself took (queueing and hand-off excluded)."""
        return await self.run(timed, work, *args)

    def close(self) -> None:
        """Finish queued work, then stop the threads and the batcher."""
        self._executor.shutdown(wait=True)
        self._batcher.close()
        self._blas_limit.restore_original_limits()
