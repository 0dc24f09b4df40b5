"""Domain errors of the identity gallery; the API layer maps them to HTTP statuses."""


class GalleryError(Exception):
    """Base class: every gallery error carries a stable machine-readable code."""

    code = "gallery_error"


class CollectionNotFound(GalleryError):
    """No collection of that name."""

    code = "collection_not_found"


class SubjectNotFound(GalleryError):
    """No subject of that id in the collection."""

    code = "subject_not_found"


class FaceNotFound(GalleryError):
    """No face of that id for the subject."""

    code = "face_not_found"


class ThumbnailNotStored(GalleryError):
    """The face exists, but no thumbnail was kept for it."""

    code = "thumbnail_not_stored"


class MetadataTooLarge(GalleryError):
    """A subject's metadata, once merged, would be larger than it may be."""

    code = "invalid_field"
    field = "metadata"


class SubjectHasNoFaces(GalleryError):
    """The subject exists but has no face left to compare with."""

    code = "subject_has_no_faces"


class CollectionExists(GalleryError):
    """A collection of that name exists already."""

    code = "collection_exists"


class GalleryModelMismatch(GalleryError):
    """Stored embeddings were made by another model than the one loaded; they are never searched."""

    code = "gallery_model_mismatch"


class ModelNotServed(GalleryError):
    """A collection was asked for a model this service does not serve."""

    code = "model_not_found"


class InsufficientStorage(GalleryError):
    """The disk (or the database's size limit) is full: the write was rolled back, nothing half-written."""

    code = "insufficient_storage"


class StoreUnavailable(GalleryError):
    """The database server cannot be reached (down, restarting, or every connection busy)."""

    code = "store_unavailable"


class DataDirLocked(GalleryError):
    """Another server holds the data directory."""

    code = "data_dir_locked"


class InvalidEmbedding(GalleryError):
    """A vector of the wrong size, not finite, or not of unit length."""

    code = "invalid_embedding"


class IndexUnavailable(GalleryError):
    """The vector search server (Milvus) cannot be reached or failed; the store still holds the truth."""

    code = "index_unavailable"
