"""A calibration in words: the operating points people ask for, and what they rest on."""

from __future__ import annotations

from app.decision.curves import ScoreCurve
from app.face.manifest import ScoreCalibration

REPORTED_FARS = (1e-2, 1e-3, 1e-4, 1e-5, 1e-6, 1e-7)


def operating_point_lines(calibration: ScoreCalibration, far: float) -> list[str]:
    """The threshold and TAR of each score at one FAR, with the different-person pairs above it."""
    lines = []
    for score, table in calibration.tables.items():
        point = ScoreCurve(table, calibration.min_far).measured_point(far)
        if point is None:
            lines.append(f"  {score:6} no measured point at FAR <= {far:g}")
            continue
        threshold, measured, pairs, tar = point
        lines.append(
            f"  {score:6} threshold {threshold:9.5f}  FAR {measured:.3e} ({pairs:,} different-person "
            f"pairs at or above)  TAR {tar:.4f}"
        )
    return lines


def report_lines(calibration: ScoreCalibration) -> list[str]:
    """The whole report of `faceverify calibrate`."""
    lines = [
        f"calibrated on {calibration.calibrated_on}",
        f"smallest supported FAR {calibration.min_far:.1e} (at least 10 different-person pairs above it); "
        "smaller FARs are refused",
    ]
    for far in REPORTED_FARS:
        if far >= calibration.min_far:
            lines.append(f"FAR {far:g}:")
            lines.extend(operating_point_lines(calibration, far))
    cosine = calibration.tables["cosine"]
    lines.append(f"maximum balanced accuracy: cosine threshold {cosine.max_accuracy:.5f}")
    return lines
