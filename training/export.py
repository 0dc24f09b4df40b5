"""ONNX export of torch modules into single self-contained files."""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import torch
from torch import nn

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
    return path


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
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
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
