"""ONNX export of torch modules into single self-contained files."""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch import nn

from app.face.manifest import Artifact, InputContract, Source, TensorSpec, Threshold, sha256_file
from app.face.runtime import session_options

OPSET = 18


def export_onnx(
    module: nn.Module,
    example: torch.Tensor,
    path: Path,
    input_name: str,
    output_names: Sequence[str],
    dynamic_axes: dict[int, str],
) -> Path:
    """Export module(example) to one ONNX file, with the named input axes dynamic."""
    module = module.eval()
    dims = {axis: torch.export.Dim(name) for axis, name in dynamic_axes.items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    # The exporter narrates every step on stdout and warns about optional torchvision ops.
    with (
        warnings.catch_warnings(),
        contextlib.redirect_stdout(io.StringIO()),
        _quiet_logger("torch.onnx"),
        torch.no_grad(),
    ):
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            (example,),
            str(path),
            input_names=[input_name],
            output_names=list(output_names),
            dynamic_shapes=(dims,),
            opset_version=OPSET,
            dynamo=True,
            external_data=False,
            verbose=False,
        )
    _make_reproducible(path, set(dynamic_axes.values()))
    return path


def _make_reproducible(path: Path, input_dims: set[str]) -> None:
    """Drop what varies between export runs, so one recipe always yields the same bytes.

    The exporter annotates nodes with source paths, and names derived dimensions after symbols
    whose numbering depends on what the process traced before. Neither is needed to run the graph.
    """
    model = onnx.load(str(path))
    graph = model.graph
    del model.metadata_props[:]
    del graph.metadata_props[:]
    del graph.value_info[:]  # intermediate shapes: onnxruntime infers them itself
    for group in (graph.node, graph.input, graph.output, graph.initializer):
        for item in group:
            del item.metadata_props[:]
    for output in graph.output:
        for axis, dim in enumerate(output.type.tensor_type.shape.dim):
            if dim.dim_param and dim.dim_param not in input_dims:
                dim.dim_param = f"{output.name}_{axis}"
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


@contextlib.contextmanager
def _quiet_logger(name: str) -> Any:
    logger = logging.getLogger(name)
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def check_parity(module: nn.Module, path: Path, inputs: Sequence[torch.Tensor], atol: float) -> float:
    """Run torch and ONNX Runtime on the same inputs; raise if any output differs by more than atol."""
    session = ort.InferenceSession(str(path), session_options(), providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name
    worst = 0.0
    for x in inputs:
        with torch.no_grad():
            expected = module(x)
        expected = expected if isinstance(expected, tuple) else (expected,)
        actual = session.run(None, {input_name: x.numpy()})
        for want, got in zip(expected, actual, strict=True):
            if tuple(want.shape) != got.shape:
                raise AssertionError(f"{path.name}: ONNX shape {got.shape} != torch {tuple(want.shape)}")
            if got.size:
                worst = max(worst, float(np.abs(want.numpy() - got).max()))
    if worst > atol:
        raise AssertionError(f"{path.name}: ONNX Runtime differs from torch by {worst:.2e} > {atol:.0e}")
    return worst


def rgb_input(
    dtype: Literal["uint8", "float32"],
    size: tuple[int, int] | None,
    normalisation: str,
    template: str | None = None,
    points: tuple[tuple[float, float], ...] | None = None,
) -> InputContract:
    """The contract of every model here: RGB pixels 0-255 in NHWC, normalised inside the graph."""
    return InputContract(
        layout="NHWC",
        channels="RGB",
        dtype=dtype,
        pixel_range=(0.0, 255.0),
        size=size,
        alignment_template=template,
        alignment_points=points,
        normalisation=normalisation,
    )


def embedder_artifact(
    path: Path,
    *,
    model_id: str,
    side: int,
    template: str,
    points: tuple[tuple[float, float], ...],
    normalisation: str,
    embedding_size: int,
    threshold: Threshold,
    source: Source,
) -> Artifact:
    """The manifest entry of an exported embedder: uint8 NHWC `chips` of side x side aligned by the
    template's points (chip pixels) in, unit `embeddings` out, compared by cosine."""
    return Artifact(
        id=model_id,
        role="embedder",
        file=path.name,
        sha256=sha256_file(path),
        bytes=path.stat().st_size,
        input_contract=rgb_input("uint8", (side, side), normalisation, template, points),
        inputs=(TensorSpec(name="chips", dtype="uint8", shape=(None, side, side, 3)),),
        outputs=(TensorSpec(name="embeddings", dtype="float32", shape=(None, embedding_size)),),
        embedding_size=embedding_size,
        distance="cosine",
        threshold=threshold,
        source=source,
    )
