"""One calibrated score: threshold <-> false-accept rate and true-accept rate, from a measured table."""

from __future__ import annotations

import math

import numpy as np

from app.face.manifest import ScoreTable

# A false-accept rate is only stated where at least this many different-person pairs lie above it.
MIN_PAIRS_ABOVE = 10
# The tail beyond the data is extrapolated from the last decade of FAR the data supports.
_TAIL_DECADES = 1.0


class ScoreCurve:
    """A ScoreTable read both ways, interpolating log(FAR) linearly in the threshold.

    Below the smallest supported FAR the impostor tail is extrapolated (log-linear, fitted on its last
    measured decade), and every answer says whether it came from the data or from that extrapolation.
    """

    def __init__(self, table: ScoreTable, min_far: float) -> None:
        self.table = table
        self.min_far = min_far
        thresholds = np.asarray(table.thresholds, dtype=np.float64)
        far = np.asarray(table.far, dtype=np.float64)
        supported = np.asarray(table.different_above) >= MIN_PAIRS_ABOVE
        if supported.sum() < 2:
            raise ValueError("a score table needs at least two points with enough different-person pairs")
        # Ascending thresholds for np.interp; FAR falls as the threshold rises.
        order = np.argsort(thresholds[supported])
        self._t = thresholds[supported][order]
        self._log_far = np.log(far[supported][order])
        all_order = np.argsort(thresholds)
        self._tar_t = thresholds[all_order]
        self._tar = np.asarray(table.tar, dtype=np.float64)[all_order]
        tail = self._log_far <= self._log_far.min() + _TAIL_DECADES * math.log(10)
        if tail.sum() < 2:
            tail = np.zeros_like(tail)
            tail[-2:] = True
        slope, _ = np.polyfit(self._t[tail], self._log_far[tail], 1)
        # A tail must fall: a flat fit would put every threshold at infinity.
        self._slope = float(min(slope, -1e-6))
        # Through the last measured point, so that the curve is continuous where the data ends.
        self._intercept = float(self._log_far[-1] - self._slope * self._t[-1])

    @property
    def top_supported(self) -> float:
        """The highest threshold whose FAR the data measured."""
        return float(self._t[-1])

    def far_at(self, threshold: float) -> tuple[float, bool]:
        """The FAR of one comparison at a threshold, and whether it was extrapolated beyond the data."""
        if threshold > self._t[-1]:
            return math.exp(self._intercept + self._slope * threshold), True
        if threshold < self._t[0] and self._log_far[0] < 0.0:
            # Below the lowest measured threshold of a table that does not reach FAR 1: unknown, so
            # the worst case.
            return 1.0, True
        return float(np.exp(np.interp(threshold, self._t, self._log_far))), False

    def threshold_for(self, far: float) -> tuple[float, bool]:
        """The threshold whose FAR is `far`, and whether it was extrapolated beyond the data."""
        if not 0.0 < far <= 1.0:
            raise ValueError(f"a false-accept rate lies in (0, 1], not {far}")
        log_far = math.log(far)
        if log_far < self._log_far[-1]:
            return (log_far - self._intercept) / self._slope, True
        # np.interp needs ascending x: log FAR rises as the threshold falls.
        return float(np.interp(log_far, self._log_far[::-1], self._t[::-1])), False

    def measured_point(self, far: float) -> tuple[float, float, int, float] | None:
        """The measured point with the highest FAR at most `far`: threshold, FAR, the different-person
        pairs at or above it, TAR; None where the data supports no such point."""
        table = self.table
        points = [
            i for i, (f, n) in enumerate(zip(table.far, table.different_above, strict=True))
            if f <= far and n >= MIN_PAIRS_ABOVE
        ]  # fmt: skip
        if not points:
            return None
        i = max(points, key=lambda j: (table.far[j], -table.thresholds[j]))
        return table.thresholds[i], table.far[i], table.different_above[i], table.tar[i]

    def tar_at(self, threshold: float) -> float | None:
        """The share of same-person pairs at or above a threshold; None above the highest measured."""
        if threshold > self._tar_t[-1]:
            return None
        return float(np.interp(threshold, self._tar_t, self._tar))
