"""ONNX Runtime sessions for verified artifacts, on CUDA where available, else CPU."""

from __future__ import annotations

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


def open_session(models_dir: Path, artifact: Artifact, threads: int = 0) -> ort.InferenceSession:
    """Verify the artifact's sha256, open it, and check its graph against the manifest."""
    path = verified_path(models_dir, artifact)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads  # 0 lets onnxruntime use every core
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # Several small sessions run one after another: idle workers spinning for work would steal the
    # cores from the next session (measured: MTCNN took 2.3x longer with spinning on 2 cores).
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(str(path), options, providers=available_providers())
    _check_specs("inputs", session.get_inputs(), artifact.inputs)
    _check_specs("outputs", session.get_outputs(), artifact.outputs)
    return session
