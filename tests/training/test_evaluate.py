"""LFW pairs parsing and the verification metrics, checked against brute-force oracles."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tqdm", reason="the `train` extra is needed for the evaluator")

from training.evaluate import (
    accuracy_at,
    auc,
    best_threshold,
    far_at,
    tenfold_accuracy,
    threshold_for_far,
)
from training.lfw import PairsFormatError, pair_people, read_pairs


def _write(folder: Path, text: str) -> Path:
    path = folder / "pairs.txt"
    path.write_text(text)
    return path


def test_single_count_pairs_spread_over_ten_folds(tmp_path: Path) -> None:
    same = "".join(f"Ann_Lee\t{i}\t{i + 1}\n" for i in range(1, 21))
    different = "".join(f"Ann_Lee\t{i}\tBo_Chan\t{i}\n" for i in range(1, 21))
    pairs = read_pairs(_write(tmp_path, "20\n" + same + different), tmp_path)
    assert len(pairs) == 40
    assert sum(p.same for p in pairs) == 20
    assert pairs[0].left == tmp_path / "Ann_Lee" / "Ann_Lee_0001.jpg"
    assert pairs[20].right == tmp_path / "Bo_Chan" / "Bo_Chan_0001.jpg"
    counts = np.bincount([p.fold for p in pairs])
    assert counts.tolist() == [4] * 10  # two same and two different pairs in every fold


def test_folds_header_keeps_lfw_folds(tmp_path: Path) -> None:
    block = "A_B\t1\t2\nA_B\t1\tC_D\t1\n"
    pairs = read_pairs(_write(tmp_path, "3\t1\n" + block * 3), tmp_path)
    assert [p.fold for p in pairs] == [0, 0, 1, 1, 2, 2]
    assert pair_people(tmp_path / "pairs.txt") == ["A_B", "C_D"]


def test_a_broken_pairs_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(PairsFormatError, match="promises 4 pairs"):
        read_pairs(_write(tmp_path, "2\nA\t1\t2\n"), tmp_path)
    with pytest.raises(PairsFormatError, match="3 or 4 fields"):
        read_pairs(_write(tmp_path, "1\nA\t1\nB\t1\tC\t2\n"), tmp_path)


@pytest.fixture
def scores() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(11)
    same = rng.normal(0.8, 0.08, 300)
    different = rng.normal(0.5, 0.1, 300)
    return np.concatenate([same, different]), np.array([True] * 300 + [False] * 300)


def test_auc_equals_the_pairwise_count(scores: tuple[np.ndarray, np.ndarray]) -> None:
    sims, labels = scores
    pairwise = np.mean(sims[labels][:, None] > sims[~labels][None, :])
    assert auc(sims, labels) == pytest.approx(pairwise, abs=1e-12)


def test_best_threshold_is_as_good_as_any(scores: tuple[np.ndarray, np.ndarray]) -> None:
    sims, labels = scores
    best = accuracy_at(sims, labels, best_threshold(sims, labels))
    assert best == max(accuracy_at(sims, labels, t) for t in np.concatenate([sims, [2.0]]))


def test_threshold_for_far_is_the_lowest_within_the_target(scores: tuple[np.ndarray, np.ndarray]) -> None:
    sims, labels = scores
    for target in (0.0, 1e-2, 0.1):
        threshold = threshold_for_far(sims, labels, target)
        assert far_at(sims, labels, threshold) <= target
        lower = np.sort(sims[sims < threshold])[-1]
        assert far_at(sims, labels, float(lower)) > target


def test_tenfold_accuracy_on_separable_scores_is_perfect() -> None:
    sims = np.concatenate([np.linspace(0.7, 1.0, 50), np.linspace(0.0, 0.5, 50)])
    labels = np.array([True] * 50 + [False] * 50)
    folds = np.arange(100) % 10
    assert tenfold_accuracy(sims, labels, folds) == (1.0, 0.0)
