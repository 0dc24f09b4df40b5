"""score_all_pairs against brute force: every pair's cosine, and its S-norm with both people left out."""

from __future__ import annotations

from itertools import combinations
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

pytest.importorskip("torch", reason="the `train` extra is needed for the training package")

import training.calibrate as calibrate
from app.decision.cohort import Cohort
from training.calibrate import (
    PairHistograms,
    _leave_out_statistics,
    _pair_statistics,
    _Sorted,
    calibration_from,
    named_threshold,
    score_all_pairs,
)
from training.cohort import CohortForCalibration
from training.labelled import LabelledFaces, person_key
from training.score_histogram import BINS, ScoreHistogram

DIMENSIONS = 16
TOP_K = 5
# Scores so close to a bin edge that float32 and float64 may put them on either side of it.
BOUNDARY_SLACK = 3


def unit(x: npt.NDArray[np.float64]) -> npt.NDArray[np.float32]:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def synthetic(seed: int = 0, tight: float = 0.0) -> tuple[LabelledFaces, CohortForCalibration]:
    """30 people with 1-5 photos each, and a cohort of 20 people (10 of them also calibration people,
    their cohort photos near their calibration ones) with 1-5 photos each.

    `tight` pulls every vector towards one direction: at 2 a face's top cohort similarities are about
    0.91 with a spread of about 0.013, as with the dlib model's real cohort (0.915 and 0.005).
    """
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(40, DIMENSIONS))
    common = tight * unit(np.random.default_rng(1).normal(size=DIMENSIONS)).astype(np.float64)
    names = tuple(f"Person_{i:02d}" for i in range(30))
    counts = rng.integers(1, 6, size=30)
    people = np.repeat(np.arange(30), counts)
    vectors = unit(common + unit(centres[people] + 0.8 * rng.normal(size=(len(people), DIMENSIONS))))
    faces = LabelledFaces(
        vectors=vectors,
        people=people.astype(np.int64),
        names=names,
        paths=tuple(Path(f"{names[p]}/{i}.jpg") for i, p in enumerate(people)),
        skipped=0,
        source="synthetic",
    )
    cohort_people = list(range(20, 40))  # 20-29 are calibration people too, 30-39 are not
    cohort_counts = rng.integers(1, 6, size=len(cohort_people))
    cohort_counts[0] = 5
    members = np.repeat(cohort_people, cohort_counts)
    cohort_vectors = unit(common + unit(centres[members] + 0.8 * rng.normal(size=(len(members), DIMENSIONS))))
    keys = [person_key(f"Person_{p:02d}") for p in members]
    return faces, CohortForCalibration(Cohort(cohort_vectors, TOP_K, sha256="x"), keys)


def _top_k(values: npt.NDArray[np.float64]) -> tuple[float, float]:
    best = np.sort(values)[::-1][:TOP_K]
    return float(best.mean()), max(float(best.std()), 1e-4)


def brute_force(
    faces: LabelledFaces, given: CohortForCalibration, leave_out_both: bool = True
) -> dict[str, ScoreHistogram]:
    """Histograms of every pair i < j, scored one by one in float64."""
    vectors = faces.vectors.astype(np.float64)
    cohort_sims = vectors @ given.cohort.vectors.astype(np.float64).T
    face_keys = np.array(faces.person_keys())
    cohort_keys = np.array(given.keys)
    cosines, normalised, same = [], [], []
    for i, j in combinations(range(len(vectors)), 2):
        cosine = float(vectors[i] @ vectors[j])
        left_out = {face_keys[i], face_keys[j]} if leave_out_both else None
        stats = []
        for face in (i, j):
            excluded = left_out if left_out is not None else {face_keys[face]}
            keep = ~np.isin(cohort_keys, list(excluded))
            stats.append(_top_k(cohort_sims[face][keep]))
        (mi, si), (mj, sj) = stats
        cosines.append(cosine)
        normalised.append(((cosine - mi) / si + (cosine - mj) / sj) / 2.0)
        same.append(faces.people[i] == faces.people[j])
    labels = np.array(same)
    histograms = {}
    for name, values in (("cosine", cosines), ("snorm", normalised)):
        histograms[name] = ScoreHistogram(*BINS[name])
        histograms[name].add(np.array(values, np.float64), labels)
    return histograms


def cumulative_gap(a: ScoreHistogram, b: ScoreHistogram) -> int:
    """The largest difference between two histograms' counts at or above any bin edge."""
    gaps = [
        np.abs(np.cumsum(x[::-1]) - np.cumsum(y[::-1])).max()
        for x, y in ((a.same, b.same), (a.different, b.different))
    ]
    return int(max(gaps))


@pytest.fixture(scope="module")
def data() -> tuple[LabelledFaces, CohortForCalibration]:
    return synthetic()


@pytest.fixture(scope="module")
def oracle(data: tuple[LabelledFaces, CohortForCalibration]) -> dict[str, ScoreHistogram]:
    return brute_force(*data)


@pytest.fixture(scope="module")
def scored(data: tuple[LabelledFaces, CohortForCalibration]) -> PairHistograms:
    return score_all_pairs(data[0], data[1], progress=False)


def test_the_pair_counts_are_the_combinatorial_ones(
    data: tuple[LabelledFaces, CohortForCalibration], scored: PairHistograms
) -> None:
    faces = data[0]
    n = len(faces.vectors)
    per_person = np.bincount(faces.people)
    same = int(sum(c * (c - 1) // 2 for c in per_person))
    assert same > 0
    for name in ("cosine", "snorm"):
        assert scored.scores[name].same_pairs == same
        assert scored.scores[name].different_pairs == n * (n - 1) // 2 - same
    assert (scored.people, scored.images) == (30, n)
    without = score_all_pairs(faces, None, progress=False)
    assert set(without.scores) == {"cosine"}
    assert np.array_equal(without.scores["cosine"].different, scored.scores["cosine"].different)


def test_cosine_scores_match_brute_force(scored: PairHistograms, oracle: dict[str, ScoreHistogram]) -> None:
    assert cumulative_gap(scored.scores["cosine"], oracle["cosine"]) <= BOUNDARY_SLACK
    assert oracle["cosine"].table().different_above == pytest.approx(
        scored.scores["cosine"].table().different_above, abs=BOUNDARY_SLACK
    )


def test_snorm_leaves_both_people_of_each_pair_out(
    data: tuple[LabelledFaces, CohortForCalibration],
    scored: PairHistograms,
    oracle: dict[str, ScoreHistogram],
) -> None:
    ours, exact = scored.scores["snorm"], oracle["snorm"]
    assert cumulative_gap(ours, exact) <= BOUNDARY_SLACK
    ours_table, exact_table = ours.table(), exact.table()
    assert len(ours_table.thresholds) == pytest.approx(len(exact_table.thresholds), abs=BOUNDARY_SLACK)
    # The test can tell: leaving out only each face's own person scores many pairs differently.
    one_out = brute_force(*data, leave_out_both=False)["snorm"]
    assert cumulative_gap(ours, one_out) > 10 * BOUNDARY_SLACK


def exact_pair_statistics(
    faces: LabelledFaces, given: CohortForCalibration
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """(N, N) top-k cohort mean and SD of face i with the people of faces i and j left out, in float64."""
    vectors = faces.vectors.astype(np.float64)
    sims = vectors @ given.cohort.vectors.astype(np.float64).T
    face_keys = np.array(faces.person_keys())
    cohort_keys = np.array(given.keys)
    n = len(vectors)
    mean, sd = np.zeros((n, n)), np.zeros((n, n))
    for i in range(n):
        for key in set(face_keys):
            keep = (cohort_keys != face_keys[i]) & (cohort_keys != key)
            columns = face_keys == key
            mean[i, columns], sd[i, columns] = _top_k(sims[i][keep])
    return mean, sd


@pytest.mark.parametrize("tight", [0.0, 2.0], ids=["spread", "dlib-like"])
def test_each_pairs_cohort_statistics_leave_both_people_out(tight: float) -> None:
    """Row and column statistics of every pair, from the calibration's own corrections, against brute
    force; SDs to within what float32 similarities allow (the uncorrected ones are within 4e-5)."""
    faces, given = synthetic(tight=tight)
    stats = _leave_out_statistics(faces, given, progress=False)
    assert len(stats.face) > 0  # second people do turn up among the top k: corrections are made
    n = len(faces.vectors)
    row_mean, row_sd, column_mean, column_sd = _pair_statistics(
        stats, np.arange(n), n, _Sorted.by(stats.face), _Sorted.by(stats.other)
    )
    mean, sd = exact_pair_statistics(faces, given)
    pairs = ~np.eye(n, dtype=bool)
    assert np.abs(row_mean - mean)[pairs].max() < 1e-6
    assert np.abs(column_mean - mean.T)[pairs].max() < 1e-6
    assert (np.abs(row_sd - sd) / sd)[pairs].max() < 2e-4
    assert (np.abs(column_sd - sd.T) / sd.T)[pairs].max() < 2e-4


@pytest.mark.parametrize("block", [300, 2_000])
def test_chunked_scoring_gives_the_same_histograms(
    data: tuple[LabelledFaces, CohortForCalibration],
    scored: PairHistograms,
    block: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Rows scored a few at a time (so that corrections cross chunk boundaries) count the same pairs."""
    monkeypatch.setattr(calibrate, "_BLOCK", block)
    chunked = score_all_pairs(data[0], data[1], progress=False)
    for name in ("cosine", "snorm"):
        assert cumulative_gap(chunked.scores[name], scored.scores[name]) <= 1
        assert chunked.scores[name].different_pairs == scored.scores[name].different_pairs


def test_a_cohort_with_no_calibration_people_matches_brute_force() -> None:
    faces, given = synthetic(seed=3)
    strangers = [person_key(f"Stranger_{k}") for k in given.keys]  # nobody of the calibration set
    only_strangers = CohortForCalibration(given.cohort, strangers)
    ours = score_all_pairs(faces, only_strangers, progress=False).scores["snorm"]
    assert cumulative_gap(ours, brute_force(faces, only_strangers)["snorm"]) <= BOUNDARY_SLACK


def test_a_cohort_too_small_to_leave_two_people_out_is_refused(
    data: tuple[LabelledFaces, CohortForCalibration],
) -> None:
    faces = data[0]
    vectors = unit(np.random.default_rng(9).normal(size=(11, DIMENSIONS)))
    keys = [person_key(name) for name in ["Person_00"] * 3 + ["Person_01"] * 3 + ["Person_31"] * 5]
    # 11 faces, at most 5 of one person: a top 5 without two people needs 5 + 2 * 5 = 15.
    with pytest.raises(ValueError, match="too few to leave two people"):
        score_all_pairs(faces, CohortForCalibration(Cohort(vectors, TOP_K, "x"), keys), progress=False)
    # 11 faces, at most 3 of one person: 5 + 2 * 3 = 11 is just enough.
    keys = [person_key(name) for name in ["Person_00"] * 3 + ["Person_01"] * 3 + ["Person_31"] * 3]
    keys += [person_key("Person_32")] * 2
    enough = CohortForCalibration(Cohort(vectors, TOP_K, "x"), keys)
    histograms = score_all_pairs(faces, enough, progress=False)
    assert cumulative_gap(histograms.scores["snorm"], brute_force(faces, enough)["snorm"]) <= BOUNDARY_SLACK


def test_the_calibration_and_its_named_threshold(
    data: tuple[LabelledFaces, CohortForCalibration], scored: PairHistograms
) -> None:
    faces, given = data
    calibration = calibration_from(scored, faces, flip_average=True, cohort=given.cohort)
    cosine = scored.scores["cosine"]
    assert (calibration.same_pairs, calibration.different_pairs) == (
        cosine.same_pairs,
        cosine.different_pairs,
    )
    assert calibration.min_far == 10 / cosine.different_pairs
    assert calibration.cohort_identity == given.cohort.identity
    assert set(calibration.tables) == {"cosine", "snorm"}
    assert calibration.tables["snorm"] == scored.scores["snorm"].table()
    assert f"{cosine.same_pairs:,} same-person" in calibration.calibrated_on
    threshold = named_threshold(calibration)
    table = calibration.tables["cosine"]
    assert threshold.similarity == table.max_accuracy
    assert threshold.squared_distance == pytest.approx(2 - 2 * table.max_accuracy, abs=1e-6)
    assert threshold.calibrated
    # Its FAR and accuracy are those of the pairs themselves (read off the table: interpolated between
    # its points, twenty a decade of FAR).
    vectors = faces.vectors.astype(np.float64)
    upper = np.triu(np.ones((len(vectors), len(vectors)), bool), 1)
    sims = (vectors @ vectors.T)[upper]
    same = (faces.people[:, None] == faces.people[None, :])[upper]
    far = float(np.mean(sims[~same] >= threshold.similarity))
    tar = float(np.mean(sims[same] >= threshold.similarity))
    assert threshold.far == pytest.approx(far, rel=0.15)
    assert threshold.accuracy == pytest.approx((tar + 1 - far) / 2, abs=0.02)
    assert (tar + 1 - far) / 2 > 0.75  # the synthetic people are told apart
