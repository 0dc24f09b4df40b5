"""The stock embedder in int8: static quantisation with activation ranges recorded from real chips.

`faceverify models int8-ranges` runs the float embedder over aligned chips (and their mirror images) of
labelled photos and records every activation's range in `training/quantisation/<float model id>.json`.
A build quantises the float graph with those ranges, so that it needs no data of its own: equal ranges
and an equal float graph give the same int8 graph. The int8 model is a model of its own, with its own id,
calibration and cohort: its embeddings differ from the float model's by up to about 0.01.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quant_pre_process,
    quantize_static,
)

from app.face.errors import FaceError
from app.face.pipeline import FacePipeline
from training.labelled import labelled_photos

RANGES_DIR = Path(__file__).resolve().parent / "quantisation"
INT8_SUFFIX = "-int8"
# 7-bit weights: u8 x s7 pair sums fit int16, so CPUs without VNNI (whose u8s8 kernels add pairs in
# int16) compute exactly what VNNI computes. Measured here: no slower, and DevTest figures unchanged.
REDUCE_RANGE = True


def ranges_file(model_id: str) -> Path:
    """Where the recorded activation ranges of a float model live."""
    return RANGES_DIR / f"{model_id}.json"


def int8_model_id(float_id: str, ranges: Path) -> str:
    """The int8 model's id: the float id's name, '-int8', and a hash of the float id and the ranges."""
    digest = hashlib.sha256(float_id.encode() + b"\0" + ranges.read_bytes()).hexdigest()[:8]
    name = float_id.rsplit("-", 1)[0]
    return f"{name}{INT8_SUFFIX}-{digest}"


class FeedReader(CalibrationDataReader):  # type: ignore[misc]
    """Calibration feeds for one input name, one array at a time."""

    def __init__(self, name: str, arrays: Sequence[npt.NDArray[Any]]) -> None:
        self._feeds: Iterator[dict[str, npt.NDArray[Any]]] = iter([{name: a} for a in arrays])

    def get_next(self) -> dict[str, npt.NDArray[Any]] | None:
        """The next feed, or None when they are used up."""
        return next(self._feeds, None)


def quantised(
    float_graph: Path,
    out: Path,
    feeds: CalibrationDataReader | None = None,
    ranges: Path | None = None,
    ops: list[str] | None = None,
    reduce_range: bool = REDUCE_RANGE,
) -> None:
    """QDQ int8 of the float graph (per-channel weights, u8 activations, MinMax ranges), quantising
    `ops` (default: every op it can). The ranges are read from `ranges` where that file exists, else
    measured on `feeds` (and written to `ranges` when it is given)."""
    with tempfile.TemporaryDirectory() as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(float_graph), str(prepared), skip_symbolic_shape=True)
        quantize_static(
            str(prepared),
            str(out),
            feeds,
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=ops,
            per_channel=True,
            reduce_range=reduce_range,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
            calibration_cache_path=str(ranges) if ranges is not None else None,
        )


def record_ranges(
    float_graph: Path, input_name: str, batches: list[npt.NDArray[np.uint8]], ranges: Path
) -> None:
    """Measure every activation's range over the chip batches and write them to `ranges`."""
    if not batches:
        raise ValueError("no chips to measure activation ranges on")
    ranges.parent.mkdir(parents=True, exist_ok=True)
    ranges.unlink(missing_ok=True)  # a stale file would be read instead of measured
    with tempfile.TemporaryDirectory() as tmp:
        quantised(float_graph, Path(tmp) / "int8.onnx", FeedReader(input_name, batches), ranges)
    # The tensors come out in no fixed order: sorted, equal ranges make equal files (and model ids).
    ranges.write_text(json.dumps(json.loads(ranges.read_text()), sort_keys=True) + "\n")


def quantise_with_ranges(float_graph: Path, ranges: Path, out: Path) -> None:
    """The int8 graph of the float one, from recorded ranges alone."""
    if not ranges.is_file():
        raise FileNotFoundError(f"no recorded activation ranges at {ranges}")
    quantised(float_graph, out, ranges=ranges)


def sampled_chips(
    pipeline: FacePipeline, images: Path, people_of: Path | None, count: int
) -> list[npt.NDArray[np.uint8]]:
    """Chips of the largest face of `count` photos spread over the labelled folder, each with its mirror
    image as the service embeds them; photos without a usable face are passed over."""
    photos = [path for path, _ in labelled_photos(images, people_of)]
    step = max(1, len(photos) // count)
    batches = []
    for path in photos[::step][:count]:
        try:
            photo = pipeline.decode_photo(path.read_bytes())
        except FaceError:
            continue
        usable = [d for d in pipeline.detect_photo(photo) if d.size >= pipeline.settings.min_face_size]
        if usable:  # largest first
            chip = pipeline.photo_chip(photo, usable[0])[None]
            batches.append(np.concatenate([chip, chip[:, :, ::-1]]))
    return batches
