"""The model manifest: what each artifact is, its checksum and its input/output contract."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from app.face.errors import ModelError, ModelIntegrityError, ModelMissing

MANIFEST_NAME = "manifest.json"
MANIFEST_SCHEMA = 1


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TensorSpec(_Strict):
    """One graph input or output: name, dtype and shape (None marks a dynamic axis)."""

    name: str
    dtype: Literal["uint8", "float32"]
    shape: tuple[int | None, ...]


class InputContract(_Strict):
    """What the caller must feed: pixel layout, channel order, value range and alignment."""

    layout: Literal["NHWC"]
    channels: Literal["RGB"]
    dtype: Literal["uint8", "float32"]
    pixel_range: tuple[float, float]
    size: tuple[int, int] | None
    alignment_template: str | None
    # Where the five MTCNN landmarks (eyes, nose, mouth corners) go in the chip, in chip pixels.
    alignment_points: tuple[tuple[float, float], ...] | None = None
    # Instead of landmarks: the detector's box, widened by this margin (chip pixels, split between the
    # two sides, as facenet-pytorch crops), resized to the chip.
    alignment_box_margin: float | None = None
    normalisation: str


class Threshold(_Strict):
    """Match when cosine similarity >= value; squared L2 between unit vectors is 2 - 2 * value."""

    similarity: float
    squared_distance: float
    calibrated: bool
    far: float | None
    accuracy: float | None = None
    calibrated_on: str | None
    flip_average: bool | None = None
    note: str


class ScoreTable(_Strict):
    """Measured rates at ascending thresholds of one score, from a calibration's pairs."""

    thresholds: tuple[float, ...]
    far: tuple[float, ...]  # share of different-person pairs scoring at or above each threshold
    different_above: tuple[int, ...]  # how many different-person pairs that share rests on
    tar: tuple[float, ...]  # share of same-person pairs at or above each threshold
    max_accuracy: float  # the threshold with the best balanced accuracy (TAR + 1 - FAR) / 2


class ScoreCalibration(_Strict):
    """Same- and different-person score distributions over every pair of a labelled set of photos."""

    calibrated_on: str
    people: int
    images: int
    same_pairs: int
    different_pairs: int
    min_far: float  # the smallest FAR that at least MIN_PAIRS_ABOVE different-person pairs support
    flip_average: bool
    cohort_identity: str | None  # the cohort (CohortFile.identity) the "snorm" scores were normalised with
    tables: dict[Literal["cosine", "snorm"], ScoreTable]
    created_at: str


class CohortFile(_Strict):
    """Faces of people not expected in galleries, embedded by one model, for score normalisation."""

    file: str
    sha256: str
    model_id: str
    faces: int
    people: int
    top_k: int = Field(ge=2)
    # Normalised score = S-norm + cosine_weight * cosine: keeps part of the raw similarity's evidence.
    cosine_weight: float = Field(0.0, ge=0.0)
    built_from: str

    @property
    def identity(self) -> str:
        """What normalised scores depend on: the file, the top k and the cosine weight."""
        return f"{self.sha256}:top{self.top_k}:cos{self.cosine_weight:g}"


class Source(_Strict):
    """Where the weights came from."""

    package: str
    version: str
    file: str
    sha256: str
    licence: str
    preset: str | None = None  # for an imported file: the preset that says how it is fed


class Artifact(_Strict):
    """One ONNX model file and its contract."""

    id: str
    role: Literal["embedder", "pnet", "rnet", "onet"]
    name: str | None = None  # an imported embedder's short name (its id is the name and a hash)
    file: str
    sha256: str
    bytes: int
    input_contract: InputContract
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    embedding_size: int | None = None
    batch_size: int | None = None  # the one batch size a graph takes; None: any
    distance: Literal["cosine"] | None = None
    threshold: Threshold | None = None
    calibration: ScoreCalibration | None = None
    cohort: CohortFile | None = None
    source: Source


class Manifest(_Strict):
    """Every artifact in models/, keyed by role, with how and from what they were built."""

    schema_version: int
    built_at: str
    recipe: str
    toolchain: dict[str, str]
    artifacts: dict[str, Artifact]

    def artifact(self, role: str) -> Artifact:
        """The artifact for a role, or ModelMissing."""
        try:
            return self.artifacts[role]
        except KeyError:
            raise ModelMissing(f"the manifest has no {role!r} model; run `faceverify models build`") from None


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def load_manifest(models_dir: Path) -> Manifest:
    """Read and validate models_dir/manifest.json."""
    path = models_dir / MANIFEST_NAME
    if not path.is_file():
        raise ModelMissing(f"no model manifest at {path}; run `faceverify models build`")
    try:
        manifest = Manifest.model_validate(json.loads(path.read_text()))
    except (ValueError, ValidationError) as exc:
        raise ModelError(f"the model manifest {path} is unreadable: {exc}") from exc
    if manifest.schema_version != MANIFEST_SCHEMA:
        raise ModelError(
            f"manifest schema {manifest.schema_version} is not {MANIFEST_SCHEMA}; rebuild the models"
        )
    return manifest


def write_manifest(models_dir: Path, manifest: Manifest) -> Path:
    """Write manifest.json atomically (temporary file, then rename)."""
    path = models_dir / MANIFEST_NAME
    partial = path.with_suffix(".json.part")
    partial.write_text(json.dumps(manifest.model_dump(mode="json"), indent=2) + "\n")
    os.replace(partial, path)
    return path


def verified_path(models_dir: Path, artifact: Artifact) -> Path:
    """The artifact's file, after checking that its bytes are the ones the manifest names."""
    path = models_dir / artifact.file
    if not path.is_file():
        raise ModelMissing(f"model file {path} is missing; run `faceverify models build`")
    actual = sha256_file(path)
    if actual != artifact.sha256:
        raise ModelIntegrityError(
            f"model file {path} is corrupt or replaced: sha256 {actual[:16]}... does not match the "
            f"manifest's {artifact.sha256[:16]}...; run `faceverify models build --force`"
        )
    return path
