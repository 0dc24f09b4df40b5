"""Response bodies of the API (requests are multipart forms, declared on the routes)."""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from app.decision.points import Decisions, OperatingPoint
from app.face.detector import Detection
from app.face.manifest import Artifact


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
    seq: int = Field(
        description="the changes feed's number of this enrollment: pass it as after_seq to /identify or "
        "/verify on any replica to be answered from a gallery that holds it (0 when nothing was stored)"
    )


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


class ModelOut(BaseModel):
    """One embedder the service holds: what it takes, where it came from, and what its decisions promise."""

    model_id: str
    name: str | None = Field(description="the short name it was imported under (none for the built model)")
    default: bool = Field(description="the model of new collections and of /verify without model=")
    embedding_size: int
    chip_size: int = Field(description="the side of the square chip it takes, in pixels")
    alignment: str | None = Field(description="the alignment template (or box crop) its chips are cut by")
    normalisation: str = Field(description="how the graph normalises the chip's pixels")
    source_file: str
    source_sha256: str
    licence: str
    preset: str | None = Field(description="the import preset (none for the built model)")
    calibrated_on: str | None = Field(description="the photos and pairs its calibration was measured on")
    cohort: str | None = Field(description="what its cohort was built from (none: raw cosine only)")
    verify: OperatingPointOut = Field(description="its default /verify operating point")
    stated: list[OperatingPointOut] = Field(
        description="TAR at FAR 1e-3, 1e-4 and 1e-5 (those its calibration supports), to compare models by"
    )

    @classmethod
    def of(cls, artifact: Artifact, decisions: Decisions, default: bool) -> ModelOut:
        contract = artifact.input_contract
        return cls(
            model_id=artifact.id,
            name=artifact.name,
            default=default,
            embedding_size=artifact.embedding_size or 0,
            chip_size=contract.size[0] if contract.size else 0,
            alignment=contract.alignment_template,
            normalisation=contract.normalisation,
            source_file=artifact.source.file,
            source_sha256=artifact.source.sha256,
            licence=artifact.source.licence,
            preset=artifact.source.preset,
            calibrated_on=decisions.calibrated_on,
            cohort=artifact.cohort.built_from if artifact.cohort else None,
            verify=OperatingPointOut.of(decisions.verify()),
            stated=[OperatingPointOut.of(point) for point in decisions.stated_points()],
        )


class ServedModelOut(ModelOut):
    """A model as the running service holds it."""

    execution_providers: list[str]


class Ready(BaseModel):
    """Readiness: models and gallery loaded, and where they run."""

    status: str
    model_id: str = Field(description="the default model")
    models: list[ServedModelOut] = Field(description="every model served, the default one first")
    execution_providers: list[str]
    index_device: str
    collections: int
    threshold: float = Field(description="the default /verify threshold (cosine)")
    threshold_calibrated: bool
    verify: OperatingPointOut = Field(description="the default /verify operating point")
    identify_fpir: float = Field(description="the FPIR /identify holds by default")
    score_normalisation: bool = Field(description="/identify decides on cohort-normalised scores")


class CurvePoint(BaseModel):
    """One measured point of a calibration: at this threshold, these shares of pairs score at or above it."""

    threshold: float
    far: float = Field(description="share of different-person pairs at or above the threshold")
    tar: float = Field(description="share of same-person pairs at or above the threshold")


class ScoreCurveOut(BaseModel):
    """A score's measured curve, where enough different-person pairs lie above each point to state it."""

    score: Literal["cosine", "snorm"]
    points: list[CurvePoint]


class ModelCurves(BaseModel):
    """The DET / ROC curves a model's decisions come from (FNMR = 1 - TAR against FAR)."""

    model_id: str
    calibrated_on: str | None
    curves: list[ScoreCurveOut]
