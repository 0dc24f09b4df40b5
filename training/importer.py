"""`faceverify models import`: an embedder ONNX file made elsewhere (insightface's ArcFace, facenet-pytorch,
...) wrapped into the model contract, checked against the original on real faces, and written beside
the built models as `embedders/<model id>.onnx` with its card.

The contract: uint8 RGB `chips` (N, H, W, 3) in, unit `embeddings` (N, D) out. A preset says how the
file itself is fed (layout, channel order, chip size, pixel normalisation, alignment); the wrapper does
that feeding inside the graph, so that the service treats the import as it treats the built embedder.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper
from pydantic import BaseModel, ConfigDict, Field, PositiveFloat, ValidationError, model_validator

from app.face.align import BoxCut, ChipCut, FivePointCut, warp_chip
from app.face.catalog import IMPORTED_DIR, ModelCatalog, card_path, write_card
from app.face.errors import ImageError, ModelError
from app.face.manifest import Artifact, InputContract, Source, TensorSpec, Threshold, sha256_file
from app.face.pipeline import FacePipeline
from app.face.runtime import session_options
from training.calibrate import calibration_from, named_threshold, provisional_threshold, score_all_pairs
from training.cohort import DEFAULT_TOP_K, for_calibration, write_cohort
from training.labelled import LabelledFaces, embed_labelled, labelled_photos
from training.prepare import IMAGE_SUFFIXES

PRESETS_DIR = Path(__file__).resolve().parent / "presets"
PARITY_TOLERANCE = 1e-5
CHECK_PHOTOS = 16  # photos whose largest face checks the wrapped graph (each also mirrored)
NAME_CHARACTERS = r"[a-z0-9][a-z0-9._-]*"
CHIPS, EMBEDDINGS = "chips", "embeddings"
# Every name the wrapper adds starts with this, so that none can collide with the original graph's.
PREFIX = "faceverify_import/"
# The wrapper's Sub and Div broadcast numpy-style and its Cast takes an integer type: opset 7 onwards.
MIN_OPSET = 7

Log = Callable[[str], None]
Point = tuple[float, float]


class ImportRefused(ModelError):
    """The file, the preset or the request does not make a usable embedder; nothing was written."""

    code = "import_refused"


class CalibrationFailed(ModelError):
    """The model was imported, but calibrating it on the labelled photos failed; its card is uncalibrated."""

    code = "calibration_failed"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FivePoints(_Strict):
    """Similarity alignment of the five MTCNN landmarks (eyes, nose, mouth corners) onto chip points."""

    kind: Literal["five_points"]
    template_id: str
    points: tuple[Point, Point, Point, Point, Point]


class BoxCrop(_Strict):
    """The detector's box widened by a margin of chip pixels (split between the sides), resized."""

    kind: Literal["box"]
    template_id: str
    margin: float = Field(ge=0.0)


class Preset(_Strict):
    """How an embedder file is fed: layout, channel order, chip, pixel normalisation and alignment."""

    name: str = Field(pattern=f"^{NAME_CHARACTERS}$")
    description: str
    layout: Literal["NCHW", "NHWC"]
    channels: Literal["RGB", "BGR"]  # the order the graph wants; the service cuts RGB chips
    chip_size: int = Field(gt=0)
    # In the graph's channel order and 0-255 pixel units: the graph is fed (x - mean) / std.
    mean: tuple[float, float, float]
    std: tuple[PositiveFloat, PositiveFloat, PositiveFloat]
    alignment: FivePoints | BoxCrop = Field(discriminator="kind")
    # Informative only: the wrapper normalises at the end either way, and L2 of a unit vector is itself.
    output_normalised: bool

    @model_validator(mode="after")
    def _alignment_fits_the_chip(self) -> Preset:
        side = self.chip_size
        if isinstance(self.alignment, FivePoints):
            if not all(0.0 <= value <= side for point in self.alignment.points for value in point):
                raise ValueError(f"the alignment points must lie within the {side} px chip")
        elif self.alignment.margin >= side:
            raise ValueError(f"a margin of {self.alignment.margin:g} px leaves nothing of a {side} px chip")
        return self

    def cut(self) -> ChipCut:
        """How the service cuts this preset's chips."""
        if isinstance(self.alignment, FivePoints):
            return FivePointCut(self.alignment.points, self.chip_size)
        return BoxCut(self.alignment.margin, self.chip_size)

    def feeding(self) -> str:
        """Compact JSON (sorted keys) of what decides how a file is fed: all but the name and description."""
        fields = self.model_dump(mode="json", exclude={"name", "description"})
        return json.dumps(fields, sort_keys=True, separators=(",", ":"))


def preset_names() -> list[str]:
    """The presets that ship with the package."""
    return sorted(path.stem for path in PRESETS_DIR.glob("*.json"))


def load_preset(preset: str | Path) -> Preset:
    """A shipped preset by name, or a preset JSON file of the user's by path."""
    if isinstance(preset, str) and preset in preset_names():
        path = PRESETS_DIR / f"{preset}.json"
    elif Path(preset).is_file():
        path = Path(preset)
    else:
        raise ImportRefused(
            f"no preset {str(preset)!r}: give one of {', '.join(preset_names())} or the path of a preset "
            f"JSON file (the shipped ones in {PRESETS_DIR} show the fields)"
        )
    try:
        return Preset.model_validate_json(path.read_text())
    except (ValidationError, ValueError) as exc:
        raise ImportRefused(f"the preset {path} is not valid: {exc}") from None


@dataclass(frozen=True)
class GraphShape:
    """The one image input and the one output of an embedder graph, as it declares them."""

    input_name: str
    batch: int | None  # the input's fixed batch size; None where the axis is left open
    output_name: str


def _dims(value: onnx.ValueInfoProto) -> tuple[int | None, ...] | None:
    """A tensor's declared axes (None for an open one), or None when it declares no shape."""
    tensor = value.type.tensor_type
    if not tensor.HasField("shape"):
        return None
    return tuple(dim.dim_value if dim.dim_value > 0 else None for dim in tensor.shape.dim)


def _shape_text(dims: tuple[int | None, ...] | None) -> str:
    if dims is None:
        return "of undeclared shape"
    return "x".join("?" if dim is None else str(dim) for dim in dims)


def _dtype_name(elem_type: int) -> str:
    return str(TensorProto.DataType.Name(elem_type)).lower()


def _default_opset(model: onnx.ModelProto) -> int:
    versions = [int(entry.version) for entry in model.opset_import if entry.domain in ("", "ai.onnx")]
    if not versions:
        raise ImportRefused("the graph names no version of the standard ONNX operators")
    if versions[0] < MIN_OPSET:
        raise ImportRefused(
            f"the graph uses ONNX opset {versions[0]}; the wrapper needs {MIN_OPSET} or later: convert it "
            "with onnx.version_converter first"
        )
    return versions[0]


def _layout_hint(dims: tuple[int | None, ...], layout: str) -> str:
    """What the shape suggests instead, when the preset's layout misreads it."""
    if layout == "NCHW" and dims[3] == 3:
        return '; its last axis is 3: it looks NHWC (a preset with "layout": "NHWC")'
    if layout == "NHWC" and dims[1] == 3:
        return '; its second axis is 3: it looks NCHW (a preset with "layout": "NCHW")'
    return "; it does not take 3-channel colour images"


def _check_image_input(image: onnx.ValueInfoProto, preset: Preset) -> tuple[int | None, ...]:
    elem = image.type.tensor_type.elem_type
    if elem != TensorProto.FLOAT:
        raise ImportRefused(
            f"the graph's input {image.name!r} is {_dtype_name(elem)}: the presets feed float32 pixels"
        )
    dims = _dims(image)
    shape = _shape_text(dims)
    if dims is None or len(dims) != 4:
        raise ImportRefused(
            f"the graph's input {image.name!r} is {shape}: a batch of images has four axes ({preset.layout})"
        )
    channel_axis, rows, columns = (1, 2, 3) if preset.layout == "NCHW" else (3, 1, 2)
    if dims[channel_axis] != 3:
        raise ImportRefused(
            f"the graph's input {image.name!r} is {shape}: in the preset {preset.name!r}'s {preset.layout} "
            f"layout axis {channel_axis} holds the 3 colour channels, and here it is "
            f"{_shape_text((dims[channel_axis],))}{_layout_hint(dims, preset.layout)}"
        )
    side = preset.chip_size
    if any(dims[axis] not in (None, side) for axis in (rows, columns)):
        raise ImportRefused(
            f"the graph's input {image.name!r} is {shape}: it takes "
            f"{_shape_text((dims[rows], dims[columns]))} images, and the preset {preset.name!r} cuts "
            f"{side}x{side} chips"
        )
    return dims


def _declared_or_inferred(
    model: onnx.ModelProto, output: onnx.ValueInfoProto
) -> tuple[int | None, ...] | None:
    dims = _dims(output)
    if dims is not None:
        return dims
    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception:  # shape inference gives up on some custom graphs; the check run measures them
        return None
    found = [value for value in inferred.graph.output if value.name == output.name]
    return _dims(found[0]) if found else None


def _check_output(model: onnx.ModelProto, output: onnx.ValueInfoProto) -> None:
    elem = output.type.tensor_type.elem_type
    if elem != TensorProto.FLOAT:
        raise ImportRefused(f"the graph's output {output.name!r} is {_dtype_name(elem)}, not float32")
    dims = _declared_or_inferred(model, output)
    if dims is not None and len(dims) != 2:
        raise ImportRefused(
            f"the graph's output {output.name!r} is {_shape_text(dims)}: an embedder gives (N, D), one "
            "vector per image"
        )


def inspect_graph(model: onnx.ModelProto, preset: Preset) -> GraphShape:
    """The graph's one float image input and one output, refused where the preset does not fit them."""
    graph = model.graph
    _default_opset(model)
    initialised = {tensor.name for tensor in graph.initializer}
    inputs = [value for value in graph.input if value.name not in initialised]
    if len(inputs) != 1:
        names = ", ".join(repr(value.name) for value in inputs)
        raise ImportRefused(
            f"the graph takes {len(inputs)} inputs ({names}): an embedder takes one batch of images"
        )
    if len(graph.output) != 1:
        names = ", ".join(repr(value.name) for value in graph.output)
        raise ImportRefused(f"the graph gives {len(graph.output)} outputs ({names}): an embedder gives one")
    (image,), (output,) = inputs, graph.output
    dims = _check_image_input(image, preset)
    _check_output(model, output)
    return GraphShape(image.name, dims[0], output.name)


def _names_in(graph: onnx.GraphProto) -> set[str]:
    """Every tensor and node name of a graph and of the graphs inside its nodes."""
    names = {value.name for value in (*graph.input, *graph.output, *graph.value_info)}
    names |= {tensor.name for tensor in graph.initializer}
    for node in graph.node:
        names |= {node.name, *node.input, *node.output}
        for attribute in node.attribute:
            for inner in (*([attribute.g] if attribute.HasField("g") else []), *attribute.graphs):
                names |= _names_in(inner)
    return names


def _rename(graph: onnx.GraphProto, old: str, new: str) -> None:
    """Rename a tensor wherever the graph, or a graph inside its nodes, names it."""
    for value in (*graph.input, *graph.output, *graph.value_info):
        if value.name == old:
            value.name = new
    for tensor in graph.initializer:
        if tensor.name == old:
            tensor.name = new
    for node in graph.node:
        node.input[:] = [new if name == old else name for name in node.input]
        node.output[:] = [new if name == old else name for name in node.output]
        for attribute in node.attribute:
            for inner in (*([attribute.g] if attribute.HasField("g") else []), *attribute.graphs):
                _rename(inner, old, new)


def _free_contract_names(graph: onnx.GraphProto) -> dict[str, str]:
    """Move the original's own uses of `chips` and `embeddings` aside; the old -> new names."""
    names = _names_in(graph)
    if any(name.startswith(PREFIX) for name in names):
        raise ImportRefused("the graph holds names of an earlier import: import the original file instead")
    moved = {}
    for reserved in (CHIPS, EMBEDDINGS):
        if reserved in names:
            moved[reserved] = f"{PREFIX}original/{reserved}"
            _rename(graph, reserved, moved[reserved])
    return moved


def _constant(name: str, array: npt.NDArray[np.generic]) -> onnx.NodeProto:
    return helper.make_node("Constant", [], [name], name=name, value=numpy_helper.from_array(array, name))


def _step(op: str, inputs: list[str], output: str, **attributes: Any) -> onnx.NodeProto:
    """A node of the wrapper; each operator appears once in it, so its name is the prefixed operator."""
    return helper.make_node(op, inputs, [output], name=f"{PREFIX}{op}", **attributes)


def _feeding_nodes(preset: Preset, image_name: str) -> list[onnx.NodeProto]:
    """uint8 RGB NHWC chips -> the original's input, fed as the preset says."""
    pixels, mean, std = f"{PREFIX}pixels", f"{PREFIX}mean", f"{PREFIX}std"
    nodes = [_step("Cast", [CHIPS], pixels, to=TensorProto.FLOAT)]
    if preset.channels == "BGR":
        order, reordered = f"{PREFIX}bgr_order", f"{PREFIX}bgr"
        nodes += [
            _constant(order, np.array([2, 1, 0], np.int64)),
            _step("Gather", [pixels, order], reordered, axis=3),
        ]
        pixels = reordered
    nodes += [
        _constant(mean, np.array(preset.mean, np.float32).reshape(1, 1, 1, 3)),
        _constant(std, np.array(preset.std, np.float32).reshape(1, 1, 1, 3)),
        _step("Sub", [pixels, mean], f"{PREFIX}centred"),
    ]
    if preset.layout == "NHWC":
        return [*nodes, _step("Div", [f"{PREFIX}centred", std], image_name)]
    return [
        *nodes,
        _step("Div", [f"{PREFIX}centred", std], f"{PREFIX}scaled"),
        _step("Transpose", [f"{PREFIX}scaled"], image_name, perm=[0, 3, 1, 2]),
    ]


def wrap_graph(
    model: onnx.ModelProto, shape: GraphShape, preset: Preset, embedding_size: int, batch: int | None
) -> onnx.ModelProto:
    """The graph in the model contract: uint8 RGB NHWC `chips` in, unit `embeddings` out (batch None: any)."""
    wrapped = onnx.ModelProto()
    wrapped.CopyFrom(model)
    graph = wrapped.graph
    moved = _free_contract_names(graph)
    image_name = moved.get(shape.input_name, shape.input_name)
    output_name = moved.get(shape.output_name, shape.output_name)
    nodes = [*_feeding_nodes(preset, image_name), *graph.node]
    nodes.append(_step("LpNormalization", [output_name], EMBEDDINGS, axis=1, p=2))
    del graph.node[:]
    graph.node.extend(nodes)
    axis: int | str = batch if batch is not None else "batch"
    side = preset.chip_size
    kept = []  # copies: protobuf messages taken out of a repeated field do not survive its clearing
    for value in graph.input:
        if value.name != image_name:
            kept.append(onnx.ValueInfoProto())
            kept[-1].CopyFrom(value)
    del graph.input[:]
    graph.input.extend(
        [helper.make_tensor_value_info(CHIPS, TensorProto.UINT8, [axis, side, side, 3]), *kept]
    )
    del graph.output[:]
    graph.output.append(helper.make_tensor_value_info(EMBEDDINGS, TensorProto.FLOAT, [axis, embedding_size]))
    # Intermediate shapes recorded at export can pin the batch axis to the exported one; the runtime
    # infers them again.
    del graph.value_info[:]
    onnx.checker.check_model(wrapped)
    return wrapped


def preprocess(chips: npt.NDArray[np.uint8], preset: Preset) -> npt.NDArray[np.float32]:
    """The original graph's input for RGB NHWC chips, computed as the preset says (the reference)."""
    pixels = chips.astype(np.float32)
    if preset.channels == "BGR":
        pixels = pixels[..., ::-1]
    scaled = (pixels - np.array(preset.mean, np.float32)) / np.array(preset.std, np.float32)
    if preset.layout == "NCHW":
        scaled = scaled.transpose(0, 3, 1, 2)
    return np.ascontiguousarray(scaled, dtype=np.float32)


def _session(model: onnx.ModelProto, quiet: bool = False) -> ort.InferenceSession:
    options = session_options()
    if quiet:  # a trial run that may fail: its failure is reported once, not logged by the runtime too
        options.log_severity_level = 4
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def _runtime_reason(exc: Exception) -> str:
    """The part of an onnxruntime error that says what failed, shortened."""
    text = str(exc).split("Status Message: ")[-1].strip()
    return text if len(text) <= 160 else text[:157] + "..."


def _run(
    session: ort.InferenceSession, batch: npt.NDArray[np.generic], step: int | None
) -> npt.NDArray[np.float32]:
    """The session's one output for a batch, fed whole, or in zero-padded steps of a fixed batch size."""
    name = session.get_inputs()[0].name
    if step is None:
        return np.asarray(session.run(None, {name: batch})[0], np.float32)
    parts = []
    for start in range(0, len(batch), step):
        part = batch[start : start + step]
        padded = np.concatenate([part, np.zeros((step - len(part), *part.shape[1:]), part.dtype)])
        parts.append(np.asarray(session.run(None, {name: padded})[0], np.float32)[: len(part)])
    return np.concatenate(parts)


def _unit_rows(rows: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    unit: npt.NDArray[np.float32] = (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)
    return unit


def reference_embeddings(
    model: onnx.ModelProto, shape: GraphShape, preset: Preset, chips: npt.NDArray[np.uint8]
) -> npt.NDArray[np.float32]:
    """The original graph's L2-normalised outputs for the chips, fed one batch of its own size at a time."""
    try:
        rows = _run(_session(model), preprocess(chips, preset), shape.batch or 1)
    except Exception as exc:  # onnxruntime raises its own Exception subclasses
        raise ImportRefused(f"ONNX Runtime cannot run the graph: {exc}") from None
    if rows.ndim != 2 or len(rows) != len(chips):
        raise ImportRefused(
            f"the graph gives an output of shape {rows.shape} for {len(chips)} images: an embedder gives one "
            "vector per image"
        )
    return _unit_rows(rows)


@dataclass(frozen=True)
class Wrapped:
    """The wrapped graph, the batch size it is fixed at (None: any), and how far it is from the original."""

    model: onnx.ModelProto
    batch_size: int | None
    difference: float  # the largest |wrapped - original, L2-normalised| over the check chips
    embedding_size: int


def _difference(got: npt.NDArray[np.float32], expected: npt.NDArray[np.float32]) -> float:
    if got.shape != expected.shape:
        return float("inf")
    return float(np.abs(got - expected).max())


def wrap_and_check(
    model: onnx.ModelProto, shape: GraphShape, preset: Preset, chips: npt.NDArray[np.uint8], log: Log
) -> Wrapped:
    """The wrapped graph: batch open if a batch of chips matches the original chip by chip, else fixed."""
    expected = reference_embeddings(model, shape, preset, chips)
    size = int(expected.shape[1])
    # Many graphs exported with batch 1 run any batch once their recorded shapes are cleared.
    open_batch = wrap_graph(model, shape, preset, size, batch=None)
    try:
        difference = _difference(_run(_session(open_batch, quiet=True), chips, None), expected)
    except Exception as exc:  # onnxruntime raises its own Exception subclasses
        reason = f"it cannot run a batch of {len(chips)}: {_runtime_reason(exc)}"
    else:
        if difference <= PARITY_TOLERANCE:
            return Wrapped(open_batch, None, difference, size)
        reason = f"a batch of {len(chips)} differs from the chips one by one by {difference:.1e}"
    fixed = shape.batch or 1
    log(f"the graph keeps its fixed batch of {fixed} ({reason}): the service feeds it batches of {fixed}")
    pinned = wrap_graph(model, shape, preset, size, batch=fixed)
    difference = _difference(_run(_session(pinned), chips, fixed), expected)
    if not difference <= PARITY_TOLERANCE:
        raise ImportRefused(
            f"the wrapped graph differs from the original by {difference:.1e} (more than "
            f"{PARITY_TOLERANCE:.0e}) on {len(chips)} chips of the check photos: a graph whose output "
            "depends on more than its input (random nodes, statistics of the batch) cannot be imported"
        )
    return Wrapped(pinned, fixed, difference, size)


def _photos_under(images: Path) -> list[Path]:
    if images.is_file():
        return [images]
    if not images.is_dir():
        raise ImportRefused(f"no photos at {images}: the import is checked on faces of real photos")
    return sorted(path for path in images.rglob("*") if path.suffix.lower() in IMAGE_SUFFIXES)


def check_chips(
    models_dir: Path, images: Path, cut: ChipCut, limit: int = CHECK_PHOTOS
) -> npt.NDArray[np.uint8]:
    """The largest face of up to `limit` photos, found by the service's detector, cut, and mirrored too."""
    pipeline = FacePipeline.from_models(models_dir)
    chips: list[npt.NDArray[np.uint8]] = []
    for path in _photos_under(images):
        if len(chips) == limit:
            break
        try:
            photo = pipeline.decode_photo(path.read_bytes())
        except (OSError, ImageError):
            continue
        faces = pipeline.detect_photo(photo)
        if faces:
            matrix = cut.chip_to_image(faces[0].box, faces[0].landmarks, photo.size)
            chips.append(warp_chip(photo.pixels(), matrix, cut.size))
    if not chips:
        raise ImportRefused(
            f"no face was found in the photos at {images}: the import is checked on real faces"
        )
    stacked = np.stack(chips)
    return np.concatenate([stacked, stacked[:, :, ::-1]])


def model_name(onnx_file: Path, name: str | None) -> str:
    """The given short name (checked), or the file's stem in lowercase letters, digits, '.', '_', '-'."""
    if name is not None:
        if not re.fullmatch(NAME_CHARACTERS, name):
            raise ImportRefused(
                f"the name {name!r} must be lowercase letters, digits, '.', '_' and '-', starting with a "
                "letter or digit"
            )
        return name
    return re.sub(r"[^a-z0-9._-]+", "-", onnx_file.stem.lower()).strip("-._") or "imported"


def model_id(name: str, source_sha256: str, preset: Preset) -> str:
    """`<name>-<8 hex>`: the same file fed the same way always gets the same id."""
    digest = hashlib.sha256((source_sha256 + preset.feeding()).encode()).hexdigest()
    return f"{name}-{digest[:8]}"


def _values(values: tuple[float, ...]) -> str:
    return "(" + ", ".join(f"{value:g}" for value in values) + ")"


def normalisation_text(preset: Preset) -> str:
    """What the wrapper does to the chips, in words, for the card."""
    steps = ["RGB -> BGR"] if preset.channels == "BGR" else []
    order = preset.channels.lower()
    steps.append(f"(x - mean_{order}{_values(preset.mean)}) / std_{order}{_values(preset.std)}")
    if preset.layout == "NCHW":
        steps.append("NHWC -> NCHW")
    unit = "already unit length" if preset.output_normalised else "not unit length"
    steps.append(f"the imported graph (its output {unit}), L2 over dim 1")
    return ", ".join(steps) + ", inside the graph"


def _provisional_threshold() -> Threshold:
    return provisional_threshold().model_copy(
        update={
            "note": "provisional: the stock model's starting point, not fitted to this model; import it "
            "with --calibrate to fit one on labelled photos"
        }
    )


def imported_artifact(
    identity: str, name: str, graph: bytes, wrapped: Wrapped, preset: Preset, source: Source
) -> Artifact:
    """The card of an imported embedder: the service's chips in, unit vectors out, compared by cosine."""
    side, batch, alignment = preset.chip_size, wrapped.batch_size, preset.alignment
    contract = InputContract(
        layout="NHWC",
        channels="RGB",
        dtype="uint8",
        pixel_range=(0.0, 255.0),
        size=(side, side),
        alignment_template=alignment.template_id,
        alignment_points=alignment.points if isinstance(alignment, FivePoints) else None,
        alignment_box_margin=alignment.margin if isinstance(alignment, BoxCrop) else None,
        normalisation=normalisation_text(preset),
    )
    return Artifact(
        id=identity,
        role="embedder",
        name=name,
        file=f"{IMPORTED_DIR}/{identity}.onnx",
        sha256=hashlib.sha256(graph).hexdigest(),
        bytes=len(graph),
        input_contract=contract,
        inputs=(TensorSpec(name=CHIPS, dtype="uint8", shape=(batch, side, side, 3)),),
        outputs=(TensorSpec(name=EMBEDDINGS, dtype="float32", shape=(batch, wrapped.embedding_size)),),
        embedding_size=wrapped.embedding_size,
        batch_size=batch,
        distance="cosine",
        threshold=_provisional_threshold(),
        source=source,
    )


def _write_graph(models_dir: Path, identity: str, graph: bytes) -> Path:
    """Write the wrapped graph atomically (temporary file, then rename)."""
    path = models_dir / IMPORTED_DIR / f"{identity}.onnx"
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".onnx.part")
    partial.write_bytes(graph)
    os.replace(partial, path)
    return path


def _cohort_top_k(faces: LabelledFaces) -> int | None:
    """The largest top k (up to the default) that calibration can leave two people out of; None if < 2."""
    most = int(np.bincount(faces.people).max())
    top_k = min(DEFAULT_TOP_K, len(faces.vectors) - 2 * most)
    return top_k if top_k >= 2 else None


def calibrate_imported(
    models_dir: Path, artifact: Artifact, images: Path, log: Log, progress: bool = True
) -> Artifact:
    """Embed a labelled folder once: the model's cohort, and from every pair its calibrated threshold."""
    pipeline = FacePipeline.from_models(models_dir, model=artifact.id)
    faces = embed_labelled(pipeline, images, None, progress)
    catalog = ModelCatalog.load(models_dir)
    top_k = _cohort_top_k(faces)
    if top_k is None:
        log(f"no cohort: {len(faces.vectors)} faces are too few to normalise scores; raw cosine only")
    else:
        built = write_cohort(models_dir, artifact, faces, top_k, catalog=catalog)
        entry = built.entry
        log(f"cohort of {entry.faces} faces of {entry.people} people (top {top_k}) -> {built.path}")
        catalog = ModelCatalog.load(models_dir)
    artifact = catalog.find(artifact.id)
    cohort = for_calibration(models_dir, artifact)
    histograms = score_all_pairs(faces, cohort, progress)
    calibration = calibration_from(
        histograms, faces, pipeline.settings.flip_average, cohort.cohort if cohort is not None else None
    )
    calibrated = artifact.model_copy(
        update={"threshold": named_threshold(calibration), "calibration": calibration}
    )
    catalog.save(calibrated)
    return calibrated


@dataclass(frozen=True)
class ImportResult:
    """What an import wrote, and how closely the wrapped graph follows the original."""

    artifact: Artifact
    graph: Path
    card: Path
    difference: float
    check_chips: int
    replaced: bool


def _check_calibration_folder(images: Path) -> None:
    try:
        people = {person for _, person in labelled_photos(images)}
    except (OSError, ValueError) as exc:
        raise ImportRefused(f"cannot read the calibration photos at {images}: {exc}") from None
    if len(people) < 2:
        raise ImportRefused(
            f"the calibration folder {images} holds photos of {len(people)} people: it needs one folder of "
            "photos per person, and at least two people"
        )


def _source(onnx_file: Path, source_sha256: str, licence: str, preset: Preset) -> Source:
    if not licence.strip():
        raise ImportRefused("state the licence or terms the weights come under (--licence or --licence-file)")
    return Source(
        package="imported",
        version=importlib.metadata.version("faceverify"),
        file=onnx_file.name,
        sha256=source_sha256,
        licence=licence.strip(),
        preset=preset.name,
    )


def _load_graph(onnx_file: Path) -> onnx.ModelProto:
    try:
        return onnx.load(str(onnx_file))
    except Exception as exc:  # protobuf's decode errors, and onnx's on external data it cannot find
        raise ImportRefused(f"{onnx_file} is not a readable ONNX file: {exc}") from None


def import_embedder(
    models_dir: Path,
    onnx_file: Path,
    preset: str | Path,
    *,
    licence: str,
    name: str | None = None,
    check_images: Path | None = None,
    calibrate_images: Path | None = None,
    force: bool = False,
    log: Log = print,
    progress: bool = True,
) -> ImportResult:
    """Import an embedder ONNX file into models_dir/embedders/; every refusal comes before any write."""
    chosen = load_preset(preset)
    photos = check_images or calibrate_images
    if photos is None:
        raise ImportRefused(
            "the import is checked on real faces: pass --check-images (a folder of photos) or --calibrate"
        )
    if calibrate_images is not None:
        _check_calibration_folder(calibrate_images)
    catalog = ModelCatalog.load(models_dir)
    if not onnx_file.is_file():
        raise ImportRefused(f"no ONNX file at {onnx_file}")
    source_sha256 = sha256_file(onnx_file)
    source = _source(onnx_file, source_sha256, licence, chosen)
    short_name = model_name(onnx_file, name)
    identity = model_id(short_name, source_sha256, chosen)
    card = card_path(models_dir, identity)
    graph_path = models_dir / IMPORTED_DIR / f"{identity}.onnx"
    replaced = card.exists() or graph_path.exists()
    if identity == catalog.built.id or (replaced and not force):
        raise ImportRefused(
            f"{identity} is imported already ({card}): the same file with the same preset; pass --force "
            "to replace it"
        )
    model = _load_graph(onnx_file)
    shape = inspect_graph(model, chosen)
    chips = check_chips(models_dir, photos, chosen.cut())
    wrapped = wrap_and_check(model, shape, chosen, chips, log)
    graph = wrapped.model.SerializeToString()
    artifact = imported_artifact(identity, short_name, graph, wrapped, chosen, source)
    log(
        f"{onnx_file.name} with the {chosen.name} preset: {chosen.chip_size} px chips -> "
        f"{wrapped.embedding_size} floats, checked on {len(chips)} chips"
    )
    namesakes = [
        known.id for known in catalog.embedders() if known.name == short_name and known.id != identity
    ]
    if namesakes:
        log(f"{', '.join(namesakes)} share the name {short_name!r}: ask for this one by its id, {identity}")
    # Graph first, card last, each by rename: the catalog never lists a card whose graph is half-written.
    graph_path = _write_graph(models_dir, identity, graph)
    write_card(models_dir, artifact)
    if calibrate_images is not None:
        try:
            artifact = calibrate_imported(models_dir, artifact, calibrate_images, log, progress)
        except ValueError as exc:  # too few faces or people in the folder to calibrate on
            raise CalibrationFailed(
                f"{identity} is imported but not calibrated: {exc}; import it again with --force and "
                "another --calibrate folder"
            ) from None
    return ImportResult(artifact, graph_path, card, wrapped.difference, len(chips), replaced)
