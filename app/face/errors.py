"""Domain errors of the face pipeline; the API layer maps them to HTTP statuses."""


class FaceError(Exception):
    """Base class: every face-pipeline error carries a stable machine-readable code."""

    code = "face_error"


class ModelError(FaceError):
    """A model artifact cannot be used."""

    code = "model_error"


class ModelMissing(ModelError):
    """The manifest or a file it names is absent."""

    code = "model_missing"


class ModelIntegrityError(ModelError):
    """A model file's bytes differ from the sha256 recorded in the manifest."""

    code = "model_integrity"


class ModelMismatch(ModelError):
    """A model's inputs or outputs differ from the contract in the manifest."""

    code = "model_mismatch"
