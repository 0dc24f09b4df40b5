"""`faceverify eval lfw` and `faceverify calibrate` end to end, on a small LFW-format set of real photos."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("torch", reason="the `train` extra is needed for the evaluation commands")

from tests.assets import REPO
from tests.conftest import photo

PEOPLE = {
    "Barack_Obama": ["obama.jpg", "obama2.jpg", "obama3.jpg"],
    "Joe_Biden": ["biden.jpg"],
    "Tom_Hanks": ["Tom_Hanks_54745.png"],
}
PAIRS = """4
Barack_Obama\t1\t2
Barack_Obama\t1\t3
Barack_Obama\t2\t3
Blank_Wall\t1\t2
Barack_Obama\t1\tJoe_Biden\t1
Barack_Obama\t2\tTom_Hanks\t1
Joe_Biden\t1\tTom_Hanks\t1
Blank_Wall\t1\tTom_Hanks\t1
"""


@pytest.fixture(scope="module")
def small_lfw(photos: list[Path], tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("lfw")
    for person, files in PEOPLE.items():
        (root / "images" / person).mkdir(parents=True)
        for number, name in enumerate(files, start=1):
            shutil.copy(photo(photos, name), root / "images" / person / f"{person}_{number:04d}.jpg")
    # LFW's convention for an image without a face: it is embedded anyway, from a centre box, and counted.
    (root / "images" / "Blank_Wall").mkdir()
    for number, grey in ((1, 120), (2, 124)):
        blank = Image.fromarray(np.full((250, 250, 3), grey, np.uint8))
        blank.save(root / "images" / "Blank_Wall" / f"Blank_Wall_{number:04d}.jpg")
    (root / "pairs.txt").write_text(PAIRS)
    return root / "images", root / "pairs.txt"


def _faceverify(*args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "faceverify.cli", *args]
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)


def test_eval_lfw_writes_its_figures_and_plot(
    small_lfw: tuple[Path, Path], models_dir: Path, tmp_path: Path
) -> None:
    images, pairs = small_lfw
    out, plot = tmp_path / "eval.json", tmp_path / "roc.png"
    done = _faceverify(
        "eval", "lfw", "--images", str(images), "--pairs", str(pairs),
        "--models", str(models_dir), "--json", str(out), "--plot", str(plot),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "10-fold accuracy" in done.stdout
    figures = json.loads(out.read_text())
    for key in ("pairs", "accuracy_10fold", "accuracy_10fold_std", "threshold", "accuracy_at_threshold",
                "val_at_far_1e-3", "auc", "no_face_images", "ms_per_image"):  # fmt: skip
        assert key in figures, key
    assert figures["pairs"] == 8
    assert figures["no_face_images"] == 2
    assert len(figures["no_face_paths"]) == 2
    assert figures["accuracy_at_threshold"] == 1.0
    assert figures["auc"] == 1.0
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_eval_lfw_takes_a_single_fold_header_and_says_when_val_is_unmeasurable(
    small_lfw: tuple[Path, Path], models_dir: Path, tmp_path: Path
) -> None:
    images, pairs = small_lfw
    one_fold = tmp_path / "one-fold.txt"
    one_fold.write_text("1 4\n" + "".join(pairs.read_text().splitlines(keepends=True)[1:]))
    out = tmp_path / "eval.json"
    done = _faceverify(
        "eval", "lfw", "--images", str(images), "--pairs", str(one_fold), "--models", str(models_dir),
        "--json", str(out),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    figures = json.loads(out.read_text())
    assert figures["pairs"] == 8 and 0.0 <= figures["accuracy_10fold"] <= 1.0
    # 4 different-person pairs cannot measure a FAR of 1e-3: no number, and a reason.
    assert figures["val_at_far_1e-3"] is None and "10,000" in figures["val_note"]
    assert "VAL @ FAR=1e-3     n/a" in done.stdout


def test_the_shipped_model_is_calibrated_on_devtrain_people(manifest) -> None:  # type: ignore[no-untyped-def]
    embedder = manifest.artifact("embedder")
    calibration, cohort = embedder.calibration, embedder.cohort
    assert calibration is not None, "run `faceverify calibrate --install --record` on DevTrain's people"
    assert "pairsDevTrain.txt" in calibration.calibrated_on and calibration.min_far <= 1e-6
    assert calibration.min_far == pytest.approx(10 / calibration.different_pairs)
    assert set(calibration.tables) == {"cosine", "snorm"}
    assert cohort is not None and "pairsDevTrain.txt" in cohort.built_from
    assert calibration.cohort_identity == cohort.identity and cohort.model_id == embedder.id
    assert embedder.threshold.calibrated and embedder.threshold.calibrated_on == calibration.calibrated_on
