"""`faceverify cohort build`, `calibrate` and `eval openset` end to end on real lfw-dev photos."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from math import comb
from pathlib import Path

import pytest

pytest.importorskip("torch", reason="the `train` extra is needed for the calibration commands")

from app.decision.cohort import Cohort
from app.decision.errors import CohortMismatch
from app.face.manifest import load_manifest, write_manifest
from tests.assets import LFW_DEV, REPO

IMAGES = LFW_DEV / "images"


def _faceverify(*args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "faceverify.cli", *args]
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)


def _people_file(pairs_name: str, count: int, folder: Path) -> tuple[Path, dict[str, int]]:
    """A pairs-format file naming the first `count` people of an lfw-dev pairs file, and their photos."""
    if not IMAGES.is_dir():
        pytest.skip(f"needs LFW's development images in {IMAGES} (see README: tests and their data)")
    names: list[str] = []
    for line in (LFW_DEV / pairs_name).read_text().splitlines()[1:]:
        for name in line.split()[0::2] if len(line.split()) == 4 else line.split()[:1]:
            if name not in names:
                names.append(name)
    chosen = sorted(names)[:count]
    path = folder / f"{pairs_name}-{count}.txt"
    path.write_text(f"{len(chosen)}\n" + "".join(f"{n}\t1\t1\n" for n in chosen))
    return path, {n: len(list((IMAGES / n).glob("*.jpg"))) for n in chosen}


@pytest.fixture
def models_copy(models_dir: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "models"
    shutil.copytree(models_dir, copy)
    return copy


def test_cohort_build_then_calibrate_reports_and_installs_only_when_asked(
    models_copy: Path, tmp_path: Path
) -> None:
    cohort_people, _ = _people_file("pairsDevTrain.txt", 40, tmp_path)
    built = _faceverify(
        "cohort", "build", "--images", str(IMAGES), "--people-of", str(cohort_people),
        "--models", str(models_copy), "--top-k", "10",
    )  # fmt: skip
    assert built.returncode == 0, built.stderr
    entry = load_manifest(models_copy).artifact("embedder").cohort
    assert entry is not None and entry.top_k == 10 and entry.people == 40

    people, photos = _people_file("pairsDevTrain.txt", 60, tmp_path)
    before = (models_copy / "manifest.json").read_text()
    looked = _faceverify(
        "calibrate", "--images", str(IMAGES), "--people-of", str(people), "--models", str(models_copy),
        "--far", "0.01", "--far", "1e-9",
    )  # fmt: skip
    assert looked.returncode == 2, looked.stderr  # 1e-9 is below what the pairs support
    assert "FAR 1e-09 refused" in looked.stderr and "nothing written" in looked.stdout
    assert (models_copy / "manifest.json").read_text() == before
    # The reported point at FAR <= 0.01 is a measured one at or under the target (never rounded over it).
    reported = looked.stdout.split("FAR <= 0.01:")[1].splitlines()[1:3]
    for line in reported:
        assert float(line.split("FAR ")[1].split()[0]) <= 0.01, line

    installed = _faceverify(
        "calibrate", "--images", str(IMAGES), "--people-of", str(people), "--models", str(models_copy),
        "--install",
    )  # fmt: skip
    assert installed.returncode == 0, installed.stderr
    embedder = load_manifest(models_copy).artifact("embedder")
    calibration = embedder.calibration
    assert calibration is not None and calibration.people == 60
    photos_used = sum(photos.values())
    assert calibration.images == photos_used
    assert calibration.same_pairs == sum(comb(n, 2) for n in photos.values())
    assert calibration.same_pairs + calibration.different_pairs == comb(photos_used, 2)
    assert calibration.min_far == pytest.approx(10 / calibration.different_pairs)
    assert set(calibration.tables) == {"cosine", "snorm"}
    assert calibration.cohort_identity == entry.identity == f"{entry.sha256}:top10:cos100"
    assert embedder.threshold is not None and embedder.threshold.calibrated_on == calibration.calibrated_on


def test_the_service_refuses_another_models_cohort(models_copy: Path) -> None:
    manifest = load_manifest(models_copy)
    embedder = manifest.artifact("embedder")
    assert embedder.cohort is not None and Cohort.load(models_copy, embedder) is not None
    foreign = embedder.model_copy(update={"cohort": embedder.cohort.model_copy(update={"model_id": "other"})})
    with pytest.raises(CohortMismatch, match="not by the served"):
        Cohort.load(models_copy, foreign)
    write_manifest(
        models_copy, manifest.model_copy(update={"artifacts": {**manifest.artifacts, "embedder": foreign}})
    )
    served = _faceverify("models", "verify", "--models", str(models_copy))
    assert served.returncode == 0, served.stderr  # the model files themselves are intact
    (models_copy / embedder.cohort.file).write_bytes(b"tampered")
    with pytest.raises(CohortMismatch, match="does not match"):
        Cohort.load(models_copy, embedder)


def test_eval_openset_reports_fnir_at_fpir_with_its_plot(models_dir: Path, tmp_path: Path) -> None:
    people, photos = _people_file("pairsDevTest.txt", 80, tmp_path)
    out, plot = tmp_path / "openset.json", tmp_path / "det.png"
    done = _faceverify(
        "eval", "openset", "--images", str(IMAGES), "--people-of", str(people), "--models", str(models_dir),
        "--sizes", "5,all", "--repeats", "3", "--json", str(out), "--plot", str(plot),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    figures = json.loads(out.read_text())
    assert figures["gallery_people"] == sum(n >= 2 for n in photos.values())
    assert figures["non_mated_probes"] == sum(n == 1 for n in photos.values())
    assert set(figures["sizes"]) == {"5", "all"}
    for size, by_score in figures["sizes"].items():
        assert set(by_score) == {"cosine", "snorm"}
        for row in by_score.values():
            assert row["draws"] == (3 if size == "5" else 1)
            fnir = row["fnir_at_fpir"]
            # A stricter FPIR can only miss more mated probes.
            assert 0.0 <= fnir["0.1"] <= fnir["0.01"] <= fnir["0.001"] <= 1.0
            assert 0.0 <= row["default_decision"]["fpir"] <= 1.0
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
