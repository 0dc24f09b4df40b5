"""`models import`: embedder files made elsewhere, wrapped into the model contract, or refused untouched."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper
from PIL import Image

pytest.importorskip("torch", reason="the import tests make their ONNX files with torch (the `train` extra)")

from app.face.align import BoxCut
from app.face.catalog import IMPORTED_DIR, ModelCatalog, card_path
from app.face.embedder import Embedder
from app.face.manifest import sha256_file
from app.face.pipeline import THUMBNAIL_TEMPLATE, FacePipeline
from app.face.runtime import session_options
from tests.assets import LFW_DEV, REPO, devtest_people
from tests.onnx_models import arcface_shaped_onnx, dlib_plain_onnx, facenet_shaped_onnx
from tests.training.conftest import NEEDS_LFW
from training.evaluate import accuracy_at, auc, central_face, tenfold_accuracy
from training.importer import (
    PRESETS_DIR,
    ImportRefused,
    ImportResult,
    import_embedder,
    load_preset,
    preset_names,
)
from training.lfw import read_pairs

LICENCE = "test weights made in the test suite"


def _listing(folder: Path) -> dict[str, tuple[int, int]]:
    """Every path under a folder, itself too, with size and mtime: a folder's mtime moves on any write."""
    return {
        str(path.relative_to(folder)): (path.stat().st_size, path.stat().st_mtime_ns)
        for path in sorted([folder, *folder.rglob("*")])
    }


def _import(
    models: Path, onnx_file: Path, preset: str | Path, photos: Path, **options: object
) -> ImportResult:
    """import_embedder with the test licence, quietly; options override."""
    given: dict[str, object] = {"licence": LICENCE, "check_images": photos, "log": lambda _: None}
    return import_embedder(models, onnx_file, preset, progress=False, **{**given, **options})  # type: ignore[arg-type]


def _copy_models(models_dir: Path, into: Path) -> Path:
    """The built models alone: no imports made in the served folder, no build left half-done there."""
    shutil.copytree(models_dir, into, ignore=shutil.ignore_patterns(".build", ".export", IMPORTED_DIR))
    return into


@pytest.fixture(scope="module")
def check_photos(photos: list[Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real test photos in one folder."""
    folder = tmp_path_factory.mktemp("check-photos")
    for path in photos:
        shutil.copy(path, folder / path.name)
    return folder


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("onnx")


@pytest.fixture(scope="module")
def arcface_file(files: Path) -> Path:
    return arcface_shaped_onnx(files / "w600k_r50.onnx")


@pytest.fixture(scope="module")
def pooled_arcface_file(files: Path) -> Path:
    return arcface_shaped_onnx(files / "pooled_r50.onnx", pooled=True)


@pytest.fixture(scope="module")
def dlib_import(
    models_dir: Path, files: Path, check_photos: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, Path, ImportResult]:
    """The stock network re-exported in the plain convention and imported back with the `dlib` preset."""
    plain = dlib_plain_onnx(files / "dlib_plain.onnx")
    models = _copy_models(models_dir, tmp_path_factory.mktemp("dlib") / "models")
    return models, plain, _import(models, plain, "dlib", check_photos)


@pytest.fixture(scope="module")
def untouched_models(models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A models folder that every refusal must leave as it was."""
    return _copy_models(models_dir, tmp_path_factory.mktemp("refusals") / "models")


@pytest.fixture
def models_copy(models_dir: Path, tmp_path: Path) -> Path:
    return _copy_models(models_dir, tmp_path / "models")


def _largest_face_chips(served: FacePipeline, photos: Path) -> np.ndarray:
    """The chip of each photo's largest face, cut as the served model's card says."""
    chips = []
    for path in sorted(photos.iterdir()):
        photo = served.decode_photo(path.read_bytes())
        faces = served.detect_photo(photo)
        if faces:
            chips.append(served.photo_chip(photo, faces[0]))
    assert len(chips) >= 3, "the test photos hold too few faces"
    return np.stack(chips)


def _original_rows(onnx_file: Path, inputs: np.ndarray) -> np.ndarray:
    """The original file's L2-normalised outputs, one input at a time."""
    session = ort.InferenceSession(str(onnx_file), session_options(), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    rows = np.concatenate([session.run(None, {name: x[None]})[0] for x in inputs])
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def _arcface_inputs(chips: np.ndarray, bgr: bool = False, std: float = 127.5) -> np.ndarray:
    """insightface's feeding, written out here: (x - 127.5) / 127.5, NCHW float (facenet's: std 128)."""
    pixels = chips[..., ::-1] if bgr else chips
    return ((pixels.astype(np.float32) - 127.5) / std).transpose(0, 3, 1, 2).copy()


def test_the_shipped_presets_are_valid_and_say_what_the_stock_and_arcface_chips_are(
    pipeline: FacePipeline,
) -> None:
    assert preset_names() == ["arcface", "dlib", "facenet"]
    for name in preset_names():
        assert load_preset(name).name == name
    dlib, arcface, facenet = load_preset("dlib"), load_preset("arcface"), load_preset("facenet")
    stock = pipeline.embedder.artifact.input_contract
    template = json.loads((REPO / "training" / "templates" / "mtcnn_dlib_chip_150.json").read_text())
    assert dlib.alignment.template_id == stock.alignment_template == template["template_id"]
    assert dlib.alignment.points == stock.alignment_points  # type: ignore[union-attr]
    assert (dlib.chip_size, dlib.layout, dlib.std) == (150, "NCHW", (256.0, 256.0, 256.0))
    assert arcface.alignment.points == THUMBNAIL_TEMPLATE.points  # type: ignore[union-attr]
    assert (arcface.chip_size, arcface.mean, arcface.std) == (112, (127.5,) * 3, (127.5,) * 3)
    assert facenet.alignment.kind == "box" and facenet.alignment.margin == 0.0  # type: ignore[union-attr]
    assert (facenet.chip_size, facenet.std, facenet.output_normalised) == (160, (128.0,) * 3, True)


def test_the_stock_network_imported_with_the_dlib_preset_embeds_as_the_stock_model(
    dlib_import: tuple[Path, Path, ImportResult], pipeline: FacePipeline, check_photos: Path
) -> None:
    models, plain, result = dlib_import
    card = result.artifact
    assert result.difference <= 1e-5 and result.check_chips >= 6
    assert card.id.startswith("dlib_plain-") and len(card.id) == len("dlib_plain-") + 8
    assert card_path(models, card.id).is_file() and (models / card.file).is_file()
    stock = pipeline.embedder.artifact
    assert card.input_contract.alignment_template == stock.input_contract.alignment_template
    assert card.input_contract.alignment_points == stock.input_contract.alignment_points
    assert card.inputs == stock.inputs and card.outputs == stock.outputs and card.batch_size is None
    assert card.threshold is not None and not card.threshold.calibrated
    source = card.source
    assert (source.package, source.file, source.preset, source.licence) == (
        "imported",
        plain.name,
        "dlib",
        LICENCE,
    )
    assert source.sha256 == sha256_file(plain)

    imported = FacePipeline.from_models(models, model=card.id)
    chips = _largest_face_chips(pipeline, check_photos)
    for flip in (False, True):
        ours = imported.embedder.embed(chips, flip_average=flip)
        theirs = pipeline.embedder.embed(chips, flip_average=flip)
        assert np.abs(ours - theirs).max() <= 1e-5
    data = [path.read_bytes() for path in sorted(check_photos.iterdir())[:4]]
    for ours, theirs in zip(imported.largest_faces(data), pipeline.largest_faces(data), strict=True):
        assert np.abs(ours.face.embedding - theirs.face.embedding).max() <= 1e-5


@NEEDS_LFW
def test_the_imported_dlib_network_gives_the_stock_lfw_devtest_figures(
    dlib_import: tuple[Path, Path, ImportResult], pipeline: FacePipeline
) -> None:
    models, _, result = dlib_import
    imported = FacePipeline(pipeline.detector, Embedder(models, result.artifact), pipeline.settings)
    pairs = read_pairs(LFW_DEV / "pairsDevTest.txt", LFW_DEV / "images")  # all 1,000: ~40 s on 2 cores
    vectors: dict[str, dict[Path, np.ndarray]] = {"stock": {}, "imported": {}}
    for path in dict.fromkeys(p for pair in pairs for p in (pair.left, pair.right)):
        image, face, _ = central_face(pipeline, path)  # found once: both models use the same detector
        if face is not None:
            for name, served in (("stock", pipeline), ("imported", imported)):
                vectors[name][path] = served.embed([image], [face])[0].embedding
    usable = [pair for pair in pairs if pair.left in vectors["stock"] and pair.right in vectors["stock"]]
    assert len(usable) >= 990
    labels = np.array([pair.same for pair in usable])
    folds = np.array([pair.fold for pair in usable])
    threshold = pipeline.embedder.artifact.threshold
    assert threshold is not None
    figures = {}
    for name, found in vectors.items():
        sims = np.array([float(found[pair.left] @ found[pair.right]) for pair in usable])
        figures[name] = (
            round(tenfold_accuracy(sims, labels, folds)[0], 4),
            round(accuracy_at(sims, labels, threshold.similarity), 4),
            round(float(np.mean(sims[labels] >= threshold.similarity)), 4),  # TAR at the stock threshold
            round(auc(sims, labels), 4),
        )
    assert figures["imported"] == figures["stock"], figures
    assert figures["stock"][0] > 0.95  # the stock model's own level: the pairs are real ones


def test_an_arcface_shaped_graph_fixed_at_batch_one_embeds_batches_as_chips_one_by_one(
    models_copy: Path, arcface_file: Path, check_photos: Path
) -> None:
    said: list[str] = []
    result = _import(models_copy, arcface_file, "arcface", check_photos, log=said.append)
    card = result.artifact
    contract = card.input_contract
    assert contract.alignment_template == "arcface5-112" and contract.size == (112, 112)
    assert contract.alignment_points == THUMBNAIL_TEMPLATE.points and contract.alignment_box_margin is None
    assert card.embedding_size == 512 and card.name == "w600k_r50" and card.source.preset == "arcface"
    # Its flatten reshapes to the traced batch of 1: the card says so, and the service steps through.
    assert card.batch_size == 1 and card.inputs[0].shape == (1, 112, 112, 3)
    assert any("fixed batch of 1" in line for line in said)

    served = FacePipeline.from_models(models_copy, model=card.id)
    chips = _largest_face_chips(served, check_photos)
    batch = served.embedder.embed(chips, flip_average=False)
    one_by_one = np.concatenate([served.embedder.embed(chip[None], flip_average=False) for chip in chips])
    assert np.abs(batch - one_by_one).max() <= 1e-6
    assert np.abs(np.linalg.norm(batch, axis=1) - 1.0).max() <= 1e-5
    assert np.abs(batch - _original_rows(arcface_file, _arcface_inputs(chips))).max() <= 1e-5
    gaps = np.linalg.norm(batch[:, None] - batch[None], axis=2)[~np.eye(len(batch), dtype=bool)]
    assert gaps.min() > 1e-3  # each face its own vector, not one row repeated


def test_a_batch_one_graph_that_runs_any_batch_gets_an_open_batch_axis(
    models_copy: Path, pooled_arcface_file: Path, check_photos: Path
) -> None:
    card = _import(models_copy, pooled_arcface_file, "arcface", check_photos).artifact
    assert card.batch_size is None and card.inputs[0].shape == (None, 112, 112, 3)
    served = FacePipeline.from_models(models_copy, model=card.id)
    chips = _largest_face_chips(served, check_photos)
    batch = served.embedder.embed(chips, flip_average=True)
    one_by_one = np.concatenate([served.embedder.embed(chip[None], flip_average=True) for chip in chips])
    assert np.abs(batch - one_by_one).max() <= 1e-5


def test_a_facenet_shaped_graph_is_fed_crops_of_the_detectors_box(
    models_copy: Path, files: Path, check_photos: Path
) -> None:
    facenet_file = facenet_shaped_onnx(files / "facenet_vggface2.onnx")
    card = _import(models_copy, facenet_file, "facenet", check_photos).artifact
    contract = card.input_contract
    assert contract.size == (160, 160) and contract.alignment_box_margin == 0.0
    assert contract.alignment_points is None and contract.alignment_template == "mtcnn-box-160-margin0"
    served = FacePipeline.from_models(models_copy, model=card.id)
    assert served.embedder.cut == BoxCut(0.0, 160)
    chips = _largest_face_chips(served, check_photos)
    ours = served.embedder.embed(chips, flip_average=False)
    assert np.abs(ours - _original_rows(facenet_file, _arcface_inputs(chips, std=128.0))).max() <= 1e-5


def test_a_preset_file_of_the_users_feeds_the_graph_its_way(
    models_copy: Path, pooled_arcface_file: Path, check_photos: Path, tmp_path: Path
) -> None:
    preset = json.loads((PRESETS_DIR / "arcface.json").read_text())
    preset.update(name="arcface-bgr", description="a BGR ArcFace", channels="BGR")
    path = tmp_path / "arcface-bgr.json"
    path.write_text(json.dumps(preset))
    card = _import(models_copy, pooled_arcface_file, path, check_photos).artifact
    assert card.source.preset == "arcface-bgr" and "RGB -> BGR" in card.input_contract.normalisation
    rgb_card = _import(models_copy, pooled_arcface_file, "arcface", check_photos).artifact
    assert rgb_card.id != card.id  # the same file fed another way is another model
    served = FacePipeline.from_models(models_copy, model=card.id)
    chips = _largest_face_chips(served, check_photos)
    ours = served.embedder.embed(chips, flip_average=False)
    assert np.abs(ours - _original_rows(pooled_arcface_file, _arcface_inputs(chips, bgr=True))).max() <= 1e-5
    assert np.abs(ours - _original_rows(pooled_arcface_file, _arcface_inputs(chips))).max() > 1e-3


def _tiny_graph(
    path: Path, inputs: list[tuple[int, list[int]]], output_rank: int = 2, random: bool = False
) -> Path:
    """A graph whose inputs have the given (type, shape), summed and flattened (or left 4-D)."""
    values = [helper.make_tensor_value_info(f"x{i}", kind, shape) for i, (kind, shape) in enumerate(inputs)]
    nodes = [helper.make_node("Cast", [f"x{i}"], [f"f{i}"], to=TensorProto.FLOAT) for i in range(len(inputs))]
    nodes.append(helper.make_node("Sum", [f"f{i}" for i in range(len(inputs))], ["total"]))
    last = "total"
    if output_rank == 2:
        nodes.append(helper.make_node("Flatten", ["total"], ["flat"], axis=1))
        last = "flat"
    if random:  # a different answer on every run
        nodes.append(helper.make_node("RandomUniformLike", [last], ["noise"]))
        nodes.append(helper.make_node("Add", [last, "noise"], ["noisy"]))
        last = "noisy"
    nodes.append(helper.make_node("Identity", [last], ["y"]))
    output = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    graph = helper.make_graph(nodes, "tiny", values, [output])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, str(path))
    return path


FLOAT, UINT8 = TensorProto.FLOAT, TensorProto.UINT8


@pytest.mark.parametrize(
    ("graph", "preset", "message"),
    [
        ("arcface", "dlib", r"is 1x3x112x112: it takes 112x112 images, and the preset 'dlib' cuts 150x150"),
        ("arcface", "facenet", r"cuts 160x160 chips"),
        (
            "arcface",
            "nhwc",
            r"NHWC layout axis 3 holds the 3 colour channels, and here it is 112; .*looks NCHW",
        ),
        (
            "grey",
            "arcface",
            r"1x1x112x112: .*axis 1 holds the 3 colour channels, and here it is 1; .*3-channel",
        ),
        ("two inputs", "arcface", r"takes 2 inputs \('x0', 'x1'\)"),
        ("uint8", "arcface", r"input 'x0' is uint8: the presets feed float32"),
        ("4-d output", "arcface", r"output 'y' is 1x3x112x112: an embedder gives \(N, D\)"),
        ("random", "arcface", r"differs from the original by .* depends on more than its input"),
    ],
)
def test_a_preset_that_does_not_fit_the_file_is_refused_and_nothing_is_written(
    graph: str,
    preset: str,
    message: str,
    untouched_models: Path,
    arcface_file: Path,
    check_photos: Path,
    tmp_path: Path,
) -> None:
    graphs = {
        "arcface": lambda: arcface_file,
        "grey": lambda: _tiny_graph(tmp_path / "grey.onnx", [(FLOAT, [1, 1, 112, 112])]),
        "two inputs": lambda: _tiny_graph(tmp_path / "two.onnx", [(FLOAT, [1, 3, 112, 112])] * 2),
        "uint8": lambda: _tiny_graph(tmp_path / "uint8.onnx", [(UINT8, [1, 3, 112, 112])]),
        "4-d output": lambda: _tiny_graph(tmp_path / "4d.onnx", [(FLOAT, [1, 3, 112, 112])], output_rank=4),
        "random": lambda: _tiny_graph(tmp_path / "random.onnx", [(FLOAT, [1, 3, 112, 112])], random=True),
    }
    chosen: str | Path = preset
    if preset == "nhwc":
        chosen = tmp_path / "nhwc.json"
        arcface = json.loads((PRESETS_DIR / "arcface.json").read_text())
        chosen.write_text(json.dumps({**arcface, "name": "arcface-nhwc", "layout": "NHWC"}))
    before = _listing(untouched_models)
    with pytest.raises(ImportRefused, match=message):
        _import(untouched_models, graphs[graph](), chosen, check_photos)
    assert _listing(untouched_models) == before


def test_requests_that_cannot_be_checked_or_named_are_refused_and_nothing_is_written(
    untouched_models: Path, pooled_arcface_file: Path, check_photos: Path, tmp_path: Path
) -> None:
    before = _listing(untouched_models)
    with pytest.raises(ImportRefused, match="pass --check-images"):
        import_embedder(untouched_models, pooled_arcface_file, "arcface", licence=LICENCE, log=lambda _: None)
    with pytest.raises(ImportRefused, match="state the licence"):
        _import(untouched_models, pooled_arcface_file, "arcface", check_photos, licence=" ")
    with pytest.raises(ImportRefused, match="lowercase letters"):
        _import(untouched_models, pooled_arcface_file, "arcface", check_photos, name="My Model")
    with pytest.raises(ImportRefused, match="no preset 'insightface'"):
        _import(untouched_models, pooled_arcface_file, "insightface", check_photos)
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps({**json.loads((PRESETS_DIR / "arcface.json").read_text()), "scale": 2}))
    with pytest.raises(ImportRefused, match=r"(?s)broken.json is not valid: .*scale.*Extra inputs"):
        _import(untouched_models, pooled_arcface_file, broken, check_photos)
    faceless = tmp_path / "faceless"
    faceless.mkdir()
    Image.new("RGB", (200, 200), (90, 90, 90)).save(faceless / "grey.png")
    with pytest.raises(ImportRefused, match="no face was found"):
        _import(untouched_models, pooled_arcface_file, "arcface", faceless)
    with pytest.raises(ImportRefused, match="not a readable ONNX file"):
        _import(untouched_models, broken, "arcface", check_photos)
    assert _listing(untouched_models) == before


def test_a_second_import_of_the_same_file_and_preset_is_refused_unless_forced(
    models_copy: Path, pooled_arcface_file: Path, check_photos: Path
) -> None:
    first = _import(models_copy, pooled_arcface_file, "arcface", check_photos)
    before = _listing(models_copy)
    with pytest.raises(ImportRefused, match=f"{first.artifact.id} is imported already.*--force"):
        _import(models_copy, pooled_arcface_file, "arcface", check_photos)
    assert _listing(models_copy) == before
    again = _import(models_copy, pooled_arcface_file, "arcface", check_photos, force=True)
    assert again.replaced and again.artifact == first.artifact
    assert [a.id for a in ModelCatalog.load(models_copy).imported] == [first.artifact.id]


@NEEDS_LFW
def test_the_import_command_calibrates_the_model_and_names_its_cohort_in_its_card(
    models_copy: Path, pooled_arcface_file: Path, tmp_path: Path
) -> None:
    people = tmp_path / "people"
    for photos in devtest_people(12, photos_each=3):
        (people / photos[0].parent.name).mkdir(parents=True)
        for path in photos:
            shutil.copy(path, people / path.parent.name / path.name)
    manifest = (models_copy / "manifest.json").read_bytes()
    command = [sys.executable, "-m", "faceverify.cli", "models", "import", str(pooled_arcface_file)]
    command += ["--preset", "arcface", "--name", "arcface-test", "--licence", LICENCE]
    command += ["--calibrate", str(people), "--models", str(models_copy)]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    (card,) = ModelCatalog.load(models_copy).imported
    assert f"imported {card.id}" in done.stdout and "max difference from the original" in done.stdout
    assert "FAR 0.001" in done.stdout
    assert card.name == "arcface-test" and card.threshold is not None and card.threshold.calibrated
    calibration, cohort = card.calibration, card.cohort
    assert calibration is not None and cohort is not None
    assert calibration.people == 12 and set(calibration.tables) == {"cosine", "snorm"}
    assert cohort.model_id == card.id and cohort.people == 12 and (models_copy / cohort.file).is_file()
    # Beside the graph and card, so that mounting embedders/ carries all three.
    assert cohort.file == f"embedders/cohort-{card.id}.npy"
    assert calibration.cohort_identity == cohort.identity
    assert (models_copy / "manifest.json").read_bytes() == manifest  # the built model's entry is its own


def test_the_import_command_refuses_with_the_reason_and_exit_status_2(
    untouched_models: Path, arcface_file: Path, check_photos: Path, tmp_path: Path
) -> None:
    licence = tmp_path / "LICENCE.txt"
    licence.write_text(LICENCE)
    before = _listing(untouched_models)
    command = [
        sys.executable,
        "-m",
        "faceverify.cli",
        "models",
        "import",
        str(arcface_file),
        "--preset",
        "dlib",
    ]
    command += ["--licence-file", str(licence), "--check-images", str(check_photos)]
    command += ["--models", str(untouched_models)]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr
    assert "models import: the graph's input 'input.1' is 1x3x112x112" in done.stderr
    assert _listing(untouched_models) == before


def _nhwc_graph(path: Path, input_name: str, output_name: str) -> Path:
    """A small NHWC embedder with random weights: float (N, 112, 112, 3) in, 16 floats out."""
    weights = np.random.default_rng(0).normal(size=(16, 3, 7, 7)).astype(np.float32)
    nodes = [
        helper.make_node("Transpose", [input_name], ["nchw"], perm=[0, 3, 1, 2]),
        helper.make_node("Conv", ["nchw", "w"], ["conv"], strides=[4, 4]),
        helper.make_node("Relu", ["conv"], ["relu"]),
        helper.make_node("GlobalAveragePool", ["relu"], ["pooled"]),
        helper.make_node("Flatten", ["pooled"], [output_name], axis=1),
    ]
    graph = helper.make_graph(
        nodes, "nhwc", [helper.make_tensor_value_info(input_name, FLOAT, ["n", 112, 112, 3])],
        [helper.make_tensor_value_info(output_name, FLOAT, ["n", 16])],
        initializer=[onnx.numpy_helper.from_array(weights, "w")],
    )  # fmt: skip
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    return path


def test_an_nhwc_graph_whose_own_names_are_the_contracts_imports_unchanged_in_meaning(
    models_copy: Path, check_photos: Path, tmp_path: Path
) -> None:
    onnx_file = _nhwc_graph(tmp_path / "nhwc.onnx", input_name="chips", output_name="embeddings")
    preset = tmp_path / "nhwc.json"
    arcface = json.loads((PRESETS_DIR / "arcface.json").read_text())
    preset.write_text(json.dumps({**arcface, "name": "nhwc", "layout": "NHWC"}))
    card = _import(models_copy, onnx_file, preset, check_photos).artifact
    assert card.batch_size is None and card.embedding_size == 16
    assert "NCHW" not in card.input_contract.normalisation
    served = FacePipeline.from_models(models_copy, model=card.id)
    chips = _largest_face_chips(served, check_photos)
    ours = served.embedder.embed(chips, flip_average=False)
    nhwc = ((chips.astype(np.float32) - 127.5) / 127.5).copy()
    assert np.abs(ours - _original_rows(onnx_file, nhwc)).max() <= 1e-5
