"""`train prepare` and `train fit` on real LFW faces: logs, exact resumes, and the guard in the loop."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the training tests need the `train` extra (torch)")

from tests.assets import LFW_DEV, REPO  # noqa: E402
from tests.training.conftest import NEEDS_LFW, write_lfw_pairs  # noqa: E402
from training.backbones import L2Normalize  # noqa: E402
from training.data import ChipSet, PKSampler  # noqa: E402
from training.fit import LOG_FILE, Trainer  # noqa: E402
from training.fit_config import FitConfig  # noqa: E402
from training.guard import EmbeddingCollapse  # noqa: E402
from training.prepare import INDEX_FILE, REPORT_FILE  # noqa: E402

pytestmark = NEEDS_LFW


def test_prepare_writes_chips_index_and_a_report(prepared: Path) -> None:
    report = json.loads((prepared / REPORT_FILE).read_text())
    assert report["people"] == 14 and report["images"] == 65
    assert report["unreadable"] and report["unreadable"][0].endswith("broken.jpg")
    assert report["chips"] == 64 - len(report["no_face"])
    small, large = ChipSet.load(prepared, 64), ChipSet.load(prepared, 150)
    assert small.chips.shape == (report["chips"], 64, 64, 3) and large.chips.shape[1:] == (150, 150, 3)
    assert small.sources == large.sources and (small.labels == large.labels).all()
    with (prepared / INDEX_FILE).open() as f:
        assert len(list(csv.DictReader(f))) == report["chips"]
    with pytest.raises(FileNotFoundError, match="--size 96"):
        ChipSet.load(prepared, 96)


def test_the_sampler_draws_p_people_by_k_images_and_singles_only_as_negatives(prepared: Path) -> None:
    labels = ChipSet.load(prepared, 64).labels
    sampler = PKSampler(labels, people=4, per_person=3, extra_negatives=2, seed=1)
    single_labels = {label for label in set(labels.tolist()) if (labels == label).sum() == 1}
    batches = sampler.epoch(0)
    assert len(batches) == len(sampler) == 10 // 4
    for rows in batches:
        assert len(set(rows.tolist())) == len(rows) == 4 * 3 + 2
        counts = {label: int((labels[rows] == label).sum()) for label in set(labels[rows].tolist())}
        assert sorted(counts.values()) == [1, 1, 3, 3, 3, 3]
        assert {label for label, n in counts.items() if n == 1} <= single_labels
    assert all((a == b).all() for a, b in zip(batches, sampler.epoch(0), strict=True))


def _config(**changes: object) -> FitConfig:
    base = FitConfig(
        epochs=2, people_per_batch=4, images_per_person=3, extra_negatives=2, guard_warmup_steps=100, lr=1e-3
    )
    return FitConfig(**{**base.__dict__, **changes})


def test_fit_logs_every_epoch_and_a_resume_continues_exactly(prepared: Path, tmp_path: Path) -> None:
    chips = ChipSet.load(prepared, 64)
    straight = Trainer(_config(), chips, tmp_path / "straight")
    history = straight.fit(progress=False)
    assert [row["epoch"] for row in history] == [1, 2]
    with (tmp_path / "straight" / LOG_FILE).open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2
    for key in ("mean_loss", "mean_active", "mean_d_ap", "mean_d_an", "mean_spread", "lr"):
        assert np.isfinite(float(rows[-1][key])), key

    cut = Trainer(_config(), chips, tmp_path / "cut")
    cut.run_epoch(progress=False)
    cut.save("last.pt")  # as if the run had been stopped after its first epoch
    resumed = Trainer(_config(), chips, tmp_path / "cut")
    resumed.restore(tmp_path / "cut" / "last.pt")
    resumed.fit(progress=False)
    assert resumed.epoch == 2
    for name, value in straight.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[name]), name
    with pytest.raises(ValueError, match="other settings"):
        Trainer(_config(lr=1e-2), chips, tmp_path / "cut").restore(tmp_path / "cut" / "last.pt")


def test_a_model_normalising_over_the_batch_axis_is_stopped_at_its_first_step(
    prepared: Path, tmp_path: Path
) -> None:
    trainer = Trainer(_config(), ChipSet.load(prepared, 64), tmp_path / "bad")
    trainer.model.normalize = L2Normalize(dim=0)
    with pytest.raises(EmbeddingCollapse, match="not unit vectors") as caught:
        trainer.fit(progress=False)
    assert "dim 1" in str(caught.value) and trainer.step == 0


def test_embeddings_that_collapse_to_one_point_stop_the_run_after_the_warm_up(
    prepared: Path, tmp_path: Path
) -> None:
    trainer = Trainer(_config(guard_warmup_steps=1), ChipSet.load(prepared, 64), tmp_path / "flat")
    with torch.no_grad():  # every face maps to the same vector: the end state of a collapsed run
        trainer.model.embed.weight.zero_()
        trainer.model.embed.bias.fill_(1.0)
    with pytest.raises(EmbeddingCollapse, match="collapsed") as caught:
        trainer.fit(progress=False)
    assert "step 2" in str(caught.value) and "learning rate" in str(caught.value)


def test_the_fit_command_evaluates_held_out_pairs_cutting_their_chips_on_first_use(
    prepared: Path, models_dir: Path, tmp_path: Path
) -> None:
    pairs = write_lfw_pairs(tmp_path / "pairs.txt", people=10)
    out = tmp_path / "run"
    command = [
        sys.executable,
        "-m",
        "faceverify.cli",
        "train",
        "fit",
        "--data",
        str(prepared),
        "--out",
        str(out),
    ]
    command += [
        "--eval-pairs",
        str(pairs),
        "--eval-images",
        str(LFW_DEV / "images"),
        "--models",
        str(models_dir),
    ]
    command += [
        "--epochs",
        "1",
        "--people-per-batch",
        "4",
        "--images-per-person",
        "3",
        "--extra-negatives",
        "2",
    ]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "held-out evaluation after every epoch" in done.stderr and "(20 pairs)" in done.stderr
    assert (out / "held-out" / "chips_64.npy").is_file() and (out / "roc.png").is_file()
    with (out / LOG_FILE).open() as f:
        (row,) = list(csv.DictReader(f))
    assert 0.0 <= float(row["auc"]) <= 1.0 and float(row["accuracy_10fold"]) > 0.0
