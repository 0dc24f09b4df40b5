"""ONNX Runtime sessions for verified artifacts, on CUDA where available, else CPU."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

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


_pool_threads: int | None = None


def configure_threads(threads: int = 0) -> int:
    """Size the process-wide onnxruntime thread pool (0 = every core) before the first session opens.

    Every session shares this one pool: the detector's three nets and the embedder run one after
    another, and separate pools on the same cores fight over them (idle workers spin for work).
    The pool is made once; later calls keep it and return its size.
    """
    global _pool_threads
    if _pool_threads is None:
        _pool_threads = threads if threads > 0 else (os.cpu_count() or 1)
        ort.set_global_thread_pool_sizes(_pool_threads, 1)
    return _pool_threads


def session_options() -> ort.SessionOptions:
    """Options for any session of this process: full graph optimisation, on the shared pool."""
    configure_threads()
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.use_per_session_threads = False
    return options


def open_session(models_dir: Path, artifact: Artifact) -> ort.InferenceSession:
    """Verify the artifact's sha256, open it, and check its graph against the manifest."""
    path = verified_path(models_dir, artifact)
    session = ort.InferenceSession(str(path), session_options(), providers=available_providers())
    _check_specs("inputs", session.get_inputs(), artifact.inputs)
    _check_specs("outputs", session.get_outputs(), artifact.outputs)
    return session
