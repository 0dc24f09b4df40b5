"""Service settings, read from FV_* environment variables; each app gets its own instance."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from app.api.engine import EngineSettings
from app.decision.points import DEFAULT_IDENTIFY_FPIR, DEFAULT_VERIFY_FAR
from app.edge import EdgeLimits
from app.face.detector import DetectorSettings
from app.face.image import DEFAULT_DETECTION_SIDE, DEFAULT_MAX_BYTES, DEFAULT_MAX_PIXELS, DecodeLimits
from app.face.pipeline import PipelineSettings
from app.gallery.index import IndexSettings
from app.gallery.milvus import MilvusSettings


class Settings(BaseSettings):
    """Everything the service can be told; defaults give the embedded single-host set-up."""

    model_config = SettingsConfigDict(env_prefix="FV_", extra="ignore")

    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=0, le=65535)] = 8000
    data_dir: Path = Path("data")
    # A shared PostgreSQL database (postgresql://user:password@host/db) for several replicas; none: the
    # embedded SQLite file in data_dir. Each replica keeps its own data_dir (its index snapshots).
    database_url: str | None = None
    database_pool_size: Annotated[int, Field(ge=1, le=256)] = 8
    # How often a replica looks for other replicas' changes when no notification wakes it.
    sync_poll_s: Annotated[float, Field(gt=0.0, le=60.0)] = 0.5
    models_dir: Path = Path("models")
    # The embedder new collections and two-photo /verify use (an id or name of `faceverify models list`);
    # none: the one `faceverify models build` made.
    default_model: str | None = None
    inference_threads: Annotated[int, Field(ge=0)] = 0
    log_level: Literal["critical", "error", "warning", "info", "debug", "trace"] = "info"
    log_format: Literal["text", "json"] = "text"  # json: one object a line, for log collectors
    # JSON: {"key": ["collection", ...]} or {"key": ["*"]}; none configured = open, loopback only.
    api_keys: dict[str, list[str]] = {}
    allow_open: bool = False  # serve without keys on a non-loopback address (behind an auth proxy)
    inference_workers: Annotated[int, Field(ge=1, le=256)] = 4
    max_pending_requests: Annotated[int, Field(ge=0)] = 64  # 0 answers every inference 503 (draining)
    max_batch: Annotated[int, Field(ge=1, le=1024)] = 16
    max_batch_wait_ms: Annotated[float, Field(ge=0.0, le=1000.0)] = 0.0

    # Operating points: the false-accept rate /verify holds, the FPIR /identify holds whatever the
    # collection's size, and whether /identify normalises scores against the model's cohort.
    verify_far: Annotated[float, Field(gt=0.0, lt=1.0)] = DEFAULT_VERIFY_FAR
    identify_fpir: Annotated[float, Field(ge=1e-6, lt=1.0)] = DEFAULT_IDENTIFY_FPIR
    score_normalisation: bool = True

    max_image_bytes: int = DEFAULT_MAX_BYTES
    # A whole request: room for the most photos one enroll takes (10) at the image limit, and its fields.
    max_request_bytes: Annotated[int, Field(ge=1024)] = 10 * DEFAULT_MAX_BYTES + 1024 * 1024
    max_pixels: int = DEFAULT_MAX_PIXELS
    # The HTTP edge: what a request may take before the application sees it, and how long it may take
    # to arrive; files and fields a form may carry (the most any route takes is 10 photos).
    max_header_bytes: Annotated[int, Field(ge=1024)] = 64 * 1024
    max_headers: Annotated[int, Field(ge=8)] = 100
    request_timeout_s: Annotated[float, Field(gt=0)] = 60.0
    keep_alive_timeout_s: Annotated[float, Field(gt=0)] = 5.0
    max_connections: Annotated[int, Field(ge=1)] = 1000
    max_form_files: Annotated[int, Field(ge=2)] = 10
    max_form_fields: Annotated[int, Field(ge=1)] = 16
    min_face_size: float = 32.0
    # /identify with faces=all answers for at most this many faces of a photo (largest first).
    max_identify_faces: Annotated[int, Field(ge=1, le=100)] = 10
    detector_min_face_size: int = 20
    # Faces are looked for on a copy whose longer side is at most this (chips still come from the
    # full-resolution pixels): bounds detection's time and memory whatever the upload's size.
    detection_side: Annotated[int, Field(ge=64, le=8192)] = DEFAULT_DETECTION_SIDE
    flip_average: bool = True
    # Keep a small JPEG of each enrolled face (aligned, with a margin): biometric images at rest, so
    # off unless asked for; it lets a person audit enrollments and a later model re-embed them.
    store_face_thumbnails: bool = False

    index_exact_limit: int = 50_000
    index_storage: Literal["float32", "float16", "int8"] = "float32"
    index_nprobe: int = 48
    index_use_gpu: bool = True
    # Where the vectors live: FAISS in each process (default), or a Milvus server every replica shares
    # (the `milvus` extra), for collections larger than one machine's memory.
    vector_index: Literal["faiss", "milvus"] = "faiss"
    milvus_uri: str | None = None  # http://host:19530, or http://host:19530/database
    milvus_token: str | None = None  # "user:password", or an API key
    # Names faceverify's Milvus collections take: one prefix per gallery sharing a server.
    milvus_prefix: Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,100}$")] = "faceverify"
    milvus_consistency: Literal["auto", "strong", "bounded"] = "auto"
    milvus_index_type: Literal["HNSW", "FLAT"] = "HNSW"
    milvus_ef: Annotated[int, Field(ge=1, le=16_384)] = 512
    milvus_timeout_s: Annotated[float, Field(gt=0.0, le=600.0)] = 10.0
    milvus_graceful_s: Annotated[float, Field(ge=0.0, le=600.0)] = 5.0  # the server's common.gracefulTime

    @model_validator(mode="after")
    def _milvus_has_a_server(self) -> Settings:
        if self.vector_index == "milvus" and not self.milvus_uri:
            raise ValueError("FV_VECTOR_INDEX=milvus needs FV_MILVUS_URI (http://host:19530)")
        return self

    def pipeline_settings(self) -> PipelineSettings:
        """The face pipeline's policy from these settings."""
        return PipelineSettings(
            limits=DecodeLimits(max_bytes=self.max_image_bytes, max_pixels=self.max_pixels),
            min_face_size=self.min_face_size,
            flip_average=self.flip_average,
            detection_side=self.detection_side,
        )

    def edge_limits(self) -> EdgeLimits:
        """The HTTP protocol's limits from these settings."""
        return EdgeLimits(
            max_head_bytes=self.max_header_bytes,
            max_headers=self.max_headers,
            request_timeout_s=self.request_timeout_s,
            idle_timeout_s=self.keep_alive_timeout_s,
        )

    def engine_settings(self) -> EngineSettings:
        """The serving engine's threads, queue and batching from these settings."""
        return EngineSettings(
            workers=self.inference_workers,
            max_pending=self.max_pending_requests,
            max_batch=self.max_batch,
            max_batch_wait_ms=self.max_batch_wait_ms,
        )

    def index_settings(self) -> IndexSettings:
        """The gallery index's settings from these settings."""
        return IndexSettings(
            exact_limit=self.index_exact_limit,
            storage=self.index_storage,
            nprobe=self.index_nprobe,
            use_gpu=self.index_use_gpu,
        )

    def milvus_settings(self) -> MilvusSettings:
        """The Milvus server's settings (for FV_VECTOR_INDEX=milvus)."""
        return MilvusSettings(
            uri=self.milvus_uri or "",
            token=self.milvus_token,
            prefix=self.milvus_prefix,
            consistency=self.milvus_consistency,
            index_type=self.milvus_index_type,
            ef=self.milvus_ef,
            timeout_s=self.milvus_timeout_s,
            graceful_s=self.milvus_graceful_s,
        )

    def detector_settings(self) -> DetectorSettings:
        """MTCNN's settings from these settings."""
        return DetectorSettings(min_face_size=self.detector_min_face_size)
