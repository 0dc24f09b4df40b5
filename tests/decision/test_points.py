"""Operating points from a calibration built on synthetic score histograms, and the cohort they use."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from app.decision.cohort import Cohort, cohort_identity, snorm, top_k_stats
from app.decision.errors import CohortMismatch, OperatingPointUnsupported
from app.decision.points import (
    DEFAULT_IDENTIFY_FPIR,
    DEFAULT_VERIFY_FAR,
    Decisions,
    any_of,
    each_of,
)
from app.face.manifest import Artifact, CohortFile, ScoreCalibration, load_manifest, sha256_file
from tests.assets import REPO
from training.score_histogram import BINS, ScoreHistogram

DIFFERENT, SAME = 200_000, 5_000
MIN_FAR = 10 / DIFFERENT
COHORT_SHA = "c0h0r7"
# Scores of each kind: different-person (mean, sd) and same-person (mean, sd).
DISTRIBUTIONS = {"cosine": ((0.3, 0.1), (0.8, 0.05)), "snorm": ((0.0, 1.0), (6.0, 1.5))}


@dataclass(frozen=True)
class Synthetic:
    calibration: ScoreCalibration
    different: dict[str, npt.NDArray[np.float32]]
    same: dict[str, npt.NDArray[np.float32]]

    def far(self, score: str, threshold: float) -> float:
        return float(np.mean(self.different[score] >= threshold))


@pytest.fixture(scope="module")
def synthetic() -> Synthetic:
    rng = np.random.default_rng(21)
    tables, different, same = {}, {}, {}
    for score, ((dm, ds), (sm, ss)) in DISTRIBUTIONS.items():
        low, _, width = BINS[score]
        # In the middle of their bins, so that each table threshold splits them exactly.
        d = np.floor((rng.normal(dm, ds, DIFFERENT) - low) / width)
        s = np.floor((rng.normal(sm, ss, SAME) - low) / width)
        different[score] = (low + (d + 0.5) * width).astype(np.float32)
        same[score] = (low + (s + 0.5) * width).astype(np.float32)
        histogram = ScoreHistogram(*BINS[score])
        histogram.add(
            np.concatenate([different[score], same[score]]),
            np.concatenate([np.zeros(DIFFERENT, bool), np.ones(SAME, bool)]),
        )
        tables[score] = histogram.table()
    calibration = ScoreCalibration(
        calibrated_on="synthetic scores",
        people=100,
        images=1000,
        same_pairs=SAME,
        different_pairs=DIFFERENT,
        min_far=MIN_FAR,
        flip_average=True,
        cohort_identity=cohort_identity(COHORT_SHA, 5, 0.0),
        tables=tables,
        created_at="2024-01-01T00:00:00+00:00",
    )
    return Synthetic(calibration, different, same)


@pytest.fixture(scope="module")
def embedder() -> Artifact:
    return load_manifest(REPO / "models").artifact("embedder")


@pytest.fixture(scope="module")
def artifact(embedder: Artifact, synthetic: Synthetic) -> Artifact:
    return embedder.model_copy(update={"calibration": synthetic.calibration, "cohort": None})


def cohort(sha256: str = COHORT_SHA) -> Cohort:
    vectors = np.random.default_rng(5).normal(size=(30, 128)).astype(np.float32)
    return Cohort(vectors / np.linalg.norm(vectors, axis=1, keepdims=True), top_k=5, sha256=sha256)


@pytest.fixture(scope="module")
def decisions(artifact: Artifact) -> Decisions:
    return Decisions(artifact, None, DEFAULT_VERIFY_FAR, DEFAULT_IDENTIFY_FPIR)


@pytest.fixture(scope="module")
def normalised(artifact: Artifact) -> Decisions:
    return Decisions(artifact, cohort(), DEFAULT_VERIFY_FAR, DEFAULT_IDENTIFY_FPIR)


def test_any_of_and_each_of_are_inverses() -> None:
    assert any_of(0.5, 2) == pytest.approx(0.75, rel=1e-12)
    assert each_of(0.75, 2) == pytest.approx(0.5, rel=1e-12)
    assert any_of(1e-3, 1) == pytest.approx(1e-3, rel=1e-12)
    assert each_of(1e-3, 0) == pytest.approx(1e-3, rel=1e-12)  # no comparison counts as one
    for rate in (1e-6, 1e-3, 0.1, 0.5):
        for n in (1, 3, 50, 10_000):
            assert any_of(each_of(rate, n), n) == pytest.approx(rate, rel=1e-9)
            assert any_of(rate, n) == pytest.approx(1 - (1 - rate) ** n, rel=1e-9)
    assert any_of(1.0, 3) == pytest.approx(1.0)


def test_verify_by_default_holds_a_far_of_one_in_a_thousand(
    decisions: Decisions, synthetic: Synthetic
) -> None:
    point = decisions.verify()
    assert point.rule == "far"
    assert point.score == "cosine"
    assert point.comparisons == 1
    assert point.far == pytest.approx(DEFAULT_VERIFY_FAR, rel=1e-9)
    assert point.false_accept_rate == pytest.approx(DEFAULT_VERIFY_FAR, rel=1e-9)
    assert not point.extrapolated
    assert point.calibrated_on == "synthetic scores"
    # The threshold really lets through about one different-person pair in a thousand.
    assert synthetic.far("cosine", point.threshold) == pytest.approx(DEFAULT_VERIFY_FAR, rel=0.15)
    assert point.tar == pytest.approx(float(np.mean(synthetic.same["cosine"] >= point.threshold)), abs=0.01)
    assert decisions.verify(named="default") == point
    assert decisions.verify(far=DEFAULT_VERIFY_FAR) == point


def test_verify_against_several_faces_holds_the_decisions_far(decisions: Decisions) -> None:
    one = decisions.verify()
    five = decisions.verify(comparisons=5)
    assert five.comparisons == 5
    assert five.threshold > one.threshold
    assert five.false_accept_rate == pytest.approx(DEFAULT_VERIFY_FAR, rel=1e-9)
    assert five.far == pytest.approx(each_of(DEFAULT_VERIFY_FAR, 5), rel=1e-9)
    assert five.far == pytest.approx(DEFAULT_VERIFY_FAR / 5, rel=1e-2)
    assert not five.extrapolated  # 2e-4 per comparison is inside what 200,000 pairs measure
    assert five.tar is not None and one.tar is not None and five.tar <= one.tar


def test_a_far_below_what_the_calibration_supports_is_refused(decisions: Decisions) -> None:
    with pytest.raises(OperatingPointUnsupported, match="smallest FAR"):
        decisions.verify(far=MIN_FAR / 2)
    at_the_edge = decisions.verify(far=MIN_FAR)
    assert at_the_edge.far == pytest.approx(MIN_FAR, rel=1e-9)
    assert not at_the_edge.extrapolated
    smaller = decisions.verify(far=1e-4)
    assert MIN_FAR < smaller.far < DEFAULT_VERIFY_FAR
    assert decisions.verify().threshold < smaller.threshold < at_the_edge.threshold


def test_a_stated_threshold_reads_its_far_off_the_curve(decisions: Decisions, synthetic: Synthetic) -> None:
    for value in (0.45, 0.55, 0.6):
        point = decisions.verify(threshold=value)
        assert point.rule == "threshold"
        assert point.threshold == value
        assert (point.far, point.extrapolated) == decisions.curves["cosine"].far_at(value)
        assert point.far == pytest.approx(synthetic.far("cosine", value), rel=0.25)
        assert point.false_accept_rate == pytest.approx(point.far, rel=1e-9)
        assert point.tar == decisions.curves["cosine"].tar_at(value)
    three = decisions.verify(threshold=0.55, comparisons=3)
    assert three.false_accept_rate == pytest.approx(any_of(three.far, 3), rel=1e-12)
    beyond = decisions.verify(threshold=0.95)
    assert beyond.extrapolated
    assert beyond.far is not None and beyond.far < MIN_FAR


def test_a_low_stated_threshold_does_not_understate_its_far(
    decisions: Decisions, synthetic: Synthetic
) -> None:
    """Below the table's lowest threshold (FAR 0.5) the true FAR keeps rising towards 1; a point that
    reports a FAR from the data must not state about 0.5 there."""
    for value in (0.2, 0.0, -0.5):
        point = decisions.verify(threshold=value)
        assert point.extrapolated or point.far == pytest.approx(synthetic.far("cosine", value), rel=0.25), (
            value,
            point.far,
        )


def test_the_max_accuracy_point(decisions: Decisions, synthetic: Synthetic) -> None:
    point = decisions.verify(named="max_accuracy")
    assert point.rule == "max_accuracy"
    assert point.threshold == synthetic.calibration.tables["cosine"].max_accuracy
    assert 0.45 < point.threshold < 0.7  # between the two synthetic distributions
    with pytest.raises(OperatingPointUnsupported, match="operating_point is one of"):
        decisions.verify(named="strictest")


def test_only_one_way_of_choosing_a_threshold_is_accepted(decisions: Decisions) -> None:
    for kwargs in (
        {"far": 1e-3, "threshold": 0.6},
        {"far": 1e-3, "named": "max_accuracy"},
        {"threshold": 0.6, "named": "default"},
        {"far": 1e-3, "threshold": 0.6, "named": "default"},
    ):
        with pytest.raises(OperatingPointUnsupported, match="one of far"):
            decisions.verify(**kwargs)  # type: ignore[arg-type]
    with pytest.raises(OperatingPointUnsupported, match="not both"):
        decisions.identify(10, fpir=1e-2, threshold=3.0, score="cosine")


def test_identify_raises_the_threshold_with_the_faces_searched(decisions: Decisions) -> None:
    previous = -math.inf
    for n in (1, 10, 100, 1_000, 10_000, 1_000_000):
        point = decisions.identify(n, score="cosine")
        assert point.rule == "fpir"
        assert point.comparisons == n
        assert point.threshold > previous
        previous = point.threshold
        assert point.false_accept_rate == pytest.approx(DEFAULT_IDENTIFY_FPIR, rel=1e-6)
        assert point.far == pytest.approx(each_of(DEFAULT_IDENTIFY_FPIR, n), rel=1e-6)
        assert point.extrapolated == (each_of(DEFAULT_IDENTIFY_FPIR, n) < MIN_FAR)
    # An empty collection: nothing compared, nobody can be matched; the threshold is the one-face one.
    empty = decisions.identify(0, score="cosine")
    assert empty.comparisons == 0 and empty.false_accept_rate == 0.0
    assert empty.threshold == decisions.identify(1, score="cosine").threshold
    assert (
        decisions.identify(1, score="cosine").threshold
        == decisions.verify(far=DEFAULT_IDENTIFY_FPIR).threshold
    )
    stricter = decisions.identify(100, fpir=1e-3, score="cosine")
    assert stricter.false_accept_rate == pytest.approx(1e-3, rel=1e-6)
    assert stricter.threshold > decisions.identify(100, score="cosine").threshold
    stated = decisions.identify(100, threshold=0.6, score="cosine")
    assert stated.rule == "threshold"
    assert stated.false_accept_rate == pytest.approx(any_of(stated.far, 100), rel=1e-12)


def test_identify_on_normalised_scores(normalised: Decisions, synthetic: Synthetic) -> None:
    assert normalised.normalisation
    point = normalised.identify(1_000)
    assert point.score == "snorm"
    assert point.false_accept_rate == pytest.approx(DEFAULT_IDENTIFY_FPIR, rel=1e-6)
    assert synthetic.far("snorm", point.threshold) == pytest.approx(point.far, rel=0.25)
    assert normalised.identify(10_000).threshold > point.threshold


def test_normalisation_needs_a_cohort_and_its_calibration(
    decisions: Decisions, normalised: Decisions, artifact: Artifact, caplog: pytest.LogCaptureFixture
) -> None:
    assert not decisions.normalisation
    assert set(decisions.curves) == {"cosine"}
    with pytest.raises(OperatingPointUnsupported, match="normalisation needs a cohort"):
        decisions.score_for(True, default=False)
    assert decisions.score_for(None, default=True) == "cosine"  # the default falls back quietly
    assert decisions.score_for(False, default=True) == "cosine"
    with pytest.raises(OperatingPointUnsupported):
        decisions.identify(10)  # snorm by default: nothing to decide it with
    assert set(normalised.curves) == {"cosine", "snorm"}
    assert normalised.score_for(None, default=True) == "snorm"
    assert normalised.score_for(True, default=False) == "snorm"
    assert normalised.score_for(False, default=True) == "cosine"
    assert normalised.score_for(None, default=False) == "cosine"
    with caplog.at_level(logging.WARNING, logger="faceverify.decision"):
        other = Decisions(artifact, cohort("another"), DEFAULT_VERIFY_FAR, DEFAULT_IDENTIFY_FPIR)
    assert not other.normalisation
    assert "another cohort" in caplog.text


def test_an_uncalibrated_model_decides_at_its_shipped_threshold(embedder: Artifact) -> None:
    bare = embedder.model_copy(update={"calibration": None, "cohort": None})
    assert bare.threshold is not None
    decisions = Decisions(bare, None, DEFAULT_VERIFY_FAR, DEFAULT_IDENTIFY_FPIR)
    point = decisions.verify()
    assert point.rule == "uncalibrated"
    assert point.threshold == bare.threshold.similarity
    assert point.far is None and point.tar is None and point.false_accept_rate is None
    assert not point.extrapolated
    assert point.calibrated_on == bare.threshold.calibrated_on
    stated = decisions.verify(threshold=0.95)
    assert (stated.rule, stated.threshold, stated.far) == ("threshold", 0.95, None)
    searched = decisions.identify(25, score="cosine")
    assert (searched.rule, searched.comparisons) == ("uncalibrated", 25)
    with pytest.raises(OperatingPointUnsupported):
        decisions.identify(25, score="snorm")
    # A FAR, an FPIR or a named point cannot be honoured without a calibration: refused, not ignored.
    for asked in ({"far": 1e-3}, {"named": "max_accuracy"}):
        with pytest.raises(OperatingPointUnsupported, match="no score calibration"):
            decisions.verify(**asked)  # type: ignore[arg-type]
    with pytest.raises(OperatingPointUnsupported, match="no score calibration"):
        decisions.identify(25, fpir=0.01, score="cosine")
    nothing = bare.model_copy(update={"threshold": None})
    with pytest.raises(OperatingPointUnsupported, match="no calibration"):
        Decisions(nothing, None, DEFAULT_VERIFY_FAR, DEFAULT_IDENTIFY_FPIR).verify()


def test_a_configured_far_below_the_calibration_is_refused(artifact: Artifact) -> None:
    with pytest.raises(OperatingPointUnsupported, match="FV_VERIFY_FAR"):
        Decisions(artifact, None, MIN_FAR / 10, DEFAULT_IDENTIFY_FPIR)
    assert Decisions(artifact, None, MIN_FAR, DEFAULT_IDENTIFY_FPIR).verify().far == pytest.approx(
        MIN_FAR, rel=1e-9
    )


# The cohort itself: top-k statistics, S-norm and loading.


def test_top_k_stats_are_the_mean_and_sd_of_each_rows_best() -> None:
    rng = np.random.default_rng(2)
    similarities = rng.uniform(-1, 1, size=(40, 25)).astype(np.float32)
    mean, sd = top_k_stats(similarities, 7)
    best = -np.sort(-similarities.astype(np.float64), axis=1)[:, :7]
    assert np.allclose(mean, best.mean(axis=1), atol=1e-6)
    assert np.allclose(sd, best.std(axis=1), atol=1e-6)
    mean, _ = top_k_stats(similarities, 100)  # more than there are: every column
    assert np.allclose(mean, similarities.mean(axis=1), atol=1e-6)
    _, flat = top_k_stats(np.full((3, 10), 0.5, np.float32), 4)
    assert np.all(flat > 0)  # never a zero to divide by


def test_snorm_is_the_mean_of_both_sides_z_values() -> None:
    scores = np.array([0.9, 0.1], np.float32)
    value = snorm(scores, np.float32(0.5), np.float32(0.1), np.array([0.3, 0.2], np.float32), np.float32(0.2))
    assert value == pytest.approx(
        [((0.9 - 0.5) / 0.1 + (0.9 - 0.3) / 0.2) / 2, ((0.1 - 0.5) / 0.1 + (0.1 - 0.2) / 0.2) / 2], rel=1e-5
    )


def test_cohort_stats_match_brute_force_across_chunks() -> None:
    rng = np.random.default_rng(4)
    given = cohort()
    faces = rng.normal(size=(5000, 128)).astype(np.float32)  # more than one chunk of 4096
    mean, sd = given.stats(faces)
    sims = faces.astype(np.float64) @ given.vectors.astype(np.float64).T
    best = -np.sort(-sims, axis=1)[:, :5]
    assert mean.shape == sd.shape == (5000,)
    assert np.allclose(mean, best.mean(axis=1), atol=1e-4)
    assert np.allclose(sd, best.std(axis=1), atol=1e-4)
    empty_mean, empty_sd = given.stats(np.zeros((0, 128), np.float32))
    assert empty_mean.shape == empty_sd.shape == (0,)


def _cohort_folder(tmp_path: Path, embedder: Artifact, shape: tuple[int, int] = (12, 128)) -> Artifact:
    vectors = np.random.default_rng(6).normal(size=shape).astype(np.float16)
    np.save(tmp_path / "cohort.npy", vectors, allow_pickle=False)
    entry = CohortFile(
        file="cohort.npy", sha256=sha256_file(tmp_path / "cohort.npy"), model_id=embedder.id,
        faces=12, people=4, top_k=3, built_from="random vectors",
    )  # fmt: skip
    return embedder.model_copy(update={"cohort": entry})


def test_a_cohort_loads_only_for_its_model_and_its_bytes(tmp_path: Path, embedder: Artifact) -> None:
    assert Cohort.load(tmp_path, embedder.model_copy(update={"cohort": None})) is None
    artifact = _cohort_folder(tmp_path, embedder)
    assert artifact.cohort is not None
    loaded = Cohort.load(tmp_path, artifact)
    assert loaded is not None
    assert loaded.vectors.dtype == np.float32 and loaded.vectors.shape == (12, 128)
    assert np.array_equal(loaded.vectors, np.load(tmp_path / "cohort.npy").astype(np.float32))
    assert (loaded.top_k, loaded.sha256) == (3, artifact.cohort.sha256)

    other_model = artifact.model_copy(update={"cohort": artifact.cohort.model_copy(update={"model_id": "x"})})
    with pytest.raises(CohortMismatch, match="embedded by x"):
        Cohort.load(tmp_path, other_model)
    other_bytes = artifact.model_copy(
        update={"cohort": artifact.cohort.model_copy(update={"sha256": "0" * 64})}
    )
    with pytest.raises(CohortMismatch, match="does not match"):
        Cohort.load(tmp_path, other_bytes)
    other_shape = artifact.model_copy(update={"cohort": artifact.cohort.model_copy(update={"faces": 13})})
    with pytest.raises(CohortMismatch, match="holds"):
        Cohort.load(tmp_path, other_shape)
    (tmp_path / "cohort.npy").unlink()
    with pytest.raises(CohortMismatch, match="missing"):
        Cohort.load(tmp_path, artifact)


def test_a_cohort_of_the_wrong_width_is_refused(tmp_path: Path, embedder: Artifact) -> None:
    artifact = _cohort_folder(tmp_path, embedder, shape=(12, 64))
    with pytest.raises(CohortMismatch, match="holds"):
        Cohort.load(tmp_path, artifact)


def test_the_shipped_cohort_loads(embedder: Artifact) -> None:
    if embedder.cohort is None:
        pytest.skip("the built models have no cohort")
    loaded = Cohort.load(REPO / "models", embedder)
    assert loaded is not None
    assert loaded.vectors.shape == (embedder.cohort.faces, embedder.embedding_size)
    assert loaded.top_k == embedder.cohort.top_k
    norms = np.linalg.norm(loaded.vectors, axis=1)
    assert np.allclose(norms, 1.0, atol=1e-2)  # unit vectors, stored as float16
