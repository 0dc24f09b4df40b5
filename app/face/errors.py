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


class ImageError(FaceError):
    """The uploaded bytes cannot be used as an image."""

    code = "bad_image"


class BadImage(ImageError):
    """Empty, corrupt, truncated or undecodable image data."""

    code = "bad_image"


class ImageTooLarge(ImageError):
    """More bytes or more pixels than the configured limits (decompression-bomb guard)."""

    code = "image_too_large"


class UnsupportedImageFormat(ImageError):
    """A real image, in a format the service does not accept."""

    code = "unsupported_media_type"


class FaceNotUsable(FaceError):
    """The image decoded, but its faces do not suit the request."""

    code = "face_not_usable"


class NoFace(FaceNotUsable):
    """No face was found."""

    code = "no_face"


class ManyFaces(FaceNotUsable):
    """Several faces where exactly one is required."""

    code = "many_faces"


class FaceTooSmall(FaceNotUsable):
    """The face is smaller than the configured minimum: too little detail to embed reliably."""

    code = "face_too_small"
