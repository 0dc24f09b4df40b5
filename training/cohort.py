"""`faceverify cohort build`: the faces a model's scores are normalised against, and their record."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from app.decision.cohort import Cohort
from app.face.catalog import IMPORTED_DIR, PEOPLE_SUFFIX, ModelCatalog
from app.face.manifest import Artifact, CohortFile, load_manifest, sha256_file, write_manifest
from training.labelled import LabelledFaces

# Committed cohorts of the stock models: a fresh build installs the one of its model.
COHORTS_DIR = Path(__file__).resolve().parent / "cohorts"
DEFAULT_TOP_K = 50
# Normalised score = S-norm + this times the cosine. Chosen on DevTrain alone (each half of its people
# the cohort for the other): 75 to 150 beat plain S-norm at FPIR 1% at every gallery size and did alike.
DEFAULT_COSINE_WEIGHT = 100.0


def cohort_files(model_id: str, folder: str = "") -> tuple[str, str]:
    """The vectors file and the people file of a model's cohort (in `folder` of the models folder)."""
    prefix = f"{folder}/" if folder else ""
    return f"{prefix}cohort-{model_id}.npy", f"{prefix}cohort-{model_id}{PEOPLE_SUFFIX}"


def people_file(vectors_file: str) -> str:
    """The people file beside a cohort's vectors file."""
    return vectors_file.removesuffix(".npy") + PEOPLE_SUFFIX


def select(faces: LabelledFaces, per_person: int | None) -> npt.NDArray[np.intp]:
    """Rows of the cohort: every face, or the first `per_person` of each person."""
    if per_person is None:
        return np.arange(len(faces.vectors))
    rows = [np.flatnonzero(faces.people == p)[:per_person] for p in range(len(faces.names))]
    return np.sort(np.concatenate(rows))


@dataclass(frozen=True)
class CohortForCalibration:
    """The served cohort, with the person of each of its faces (to leave a pair's people out)."""

    cohort: Cohort
    keys: list[str]


@dataclass(frozen=True)
class BuiltCohort:
    """What `cohort build` wrote."""

    entry: CohortFile
    path: Path


def write_cohort(
    models_dir: Path,
    artifact: Artifact,
    faces: LabelledFaces,
    top_k: int = DEFAULT_TOP_K,
    cosine_weight: float = DEFAULT_COSINE_WEIGHT,
    catalog: ModelCatalog | None = None,
) -> BuiltCohort:
    """Write the cohort's vectors (float16) and people beside the model and name them in its manifest."""
    # An imported model's cohort lives beside its graph and card, so that the three travel together.
    imported = catalog is not None and not catalog.is_built(artifact)
    vectors_name, people_name = cohort_files(artifact.id, IMPORTED_DIR if imported else "")
    vectors = faces.vectors.astype(np.float16)
    path = models_dir / vectors_name
    partial = path.with_suffix(".part.npy")
    np.save(partial, vectors, allow_pickle=False)
    partial.replace(path)
    keys = faces.person_keys()
    entry = CohortFile(
        file=vectors_name,
        sha256=sha256_file(path),
        model_id=artifact.id,
        faces=len(vectors),
        people=len(faces.names),
        top_k=min(top_k, len(vectors)),
        cosine_weight=cosine_weight,
        built_from=f"{faces.source}: {len(faces.names)} people, {len(vectors)} photos",
    )
    people = {"model_id": artifact.id, "cohort_sha256": entry.sha256, "people": keys}
    (models_dir / people_name).write_text(json.dumps(people) + "\n")
    # Without a catalog the built embedder's entry names it; with one, the artifact's own (an imported
    # model's card).
    if catalog is None:
        _name_in_manifest(models_dir, entry)
    else:
        catalog.save(catalog.find(artifact.id).model_copy(update={"cohort": entry}))
    return BuiltCohort(entry, path)


def _name_in_manifest(models_dir: Path, entry: CohortFile | None) -> None:
    manifest = load_manifest(models_dir)
    embedder = manifest.artifact("embedder").model_copy(update={"cohort": entry})
    artifacts = {**manifest.artifacts, "embedder": embedder}
    write_manifest(models_dir, manifest.model_copy(update={"artifacts": artifacts}))


def for_calibration(models_dir: Path, artifact: Artifact) -> CohortForCalibration | None:
    """The installed cohort of the model with its people, or None where it has none."""
    cohort = Cohort.load(models_dir, artifact)
    if cohort is None or artifact.cohort is None:
        return None
    people = json.loads((models_dir / people_file(artifact.cohort.file)).read_text())
    if people.get("cohort_sha256") != cohort.sha256 or len(people["people"]) != len(cohort.vectors):
        raise ValueError(f"the people file of {artifact.cohort.file} does not belong to it")
    return CohortForCalibration(cohort, list(people["people"]))


def record_cohort(models_dir: Path, artifact: Artifact) -> Path:
    """Copy the installed cohort into the committed folder, so that builds of this model ship it."""
    if artifact.cohort is None:
        raise ValueError(f"{artifact.id} has no cohort to record")
    COHORTS_DIR.mkdir(exist_ok=True)
    for name in cohort_files(artifact.id):
        shutil.copyfile(models_dir / name, COHORTS_DIR / name)
    entry = COHORTS_DIR / f"cohort-{artifact.id}.json"
    entry.write_text(json.dumps(artifact.cohort.model_dump(mode="json"), indent=2) + "\n")
    return entry


def recorded_cohort(model_id: str) -> tuple[CohortFile, list[Path]] | None:
    """The committed cohort of a model (its manifest entry and files), if there is one."""
    entry_file = COHORTS_DIR / f"cohort-{model_id}.json"
    if not entry_file.is_file():
        return None
    entry = CohortFile.model_validate_json(entry_file.read_text())
    files = [COHORTS_DIR / name for name in cohort_files(model_id)]
    if entry.model_id != model_id or not all(f.is_file() for f in files):
        return None
    if sha256_file(files[0]) != entry.sha256:
        return None
    return entry, files
