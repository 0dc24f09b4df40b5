"""Response bodies of the API (requests are multipart forms, declared on the routes)."""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from app.decision.points import OperatingPoint
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


class OperatingPointOut(BaseModel):
    """The threshold a decision used and what it promises, from the model's calibration."""

    score: Literal["cosine", "snorm"] = Field(
        description="what the threshold applies to: cosine similarity, or its cohort-normalised S-norm"
    )
    threshold: float = Field(description="match when score >= threshold")
    rule: str = Field(
        description="how the threshold was chosen: far, fpir, threshold (given), max_accuracy or uncalibrated"
    )
    far: float | None = Field(description="false-accept rate of one comparison at this threshold")
    tar: float | None = Field(description="share of same-person pairs at or above it (calibration data)")
    comparisons: int = Field(description="stored faces the probe was compared with")
    false_accept_rate: float | None = Field(
        description="chance that someone else passes any of the comparisons: the decision's FAR for "
        "/verify, its expected FPIR for /identify"
    )
    extrapolated: bool = Field(
        description="true where the FAR lies below what the calibration measured (its tail, extrapolated)"
    )
    calibrated_on: str | None = Field(description="the photos and pairs the calibration was measured on")

    @classmethod
    def of(cls, point: OperatingPoint) -> OperatingPointOut:
        return cls(**dataclasses.asdict(point))


class VerifyResponse(BaseModel):
    """Whether two faces are the same person, at a calibrated operating point."""

    match: bool
    similarity: float = Field(description="cosine similarity of the two unit embeddings, -1 to 1")
    distance: float = Field(description="squared L2 distance between the unit embeddings, 0 to 4")
    score: float = Field(description="the value compared with the threshold (similarity, or its S-norm)")
    threshold: float = Field(description="match when score >= threshold")
    threshold_far: float | None = Field(
        description="false-accept rate of the decision at this threshold, from the calibration"
    )
    operating_point: OperatingPointOut
    image_a: ImageFaces
    image_b: ImageFaces | None = None
    subject_id: str | None = None
    model_id: str
    timings_ms: dict[str, float] = Field(
        description="pipeline: decode to embedding; total: the whole handler"
    )


class EnrolledFace(BaseModel):
    """A face stored from one of the enrolled photos, and where in that photo it was."""

    face_id: int
    field: str = Field(description="the photo it came from: images[0], images[1], ...")
    box: tuple[float, float, float, float] = Field(description="x1, y1, x2, y2 in the photo's pixels")
    score: float = Field(description="the detector's confidence")
    faces_found: int = Field(description="faces the photo held")
    duplicate: bool = Field(
        default=False,
        description="the subject had this photo already (same sha256), or it came earlier in this "
        "request: nothing new was stored, and face_id is the face stored before",
    )


class EnrollResponse(BaseModel):
    """The faces stored for a subject."""

    collection: str
    subject_id: str
    face_ids: list[int]
    faces_found: list[int]
    faces: list[EnrolledFace] = Field(description="per photo, in order: the face stored and its box")
    model_id: str


class CandidateOut(BaseModel):
    """An enrolled subject that resembles the probe, by its best face."""

    subject_id: str
    name: str | None
    similarity: float = Field(description="cosine similarity of the probe and the subject's best face")
    score: float = Field(description="the value compared with the threshold (similarity, or its S-norm)")
    match: bool = Field(description="score >= threshold")
    face_id: int


class IdentifiedFace(BaseModel):
    """One face of the photo (faces=all), with its own candidates and decision."""

    face: FaceOut
    match: bool
    candidates: list[CandidateOut]
    margin: float | None


class IdentifyResponse(BaseModel):
    """Ranked candidates for the probe face, decided as an open-set search."""

    match: bool = Field(description="the best candidate reaches the threshold")
    candidates: list[CandidateOut] = Field(
        description="best first: those that match, and with include_misses the nearest that do not"
    )
    threshold: float = Field(description="match when score >= threshold")
    fpir: float | None = Field(
        description="expected share of people who are not enrolled that this decision names as someone"
    )
    margin: float | None = Field(
        description="score of the best candidate minus that of the second (none with fewer than two)"
    )
    operating_point: OperatingPointOut
    image: ImageFaces
    faces: list[IdentifiedFace] | None = Field(
        None,
        description="with faces=all: every face large enough to embed (largest first, at most "
        "FV_MAX_IDENTIFY_FACES), each decided at the same operating point; the fields above are the "
        "chosen face's",
    )
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


class FaceChange(BaseModel):
    """What deleting or moving one face did."""

    deleted_faces: int = Field(description="1 for a delete, 0 for a move")
    subject_deleted: bool = Field(description="the subject went too: it had no other face")


class FaceRecordOut(BaseModel):
    """A stored face: where it was in its photo, which photo, which model embedded it."""

    face_id: int
    box: tuple[float, float, float, float] | None = Field(description="x1, y1, x2, y2 in its photo's pixels")
    score: float | None = Field(description="the detector's confidence")
    image_sha256: str | None = Field(description="sha256 of the photo it came from")
    model_id: str
    created_at: str


class SubjectFaces(BaseModel):
    """A subject's faces, oldest first."""

    subject_id: str
    faces: list[FaceRecordOut]


class SubjectPatch(BaseModel):
    """Changes to a subject: a field left out stays as it is."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, max_length=256, description="a new name, or null to clear it")
    metadata: dict[str, Any] | None = Field(
        default=None,
        description="merged into the subject's metadata key by key (a null value removes its key), or "
        "replacing it with replace_metadata",
    )
    replace_metadata: bool = False


class FaceMove(BaseModel):
    """Where a face goes."""

    model_config = ConfigDict(extra="forbid")

    subject_id: str = Field(min_length=1, max_length=256, description="the subject it now belongs to")


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
    threshold: float = Field(description="the default /verify threshold (cosine)")
    threshold_calibrated: bool
    verify: OperatingPointOut = Field(description="the default /verify operating point")
    identify_fpir: float = Field(description="the FPIR /identify holds by default")
    score_normalisation: bool = Field(description="/identify decides on cohort-normalised scores")
