"""The int8 embedder: built from recorded ranges, calibrated as a model of its own, close to the float one."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest

pytest.importorskip("torch", reason="the `train` extra is needed to build models")

from app.face.catalog import ModelCatalog
from app.face.embedder import Embedder
from app.face.errors import FaceError
from app.face.manifest import Manifest, load_manifest
from app.face.pipeline import FacePipeline
from training.build import INT8_KEY
from training.quantise import int8_model_id, quantise_with_ranges, ranges_file, record_ranges

INT8_NAME = "dlib-resnet-v1-int8"


def _chips(pipeline: FacePipeline, photos: list[Path]) -> np.ndarray:
    """The aligned chip of the largest face of every photo that has a usable one."""
    chips = []
    for path in photos:
        try:
            (result,) = pipeline.largest_faces([path.read_bytes()])
        except FaceError:
            continue
        chips.append(pipeline.photo_chip(pipeline.decode_photo(path.read_bytes()), result.face.detection))
    return np.stack(chips)


@pytest.fixture(scope="module")
def chips(pipeline: FacePipeline, photos: list[Path]) -> np.ndarray:
    found = _chips(pipeline, photos)
    assert len(found) >= 10, f"only {len(found)} faces in the test photos"
    return found


def test_the_build_adds_the_int8_embedder_with_its_own_calibration_and_cohort(manifest: Manifest) -> None:
    float_model, int8 = manifest.artifact("embedder"), manifest.artifact(INT8_KEY)
    assert int8.id == int8_model_id(float_model.id, ranges_file(float_model.id))
    assert int8.id != float_model.id and int8.name == INT8_NAME
    assert int8.threshold is not None and int8.threshold.calibrated
    assert int8.threshold.similarity != float_model.threshold.similarity  # type: ignore[union-attr]
    assert int8.calibration is not None and int8.cohort is not None and int8.cohort.model_id == int8.id
    assert int8.input_contract == float_model.input_contract
    assert int8.bytes < float_model.bytes / 3


def test_the_int8_graph_computes_in_int8(models_dir: Path, manifest: Manifest) -> None:
    graph = onnx.load(str(models_dir / manifest.artifact(INT8_KEY).file))
    ops = [node.op_type for node in graph.graph.node]
    assert ops.count("QuantizeLinear") >= 20 and ops.count("Conv") >= 20


@pytest.mark.parametrize("key", ["embedder", INT8_KEY])
def test_the_embedders_first_convolution_takes_the_pixels_themselves(
    models_dir: Path, manifest: Manifest, key: str
) -> None:
    graph = onnx.load(str(models_dir / manifest.artifact(key).file)).graph
    ops = [node.op_type for node in graph.node]
    # The mean and scale live in the stem's weights: no per-pixel arithmetic before it, and the int8
    # graph's first quantisation holds the pixels exactly (scale 1, zero point 0).
    assert "Sub" not in ops
    if key == INT8_KEY:
        initial = {t.name: onnx.numpy_helper.to_array(t) for t in graph.initializer}
        (pixels,) = (node.output[0] for node in graph.node if node.op_type == "Cast")
        (first,) = (n for n in graph.node if n.op_type == "QuantizeLinear" and n.input[0] == pixels)
        assert float(initial[first.input[1]]) == 1.0 and int(initial[first.input[2]]) == 0


def test_int8_embeddings_stay_close_to_the_float_ones(
    models_dir: Path, manifest: Manifest, chips: np.ndarray
) -> None:
    float_model = Embedder(models_dir, manifest.artifact("embedder"))
    int8 = Embedder(models_dir, manifest.artifact(INT8_KEY))
    ours, reference = int8.embed(chips, flip_average=True), float_model.embed(chips, flip_average=True)
    assert np.allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)
    agreement = np.sum(ours * reference, axis=1)
    assert agreement.min() > 0.99, f"cosine to the float embedding: {agreement.min():.4f}"
    # What decisions use, the score of every pair of photos, moves by little.
    moved = np.abs(ours @ ours.T - reference @ reference.T).max()
    assert moved < 0.02, f"a pair's score moved by {moved:.4f}"


def test_the_int8_embedder_is_found_by_name_and_serves_a_pipeline(models_dir: Path) -> None:
    catalog = ModelCatalog.load(models_dir)
    int8 = catalog.find(INT8_NAME)
    assert catalog.is_built(int8) and [a.id for a in catalog.built_embedders()][1] == int8.id
    assert catalog.built.id != int8.id  # the float model stays the default
    assert FacePipeline.from_models(models_dir, model=INT8_NAME).model_id == int8.id


def test_saving_the_int8_entry_leaves_the_float_one_alone(models_dir: Path, tmp_path: Path) -> None:
    copy = tmp_path / "models"
    shutil.copytree(models_dir, copy)
    catalog = ModelCatalog.load(copy)
    int8 = catalog.find(INT8_NAME)
    saved = catalog.save(int8.model_copy(update={"cohort": None}))
    manifest = load_manifest(copy)
    assert manifest.artifact(INT8_KEY).cohort is None
    assert manifest.artifact("embedder") == catalog.built and saved.find(INT8_NAME).cohort is None


def test_ranges_recorded_on_chips_quantise_the_float_graph(
    models_dir: Path, manifest: Manifest, chips: np.ndarray, tmp_path: Path
) -> None:
    float_model = manifest.artifact("embedder")
    ranges, out = tmp_path / "ranges.json", tmp_path / "int8.onnx"
    with pytest.raises(FileNotFoundError):
        quantise_with_ranges(models_dir / float_model.file, ranges, out)
    batches = [np.concatenate([chip[None], chip[None, :, ::-1]]) for chip in chips[:4]]
    record_ranges(models_dir / float_model.file, "chips", batches, ranges)
    first = ranges.read_bytes()
    record_ranges(models_dir / float_model.file, "chips", batches[::-1], ranges)
    assert ranges.read_bytes() == first  # the same chips record the same file, whatever their order
    quantise_with_ranges(models_dir / float_model.file, ranges, out)
    again = tmp_path / "again.onnx"
    quantise_with_ranges(models_dir / float_model.file, ranges, again)
    assert out.read_bytes() == again.read_bytes()  # the ranges alone decide the graph
    assert out.stat().st_size < float_model.bytes / 3
