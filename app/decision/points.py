"""Operating points: the threshold of each decision and what it promises, from the model's calibration."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Literal

from app.decision.cohort import Cohort
from app.decision.curves import ScoreCurve
from app.decision.errors import OperatingPointUnsupported
from app.face.manifest import Artifact

log = logging.getLogger("faceverify.decision")

Score = Literal["cosine", "snorm"]
NAMED_POINTS = ("default", "max_accuracy")
# One false accept in a thousand attempts: a 1:1 check that a stranger passes rarely, at a TAR that
# still lets most genuine users through first time (the README gives the measured figures).
DEFAULT_VERIFY_FAR = 1e-3
# One stranger in a hundred named as someone, however many people are enrolled.
DEFAULT_IDENTIFY_FPIR = 1e-2
# The false-accept rates a model's card states its TAR at, to compare models by.
STATED_FARS = (1e-3, 1e-4, 1e-5)


@dataclass(frozen=True)
class OperatingPoint:
    """A threshold on one score and what it promises: per comparison, and over the comparisons made."""

    score: Score
    threshold: float
    rule: str  # how it was chosen: "far", "fpir", "threshold", "max_accuracy", "uncalibrated"
    far: float | None  # false-accept rate of one comparison at this threshold
    tar: float | None  # share of same-person pairs at or above it
    comparisons: int  # stored faces the decision compares the probe with
    false_accept_rate: float | None  # chance that a stranger passes any of those comparisons
    extrapolated: bool  # the FAR lies below what the calibration measured (its tail, extrapolated)
    calibrated_on: str | None


def any_of(far: float, comparisons: int) -> float:
    """The chance that at least one of independent comparisons passes: 1 - (1 - far)^n."""
    return -math.expm1(comparisons * math.log1p(-min(far, 1.0 - 1e-15)))


def each_of(rate: float, comparisons: int) -> float:
    """The per-comparison FAR that holds `rate` over n comparisons (the inverse of any_of)."""
    return -math.expm1(math.log1p(-rate) / max(comparisons, 1))


class Decisions:
    """Turns a FAR, an FPIR or an explicit threshold into an operating point, for verify and identify.

    The FPIR of an identification is modelled as 1 - (1 - FAR)^N over the N faces searched; with
    cohort-normalised scores the comparisons of one probe are close to independent, and the open-set
    benchmark measures how well the promise holds.
    """

    def __init__(self, artifact: Artifact, cohort: Cohort | None, verify_far: float, identify_fpir: float):
        self.artifact = artifact
        self.cohort = cohort
        self.verify_far = verify_far
        self.identify_fpir = identify_fpir
        calibration = artifact.calibration
        self.calibrated_on = calibration.calibrated_on if calibration else None
        self.curves: dict[str, ScoreCurve] = {}
        if calibration is not None:
            for score, table in calibration.tables.items():
                if score == "snorm" and (cohort is None or cohort.identity != calibration.cohort_identity):
                    if cohort is not None:
                        log.warning(
                            "the calibration of %s normalised its scores against another cohort: deciding on "
                            "raw cosine until `faceverify calibrate --install` runs again",
                            artifact.id,
                        )
                    continue
                self.curves[score] = ScoreCurve(table, calibration.min_far)
            self.min_far = calibration.min_far
            if verify_far < calibration.min_far:
                raise OperatingPointUnsupported(
                    f"FV_VERIFY_FAR={verify_far:g} is below the smallest FAR the calibration supports "
                    f"({calibration.min_far:.1e}, on {calibration.calibrated_on})"
                )

    @property
    def normalisation(self) -> bool:
        """Whether cohort-normalised scores can be decided on (a cohort and its calibration are loaded)."""
        return "snorm" in self.curves

    def score_for(self, normalise: bool | None, default: bool) -> Score:
        """The score a request decides on: normalised where asked (or by default) and available."""
        wanted = default if normalise is None else normalise
        if wanted and not self.normalisation:
            if normalise:
                raise OperatingPointUnsupported(
                    f"score normalisation needs a cohort and its calibration for {self.artifact.id}; "
                    "build them with `faceverify cohort build` and `faceverify calibrate`"
                )
            return "cosine"
        return "snorm" if wanted else "cosine"

    def _uncalibrated(
        self, score: Score, comparisons: int, threshold: float | None, asked: bool
    ) -> OperatingPoint:
        shipped = self.artifact.threshold
        if score != "cosine" or shipped is None:
            raise OperatingPointUnsupported(f"{self.artifact.id} has no calibration to decide with")
        if asked:
            raise OperatingPointUnsupported(
                f"{self.artifact.id} has no score calibration, so no FAR or FPIR can be turned into a "
                "threshold: give a threshold, or calibrate it with `faceverify calibrate --install`"
            )
        return OperatingPoint(
            score, shipped.similarity if threshold is None else threshold,
            "threshold" if threshold is not None else "uncalibrated",
            None, None, comparisons, None, False, shipped.calibrated_on,
        )  # fmt: skip

    def _threshold_for(self, score: Score, far: float) -> float:
        try:
            value, _ = self.curves[score].threshold_for(far)
        except ValueError:  # a rate that underflows to 0: no threshold can hold it
            raise OperatingPointUnsupported(f"no threshold holds a false-accept rate of {far:g}") from None
        return value

    def _point(self, score: Score, threshold: float, rule: str, comparisons: int) -> OperatingPoint:
        curve = self.curves[score]
        far, extrapolated = curve.far_at(threshold)
        return OperatingPoint(
            score, threshold, rule, far, curve.tar_at(threshold), comparisons,
            any_of(far, comparisons), extrapolated, self.calibrated_on,
        )  # fmt: skip

    def verify(
        self,
        far: float | None = None,
        threshold: float | None = None,
        named: str | None = None,
        score: Score = "cosine",
        comparisons: int = 1,
    ) -> OperatingPoint:
        """The point for a 1:1 decision (or 1:k against a subject's k faces, holding the FAR over all k)."""
        if sum(x is not None for x in (far, threshold, named)) > 1:
            raise OperatingPointUnsupported("ask for one of far, threshold and operating_point, not several")
        if score not in self.curves:
            return self._uncalibrated(score, comparisons, threshold, far is not None or named is not None)
        if threshold is not None:
            return self._point(score, threshold, "threshold", comparisons)
        if named == "max_accuracy":
            value = self.curves[score].table.max_accuracy
            return self._point(score, value, "max_accuracy", comparisons)
        if named not in (None, "default"):
            raise OperatingPointUnsupported(
                f"operating_point is one of {', '.join(NAMED_POINTS)}, not {named!r}"
            )
        target = self.verify_far if far is None else far
        if target < self.min_far:
            raise OperatingPointUnsupported(
                f"far={target:g} is below the smallest FAR the calibration supports ({self.min_far:.1e}: "
                f"fewer than 10 different-person pairs of {self.calibrated_on} lie above it)"
            )
        value = self._threshold_for(score, each_of(target, comparisons))
        return self._point(score, value, "far", comparisons)

    def stated_points(self, fars: tuple[float, ...] = STATED_FARS) -> list[OperatingPoint]:
        """The cosine point at each of `fars` the calibration supports (none for an uncalibrated model)."""
        if "cosine" not in self.curves:
            return []
        return [self.verify(far=far) for far in fars if far >= self.min_far]

    def identify(
        self,
        faces_searched: int,
        fpir: float | None = None,
        threshold: float | None = None,
        score: Score = "snorm",
    ) -> OperatingPoint:
        """The point for an open-set search of N faces: the threshold that holds the FPIR at this N.

        Where the per-comparison FAR falls below what the calibration measured (FPIR 1% over more than
        about 20,000 faces for the stock model), the threshold comes from the extrapolated tail and the
        point says so.
        """
        if fpir is not None and threshold is not None:
            raise OperatingPointUnsupported("ask for fpir or threshold, not both")
        if score not in self.curves:
            return self._uncalibrated(score, faces_searched, threshold, fpir is not None)
        if threshold is not None:
            return self._point(score, threshold, "threshold", faces_searched)
        target = self.identify_fpir if fpir is None else fpir
        # An empty collection matches nobody; its threshold is the one-face one.
        value = self._threshold_for(score, each_of(target, max(faces_searched, 1)))
        return self._point(score, value, "fpir", faces_searched)
