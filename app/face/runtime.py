"""ONNX Runtime sessions for verified artifacts, on CUDA where available, else CPU."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy.typing as npt
import onnxruntime as ort

from app.face.errors import ModelMismatch
from app.face.manifest import Artifact, TensorSpec, verified_path

_ORT_DTYPES = {"tensor(uint8)": "uint8", "tensor(float)": "float32"}
_PREFERRED_PROVIDERS = ("CUDAExecutionProvider", "CPUExecutionProvider")


def available_providers() -> list[str]:
    """The execution providers this onnxruntime build offers, best first."""
    offered = set(ort.get_available_providers())
    return [p for p in _PREFERRED_PROVIDERS if p in offered]


def _check_specs(kind: str, actual: Sequence[ort.NodeArg], expected: Sequence[TensorSpec]) -> None:
    got = [(a.name, _ORT_DTYPES.get(a.type, a.type), len(a.shape)) for a in actual]
    want = [(e.name, e.dtype, len(e.shape)) for e in expected]
    if got != want:
        raise ModelMismatch(f"model {kind} {got} do not match the manifest's {want}")
    for a, e in zip(actual, expected, strict=True):
        for axis, (dim, spec) in enumerate(zip(a.shape, e.shape, strict=True)):
            if spec is not None and dim != spec:
                raise ModelMismatch(f"{kind} {a.name!r} axis {axis} is {dim}, the manifest says {spec}")


_threads: int | None = None


def configure_threads(threads: int = 0) -> int:
    """Set how many cores one inference may use (0 = every core) before the first session opens.

    The count is set once; later calls keep it and return it.
    """
    global _threads
    if _threads is None:
        _threads = threads if threads > 0 else (os.cpu_count() or 1)
    return _threads


def session_options(threads: int | None = None) -> ort.SessionOptions:
    """Options for a session of this process: full graph optimisation, on `threads` intra-op threads
    (default: the configured count).

    Each session has its own pool, whose workers spin for work only while a run lasts: spinning
    between operators keeps a run fast, and workers that went on spinning after it would take the
    cores from the next model's run (measured on 2 cores: 3x slower).
    """
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads if threads is not None else configure_threads()
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "1")
    options.add_session_config_entry("session.force_spinning_stop", "1")
    return options


class Workload:
    """How many requests are being worked on in this process now (the serving engine counts them)."""

    def __init__(self) -> None:
        self._running = 0
        self._lock = threading.Lock()

    @contextmanager
    def working(self) -> Iterator[None]:
        """Count the caller's work while the block runs."""
        with self._lock:
            self._running += 1
        try:
            yield
        finally:
            with self._lock:
                self._running -= 1

    @contextmanager
    def standing_by(self, waiting: int) -> Iterator[None]:
        """Count `waiting` of the requests being worked on out while the block runs: they wait on the
        block's work (a micro-batch run for them all), which is one piece of work, not several."""
        with self._lock:
            taken = max(0, min(waiting, self._running - 1))
            self._running -= taken
        try:
            yield
        finally:
            with self._lock:
                self._running += taken

    @property
    def shared(self) -> bool:
        """Whether requests being worked on are at least as many as one inference's threads: then each
        core has a request of its own to run (with fewer, spreading each run over the cores wins)."""
        return self._running > 1 and self._running >= configure_threads()


WORKLOAD = Workload()


class ModelSession:
    """One model on ONNX Runtime: a session that spreads each run over every configured core, and one
    that keeps each run on its caller's thread, used while requests being worked on are at least as
    many as those cores, so that each core runs a request of its own.

    Splitting small operators over cores costs hand-offs: on 2 cores two requests at once, one core
    each, get through 1.3x the work of the same two sharing both cores. On CUDA there is one session.
    """

    def __init__(self, path: Path, providers: list[str]) -> None:
        threads = configure_threads()
        self.parallel = ort.InferenceSession(str(path), session_options(threads), providers=providers)
        gpu = self.parallel.get_providers()[0] != "CPUExecutionProvider"
        self.serial = (
            self.parallel
            if gpu or threads == 1
            else ort.InferenceSession(str(path), session_options(1), providers=providers)
        )

    def current(self) -> ort.InferenceSession:
        """The session that suits the process's workload now."""
        return self.serial if WORKLOAD.shared else self.parallel

    def run(
        self, outputs: list[str] | None, feeds: dict[str, npt.NDArray[Any]], small: bool = False
    ) -> list[Any]:
        """session.run on the session that suits the process's workload now; `small` work always runs
        on the caller's thread, where handing its operators to other cores costs more than it saves."""
        return list((self.serial if small else self.current()).run(outputs, feeds))

    def get_inputs(self) -> list[ort.NodeArg]:
        return list(self.parallel.get_inputs())

    def get_outputs(self) -> list[ort.NodeArg]:
        return list(self.parallel.get_outputs())

    def get_providers(self) -> list[str]:
        return [str(p) for p in self.parallel.get_providers()]


def open_session(models_dir: Path, artifact: Artifact) -> ModelSession:
    """Verify the artifact's sha256, open it, and check its graph against the manifest."""
    path = verified_path(models_dir, artifact)
    session = ModelSession(path, available_providers())
    _check_specs("inputs", session.get_inputs(), artifact.inputs)
    _check_specs("outputs", session.get_outputs(), artifact.outputs)
    return session
