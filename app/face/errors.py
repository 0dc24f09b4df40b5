"""Domain errors of the face pipeline; the API layer maps them to HTTP statuses."""

from __future__ import annotations

from collections.abc import Sequence


class FaceError(Exception):
    """Base class: every face-pipeline error carries a stable machine-readable code, and, once known,
    the request field whose image caused it (`image_b`, `images[2]`)."""

    code = "face_error"
    field: str | None = None


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


class ModelNotFound(ModelError):
    """No embedder of that id or name in the models folder."""

    code = "model_not_found"


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
    """Several faces where exactly one is required, with the competing boxes (x1, y1, x2, y2)."""

    code = "many_faces"

    def __init__(self, message: str, boxes: Sequence[tuple[float, float, float, float]] = ()) -> None:
        super().__init__(message)
        self.boxes = [tuple(round(v, 1) for v in box) for box in boxes]


class FaceTooSmall(FaceNotUsable):
    """The face is smaller than the configured minimum: too little detail to embed reliably."""

    code = "face_too_small"


class FaceChoiceInvalid(FaceError):
    """A face choice that names no face: an unknown rule, an index past the faces found."""

    code = "invalid_field"

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field
