"""Domain errors of the decision layer; the API layer maps them to HTTP statuses."""


class DecisionError(Exception):
    """Base class: every decision error carries a stable machine-readable code."""

    code = "decision_error"


class OperatingPointUnsupported(DecisionError):
    """A requested operating point lies outside what the calibration measured, or needs what is absent."""

    code = "operating_point_unsupported"


class CohortMismatch(DecisionError):
    """A cohort (or a calibration made with one) belongs to another model or another cohort file."""

    code = "cohort_mismatch"
