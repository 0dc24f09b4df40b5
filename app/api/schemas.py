"""Response bodies of the API (requests are multipart forms, declared on the routes)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from app.face.detector import Detection


class FaceOut(BaseModel):
    """A detected face: box (x1, y1, x2, y2) in pixels, score, five landmarks (x, y)."""

    box: tuple[float, float, float, float]
    score: float
    landmarks: list[tuple[float, float]]

    @classmethod
    def of(cls, detection: Detection) -> FaceOut:
        return cls(box=detection.box, score=detection.score, landmarks=list(detection.landmarks))


class ImageFaces(BaseModel):
    """The face a request used from one image, and how many the image held."""

    face: FaceOut
    faces_found: int


class VerifyResponse(BaseModel):
    """Whether two faces are the same person, by the calibrated threshold."""

    match: bool
    similarity: float = Field(description="cosine similarity of the two unit embeddings, -1 to 1")
    distance: float = Field(description="squared L2 distance between the unit embeddings, 0 to 4")
    threshold: float = Field(description="match when similarity >= threshold")
    threshold_far: float | None = Field(
        description="false-accept rate of the threshold where it was calibrated"
    )
    image_a: ImageFaces
    image_b: ImageFaces | None = None
    subject_id: str | None = None
    model_id: str
    timings_ms: dict[str, float] = Field(
        description="pipeline: decode to embedding; total: the whole handler"
    )


class EnrollResponse(BaseModel):
    """The faces stored for a subject."""

    collection: str
    subject_id: str
    face_ids: list[int]
    faces_found: list[int]
    model_id: str


class CandidateOut(BaseModel):
    """An enrolled subject that resembles the probe, by its best face."""

    subject_id: str
    name: str | None
    similarity: float
    face_id: int


class IdentifyResponse(BaseModel):
    """Ranked candidates for the probe face."""

    match: bool
    candidates: list[CandidateOut]
    threshold: float
    image: ImageFaces
    collection: str
    model_id: str
    timings_ms: dict[str, float]


class DetectResponse(BaseModel):
    """Every face found."""

    faces: list[FaceOut]
    count: int


class SubjectOut(BaseModel):
    """An enrolled subject."""

    subject_id: str
    name: str | None
    metadata: dict[str, Any]
    created_at: str
    face_ids: list[int]


class SubjectPage(BaseModel):
    """A page of subjects."""

    collection: str
    subjects: list[SubjectOut]
    total: int
    offset: int
    limit: int


class CollectionOut(BaseModel):
    """A collection and its size."""

    name: str
    model_id: str
    faces: int
    created_at: str


class Deleted(BaseModel):
    """What a delete removed."""

    deleted_faces: int


class Health(BaseModel):
    """Liveness."""

    status: str


class Ready(BaseModel):
    """Readiness: models and gallery loaded, and where they run."""

    status: str
    model_id: str
    execution_providers: list[str]
    index_device: str
    collections: int
    threshold: float
    threshold_calibrated: bool
