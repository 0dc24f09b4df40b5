"""Score histograms of same- and different-person pairs, and the calibration table read off them."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from app.decision.curves import MIN_PAIRS_ABOVE
from app.face.manifest import ScoreTable

# Bins fine enough that a threshold moves FAR by well under 1% per bin near 1e-3 (cosine 1e-5,
# normalised scores, whose impostors spread over about one unit, 5e-4). Normalised scores span
# S-norm (-40 to 60) plus the cohort's cosine weight times the cosine (up to 100 either way).
BINS = {"cosine": (-1.0, 1.0, 1e-5), "snorm": (-140.0, 160.0, 5e-4)}
_FAR_STEPS_PER_DECADE = 20
_TOP_FAR = 1.0  # from every pair down: a threshold below every score has FAR 1
# Where the FAR runs out of data, TAR still can be read at these levels (for plots and TAR at a threshold).
_TAR_LEVELS = (0.99, 0.95, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.05, 0.01)


class ScoreHistogram:
    """Counts of same- and different-person pair scores in fixed bins; added to chunk by chunk."""

    def __init__(self, low: float, high: float, width: float) -> None:
        self.low, self.width = low, width
        self.bins = round((high - low) / width) + 1
        self.same = np.zeros(self.bins, np.int64)
        self.different = np.zeros(self.bins, np.int64)

    def add(self, scores: npt.NDArray[np.float32], same: npt.NDArray[np.bool_]) -> None:
        """Count pair scores; `same` marks the pairs of one person."""
        bins = np.clip(((scores - self.low) / self.width).astype(np.int64), 0, self.bins - 1)
        self.same += np.bincount(bins[same], minlength=self.bins)
        self.different += np.bincount(bins[~same], minlength=self.bins)

    def edge(self, k: int) -> float:
        """The lower edge of bin k: every score counted in bins >= k is at or above it."""
        return round(self.low + k * self.width, 6)

    @property
    def different_pairs(self) -> int:
        return int(self.different.sum())

    @property
    def same_pairs(self) -> int:
        return int(self.same.sum())

    def table(self) -> ScoreTable:
        """FAR, the pairs behind it and TAR at thresholds down to the smallest supported FAR."""
        different_above = np.cumsum(self.different[::-1])[::-1]
        same_above = np.cumsum(self.same[::-1])[::-1]
        n_different, n_same = max(self.different_pairs, 1), max(self.same_pairs, 1)
        supported = np.flatnonzero(different_above >= MIN_PAIRS_ABOVE)
        if len(supported) == 0:
            raise ValueError(f"fewer than {MIN_PAIRS_ABOVE} different-person pairs: nothing to calibrate")
        top = int(supported[-1])
        chosen = {top}
        decades = np.log10(_TOP_FAR) - np.log10(MIN_PAIRS_ABOVE / n_different)
        for step in range(int(np.floor(decades * _FAR_STEPS_PER_DECADE)) + 1):
            target = _TOP_FAR * 10 ** (-step / _FAR_STEPS_PER_DECADE)
            # The lowest threshold whose FAR is at most the target (different_above falls with k).
            k = int(np.searchsorted(-different_above, -target * n_different, side="left"))
            chosen.add(min(k, top))
        for level in _TAR_LEVELS:
            k = int(np.flatnonzero(same_above >= level * n_same)[-1]) if same_above[0] else 0
            if k > top:
                chosen.add(k)
        # One point per FAR among the supported ones (the lowest threshold giving it), so that the
        # curve is strictly monotonic where it is read both ways.
        lowest: dict[int, int] = {}
        for k in sorted(chosen):
            if k <= top:
                lowest.setdefault(int(different_above[k]), k)
        balanced = same_above / n_same - different_above / n_different
        best = np.flatnonzero(balanced == balanced.max())
        # Several thresholds may tie: the middle of the tied run is the most robust choice.
        most_accurate = int(best[len(best) // 2])
        lowest.setdefault(int(different_above[most_accurate]), most_accurate)
        ks = sorted(set(lowest.values()) | {k for k in chosen if k > top})
        return ScoreTable(
            thresholds=tuple(self.edge(k) for k in ks),
            far=tuple(float(different_above[k] / n_different) for k in ks),
            different_above=tuple(int(different_above[k]) for k in ks),
            tar=tuple(float(same_above[k] / n_same) for k in ks),
            max_accuracy=self.edge(most_accurate),
        )
