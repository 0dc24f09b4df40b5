"""`train export`: a checkpoint becomes the served embedder, or is refused for breaking the contract."""

from __future__ import annotations

import shutil
import subprocess
import sys
from itertools import pairwise
from pathlib import Path

import httpx
import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the training tests need the `train` extra (torch)")

from app.face.align import align_face  # noqa: E402
from app.face.image import decode_image  # noqa: E402
from app.face.manifest import load_manifest, verified_path  # noqa: E402
from app.face.pipeline import FacePipeline  # noqa: E402
from tests.assets import LFW_DEV, REPO  # noqa: E402
from tests.server import running_server  # noqa: E402
from tests.training.conftest import NEEDS_LFW, write_lfw_pairs  # noqa: E402
from training.backbones import L2Normalize  # noqa: E402
from training.build import build_models  # noqa: E402
from training.data import ChipSet  # noqa: E402
from training.export_checkpoint import ExportRefused, export_checkpoint, export_model, load_trained  # noqa: E402
from training.fit import LAST_CHECKPOINT, ROC_PLOT, Trainer, held_out  # noqa: E402
from training.fit_config import FitConfig  # noqa: E402
from training.lfw import Pair  # noqa: E402
from training.prepare import scaled_template  # noqa: E402

pytestmark = NEEDS_LFW


def _pairs(chips: ChipSet) -> list[Pair]:
    """Same-person pairs (a person's first two photos) and different-person pairs (neighbours' first)."""
    photos: dict[str, list[Path]] = {}
    for source in chips.sources:
        photos.setdefault(source.split("/")[0], []).append(Path(source))
    people = [p for p in photos.values() if len(p) >= 2]
    same = [(p[0], p[1], True) for p in people]
    different = [(a[0], b[0], False) for a, b in pairwise(people)]
    return [Pair(*pair, fold=i % 10) for i, pair in enumerate(same + different)]


@pytest.fixture(scope="module")
def checkpoint(prepared: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One epoch of the small CNN, evaluated on pairs of its own people: the export needs a run, not a
    good one."""
    chips = ChipSet.load(prepared, 64)
    config = FitConfig(epochs=1, people_per_batch=4, images_per_person=3, extra_negatives=2)
    out = tmp_path_factory.mktemp("run")
    Trainer(config, chips, out, held_out(chips, _pairs(chips))).fit(progress=False)
    return out / LAST_CHECKPOINT


@pytest.fixture(scope="module")
def exported(checkpoint: Path, models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("exported")
    result = export_checkpoint(checkpoint, out, models_dir, log=lambda _: None)
    assert result.parity <= 1e-5
    return out


def test_training_draws_the_roc_of_its_held_out_pairs(checkpoint: Path) -> None:
    assert (checkpoint.parent / ROC_PLOT).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_export_states_the_contract_the_chips_were_cut_with(
    exported: Path, models_dir: Path, pipeline: FacePipeline
) -> None:
    manifest = load_manifest(exported)
    embedder = manifest.artifact("embedder")
    contract = embedder.input_contract
    assert embedder.id.startswith("trained-small-") and contract.size == (64, 64)
    assert contract.alignment_template == "mtcnn5-dlib-chip-150-pad0.25@64"
    assert np.allclose(contract.alignment_points, scaled_template(pipeline, 64))
    assert embedder.threshold is not None and not embedder.threshold.calibrated
    assert embedder.source.package == "faceverify"
    for role in ("pnet", "rnet", "onet"):  # the detectors came along, checksums intact
        assert manifest.artifact(role) == load_manifest(models_dir).artifact(role)
        verified_path(exported, manifest.artifact(role))


def test_the_served_pipeline_embeds_as_the_trained_model_does(
    exported: Path, checkpoint: Path, photos: list[Path]
) -> None:
    served = FacePipeline.from_models(exported)
    image = decode_image(photos[0].read_bytes())
    face = served.detect(image)[0]
    chip = align_face(image, face.landmarks, served.embedder.template, 64)
    trained, _ = load_trained(checkpoint)
    with torch.no_grad():
        expected = trained(torch.from_numpy(chip[None].copy())).numpy()
    assert np.abs(served.embedder.embed(chip[None], flip_average=False) - expected).max() <= 1e-5


def test_a_model_normalising_over_the_batch_axis_is_refused_and_nothing_is_written(
    checkpoint: Path, models_dir: Path, tmp_path: Path
) -> None:
    model, saved = load_trained(checkpoint)
    model.normalize = L2Normalize(dim=0)  # the classic bug, on otherwise the same trained model
    with pytest.raises(ExportRefused, match="not of unit norm") as caught:
        export_model(model, saved, checkpoint, tmp_path / "models", models_dir, log=lambda _: None)
    assert "dim 1" in str(caught.value)
    assert not (tmp_path / "models" / "manifest.json").exists()


def test_an_installed_model_is_served_end_to_end_and_kept_by_models_build(
    checkpoint: Path, models_dir: Path, photos: list[Path], tmp_path: Path
) -> None:
    served_models = tmp_path / "models"
    shutil.copytree(models_dir, served_models)
    installed = export_checkpoint(checkpoint, served_models, served_models, log=lambda _: None).artifact
    assert not build_models(served_models, log=lambda _: None).rebuilt
    assert load_manifest(served_models).artifact("embedder") == installed

    first, second = photos[0], photos[1]
    files = [("image_a", (first.name, first.read_bytes())), ("image_b", (second.name, second.read_bytes()))]
    with running_server(served_models, tmp_path / "data") as url:
        ready = httpx.get(f"{url}/ready", timeout=10).json()
        answer = httpx.post(f"{url}/verify", files=files, timeout=30)
    assert ready["model_id"] == installed.id
    assert answer.status_code == 200, answer.text
    a, b = FacePipeline.from_models(served_models).largest_faces([first.read_bytes(), second.read_bytes()])
    expected = float(a.face.embedding @ b.face.embedding)
    assert answer.json()["similarity"] == pytest.approx(expected, abs=1e-4)


def test_the_export_command_calibrates_the_threshold_through_the_served_pipeline(
    checkpoint: Path, models_dir: Path, tmp_path: Path
) -> None:
    pairs = write_lfw_pairs(tmp_path / "pairs.txt", people=11)
    out = tmp_path / "models"
    command = [sys.executable, "-m", "faceverify.cli", "train", "export", str(checkpoint), "--out", str(out)]
    command += ["--models", str(models_dir), "--calibrate-pairs", str(pairs)]
    command += ["--calibrate-images", str(LFW_DEV / "images")]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    threshold = load_manifest(out).artifact("embedder").threshold
    assert threshold is not None and threshold.calibrated and threshold.far is not None
    calibration = load_manifest(out).artifact("embedder").calibration
    # Every pair of the photos of the people the pairs file names, on raw cosine (no cohort yet).
    assert calibration is not None and "the people of pairs.txt" in calibration.calibrated_on
    assert set(calibration.tables) == {"cosine"} and calibration.cohort_identity is None
    assert threshold.calibrated_on == calibration.calibrated_on
    photos = calibration.images
    assert calibration.same_pairs + calibration.different_pairs == photos * (photos - 1) // 2
    assert f"FV_MODELS_DIR={out}" in done.stdout
