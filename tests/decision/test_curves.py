"""ScoreHistogram tables and ScoreCurve readings, checked against brute force on synthetic scores.

Scores are drawn from normal distributions and moved to the middle of their histogram bin, so that every
bin edge splits them exactly: a table's counts can then be compared with plain `scores >= threshold`.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise

import numpy as np
import numpy.typing as npt
import pytest

from app.decision.curves import MIN_PAIRS_ABOVE, ScoreCurve
from app.face.manifest import ScoreTable
from training.score_histogram import BINS, ScoreHistogram

# Where the different- and same-person scores of each kind are drawn from: (mean, sd, count).
DISTRIBUTIONS = {
    "cosine": ((0.3, 0.1, 20_000), (0.8, 0.05, 2_000)),
    "snorm": ((0.0, 1.0, 20_000), (6.0, 1.5, 2_000)),
}
# Twenty table points per decade of FAR: between two of them the true FAR moves by about 12%.
RESOLUTION = 1.25


def centred(
    kind: str, values: npt.NDArray[np.float64]
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
    """Values moved to the middle of their bin of the `kind` histogram, and those bins."""
    low, high, width = BINS[kind]
    bins = round((high - low) / width) + 1
    k = np.clip(np.floor((values - low) / width).astype(np.int64), 0, bins - 1)
    return (low + (k + 0.5) * width).astype(np.float32), k


@dataclass(frozen=True)
class Measured:
    kind: str
    different: npt.NDArray[np.float32]
    same: npt.NDArray[np.float32]
    different_bins: npt.NDArray[np.int64]
    same_bins: npt.NDArray[np.int64]
    histogram: ScoreHistogram
    table: ScoreTable
    curve: ScoreCurve

    def far(self, threshold: float) -> float:
        return float(np.mean(self.different >= threshold))

    def tar(self, threshold: float) -> float:
        return float(np.mean(self.same >= threshold))

    @property
    def supported(self) -> list[int]:
        """Table rows resting on at least MIN_PAIRS_ABOVE different-person pairs, by rising threshold."""
        rows = [i for i, n in enumerate(self.table.different_above) if n >= MIN_PAIRS_ABOVE]
        return sorted(rows, key=lambda i: self.table.thresholds[i])


def measure(kind: str, seed: int) -> Measured:
    rng = np.random.default_rng(seed)
    (dm, ds, dn), (sm, ss, sn) = DISTRIBUTIONS[kind]
    different, different_bins = centred(kind, rng.normal(dm, ds, dn))
    same, same_bins = centred(kind, rng.normal(sm, ss, sn))
    histogram = ScoreHistogram(*BINS[kind])
    scores = np.concatenate([different, same])
    labels = np.concatenate([np.zeros(dn, bool), np.ones(sn, bool)])
    order = rng.permutation(len(scores))
    for chunk in np.array_split(order, 7):  # added chunk by chunk, in no particular order
        histogram.add(scores[chunk], labels[chunk])
    table = histogram.table()
    return Measured(
        kind, different, same, different_bins, same_bins, histogram, table, ScoreCurve(table, 10 / dn)
    )


@pytest.fixture(scope="module", params=sorted(DISTRIBUTIONS))
def measured(request: pytest.FixtureRequest) -> Measured:
    return measure(request.param, seed=7 if request.param == "cosine" else 8)


def test_scores_land_in_their_own_bins(measured: Measured) -> None:
    assert measured.histogram.different_pairs == len(measured.different)
    assert measured.histogram.same_pairs == len(measured.same)
    assert np.array_equal(
        measured.histogram.different, np.bincount(measured.different_bins, minlength=measured.histogram.bins)
    )
    assert np.array_equal(
        measured.histogram.same, np.bincount(measured.same_bins, minlength=measured.histogram.bins)
    )


def test_every_table_point_is_the_exact_share_above_its_threshold(measured: Measured) -> None:
    table, n = measured.table, len(measured.different)
    assert len(table.thresholds) == len(table.far) == len(table.different_above) == len(table.tar)
    assert len(set(table.thresholds)) == len(table.thresholds)
    low, _, width = BINS[measured.kind]
    for t, far, above, tar in zip(table.thresholds, table.far, table.different_above, table.tar, strict=True):
        k = round((t - low) / width)
        assert t == pytest.approx(low + k * width, abs=1e-9)  # thresholds are bin edges
        assert above == int(np.sum(measured.different_bins >= k))
        assert above == int(np.sum(measured.different >= t))
        assert far == above / n
        assert tar == measured.tar(t)


def test_far_strictly_falls_as_the_threshold_rises_over_supported_points(measured: Measured) -> None:
    table, rows = measured.table, measured.supported
    fars = [table.far[i] for i in rows]
    assert len(rows) >= 40  # about three decades of FAR at twenty points a decade
    assert all(a > b for a, b in pairwise(fars))
    assert all(table.different_above[i] >= MIN_PAIRS_ABOVE for i in rows)


def test_the_supported_points_span_every_pair_down_to_the_last_ten(measured: Measured) -> None:
    table, rows, n = measured.table, measured.supported, len(measured.different)
    low, _, width = BINS[measured.kind]
    lowest, top = table.thresholds[rows[0]], table.thresholds[rows[-1]]
    # From a high FAR (at the lowest threshold that gives it)...
    assert table.far[rows[0]] == max(table.far) >= 0.5
    assert lowest == low or measured.far(lowest - width) > table.far[rows[0]]
    # ...down to the fewest different-person pairs above a threshold that are still at least
    # MIN_PAIRS_ABOVE, at the lowest threshold with that count.
    fewest = int(np.sum(measured.different >= np.sort(measured.different)[::-1][MIN_PAIRS_ABOVE - 1]))
    assert table.different_above[rows[-1]] == fewest
    assert int(np.sum(measured.different >= top)) == fewest < int(np.sum(measured.different >= top - width))
    assert min(table.far[i] for i in rows) == pytest.approx(MIN_PAIRS_ABOVE / n, rel=0.5)
    # Points above the supported range only carry TAR levels: fewer than the minimum pairs.
    assert all(table.different_above[i] < MIN_PAIRS_ABOVE for i, t in enumerate(table.thresholds) if t > top)
    # Twenty points per decade: neighbouring supported FARs are close.
    fars = [table.far[i] for i in rows]
    assert max(a / b for a, b in pairwise(fars)) < RESOLUTION


def test_far_at_reads_the_table_and_tracks_the_data_between_points(measured: Measured) -> None:
    table, curve = measured.table, measured.curve
    for i in measured.supported:
        far, extrapolated = curve.far_at(table.thresholds[i])
        assert far == pytest.approx(table.far[i], rel=1e-12)
        assert not extrapolated
    lowest, top = table.thresholds[measured.supported[0]], curve.top_supported
    assert top == table.thresholds[measured.supported[-1]]
    previous = 1.0
    for t in np.linspace(lowest, top, 301):
        far, extrapolated = curve.far_at(float(t))
        assert not extrapolated
        assert far == pytest.approx(measured.far(float(t)), rel=RESOLUTION - 1)
        assert far <= previous
        previous = far


def test_far_at_below_the_table_does_not_understate_the_far(measured: Measured) -> None:
    """A FAR stated as measured (not extrapolated) must be the data's FAR, whatever the threshold.

    far_at clamps thresholds below the table to its lowest point's FAR: a table that stopped at FAR 0.5
    would answer about 0.5, unflagged, at a threshold every different-person pair passes (true FAR 1).
    """
    lowest = measured.table.thresholds[measured.supported[0]]
    low, _, _ = BINS[measured.kind]
    for t in (low, float(np.min(measured.different)), float(np.quantile(measured.different, 0.2)), lowest):
        far, extrapolated = measured.curve.far_at(t)
        assert extrapolated or far == pytest.approx(measured.far(t), rel=RESOLUTION - 1), (t, far)


def test_threshold_for_inverts_far_at_inside_the_data(measured: Measured) -> None:
    table, curve, rows = measured.table, measured.curve, measured.supported
    smallest, largest = table.far[rows[-1]], table.far[rows[0]]
    targets = np.concatenate([np.geomspace(smallest, largest, 97), [table.far[i] for i in rows]])
    for target in np.sort(targets):
        threshold, extrapolated = curve.threshold_for(float(target))
        assert not extrapolated
        assert table.thresholds[rows[0]] <= threshold <= curve.top_supported
        far, extrapolated = curve.far_at(threshold)
        assert not extrapolated
        assert far == pytest.approx(target, rel=1e-6)
        assert measured.far(threshold) == pytest.approx(target, rel=RESOLUTION - 1)
    thresholds = [curve.threshold_for(float(f))[0] for f in np.geomspace(smallest, largest, 50)]
    assert all(a > b for a, b in pairwise(thresholds))
    # A table point's FAR gives back its own threshold.
    for i in rows:
        assert curve.threshold_for(table.far[i])[0] == pytest.approx(table.thresholds[i], abs=1e-9)


def test_threshold_for_refuses_rates_outside_zero_to_one(measured: Measured) -> None:
    for bad in (0.0, -1e-3, 1.5):
        with pytest.raises(ValueError, match="lies in"):
            measured.curve.threshold_for(bad)


def test_beyond_the_smallest_supported_far_the_tail_is_extrapolated(measured: Measured) -> None:
    curve, table = measured.curve, measured.table
    smallest = table.far[measured.supported[-1]]
    assert curve.far_at(curve.top_supported) == (pytest.approx(smallest, rel=1e-12), False)
    previous = curve.top_supported
    for factor in (0.9, 0.5, 0.1, 1e-2, 1e-3, 1e-6):
        threshold, extrapolated = curve.threshold_for(smallest * factor)
        assert extrapolated
        assert threshold > previous  # above the highest supported threshold, rising as the FAR falls
        previous = threshold
        far, extrapolated = curve.far_at(threshold)
        assert extrapolated
        assert far == pytest.approx(smallest * factor, rel=1e-9)
    # Continuous where the data ends, and falling beyond it.
    just_above, extrapolated = curve.far_at(curve.top_supported + 1e-9)
    assert extrapolated
    assert just_above == pytest.approx(smallest, rel=1e-4)
    beyond = [curve.far_at(curve.top_supported + d)[0] for d in (0.01, 0.1, 0.5, 1.0)]
    assert all(a > b for a, b in pairwise([smallest, *beyond]))


def test_measured_point_is_the_largest_supported_far_within_the_request(measured: Measured) -> None:
    table, curve, rows = measured.table, measured.curve, measured.supported
    smallest = table.far[rows[-1]]
    for request in (0.5, 0.2, 0.1, 0.03, 1e-2, 3e-3, 1e-3, smallest * 1.05, smallest):
        point = curve.measured_point(request)
        assert point is not None
        threshold, far, above, tar = point
        assert far <= request
        assert above >= MIN_PAIRS_ABOVE
        assert far == max(table.far[i] for i in rows if table.far[i] <= request)
        assert far == measured.far(threshold) == above / len(measured.different)
        assert tar == measured.tar(threshold)
    assert curve.measured_point(smallest * 0.99) is None
    assert curve.measured_point(1e-9) is None


def test_tar_at_reads_the_table(measured: Measured) -> None:
    table, curve = measured.table, measured.curve
    for t, tar in zip(table.thresholds, table.tar, strict=True):
        assert curve.tar_at(t) == pytest.approx(tar, abs=1e-12)
        assert curve.tar_at(t) == pytest.approx(measured.tar(t), abs=1e-12)
    # Above the highest measured threshold the TAR is unknown, not 0.
    assert curve.tar_at(max(table.thresholds) + 1e-3) is None
    grid = np.linspace(min(table.thresholds) - 1.0, max(table.thresholds), 400)
    tars = [curve.tar_at(float(t)) for t in grid]
    assert all(a is not None and b is not None and a >= b for a, b in pairwise(tars))
    # Between points TAR is interpolated: close to the data where the table is dense.
    top = curve.top_supported
    for t in np.linspace(min(table.thresholds), top, 50):
        assert curve.tar_at(float(t)) == pytest.approx(measured.tar(float(t)), abs=0.02)


def test_max_accuracy_maximises_balanced_accuracy(measured: Measured) -> None:
    table = measured.table

    def balanced(t: float) -> float:
        return (measured.tar(t) + 1.0 - measured.far(t)) / 2.0

    # Every distinct score is a candidate threshold (and beyond all of them, accuracy one half).
    candidates = np.unique(np.concatenate([measured.different, measured.same])).astype(np.float64)
    same = np.sort(measured.same)
    different = np.sort(measured.different)
    tar = 1.0 - np.searchsorted(same, candidates, side="left") / len(same)
    far = 1.0 - np.searchsorted(different, candidates, side="left") / len(different)
    best = float(np.max((tar + 1.0 - far) / 2.0))
    assert balanced(table.max_accuracy) == pytest.approx(best, abs=1e-12)
    assert all(balanced(t) <= balanced(table.max_accuracy) + 1e-12 for t in table.thresholds)
    assert best > 0.9  # the synthetic distributions are well apart


def test_a_histogram_adds_up_chunk_by_chunk() -> None:
    rng = np.random.default_rng(3)
    scores = rng.uniform(-1.2, 1.2, 5000).astype(np.float32)  # some beyond the bins: clipped to the ends
    same = rng.random(5000) < 0.2
    whole, parts = ScoreHistogram(*BINS["cosine"]), ScoreHistogram(*BINS["cosine"])
    whole.add(scores, same)
    for chunk in np.array_split(np.arange(5000), 9):
        parts.add(scores[chunk], same[chunk])
    assert np.array_equal(whole.same, parts.same)
    assert np.array_equal(whole.different, parts.different)
    assert whole.same_pairs == int(same.sum())
    assert whole.different_pairs == int((~same).sum())
    assert whole.different[0] == int(np.sum(scores[~same] < -1.0 + 1e-5))
    assert whole.different[-1] == int(np.sum(scores[~same] >= 1.0))


def test_too_few_different_pairs_are_refused() -> None:
    histogram = ScoreHistogram(*BINS["cosine"])
    histogram.add(np.linspace(0.1, 0.2, 9, dtype=np.float32), np.zeros(9, bool))
    with pytest.raises(ValueError, match="fewer than"):
        histogram.table()
    one_point = ScoreTable(
        thresholds=(0.1, 0.2), far=(0.5, 0.1), different_above=(50, 9), tar=(1.0, 0.9), max_accuracy=0.2
    )
    with pytest.raises(ValueError, match="at least two points"):
        ScoreCurve(one_point, 0.01)
