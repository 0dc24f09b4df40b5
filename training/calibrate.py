"""`faceverify calibrate`: fit the verification threshold on labelled pairs and ship it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from app.face.manifest import Threshold, load_manifest, write_manifest
from app.face.pipeline import FacePipeline
from training.evaluate import (
    accuracy_at,
    best_threshold,
    embed_images,
    far_at,
    file_digest,
    pair_similarities,
    threshold_for_far,
)
from training.lfw import Pair

# Committed beside the build code: a fresh build ships the calibrated threshold, not the provisional one.
CALIBRATION_FILE = Path(__file__).resolve().parent / "calibration.json"

# dlib's own rule is Euclidean 0.6 between raw descriptors, whose norms are about 1.5: about 0.4
# between unit vectors. Only a starting point until a calibration exists.
_PROVISIONAL_SQUARED_DISTANCE = 0.16


def provisional_threshold() -> Threshold:
    """The threshold a build ships when no calibration is recorded for its model."""
    squared = _PROVISIONAL_SQUARED_DISTANCE
    return Threshold(
        similarity=1.0 - squared / 2.0,
        squared_distance=squared,
        calibrated=False,
        far=None,
        calibrated_on=None,
        note="provisional: dlib's Euclidean 0.6 on raw descriptors (norm ~1.5) mapped to unit vectors; "
        "run `faceverify calibrate` to fit it on data",
    )


def recorded_threshold(model_id: str, template_id: str, path: Path = CALIBRATION_FILE) -> Threshold | None:
    """The committed calibration for this model and alignment template, if there is one."""
    if not path.is_file():
        return None
    record = json.loads(path.read_text())
    if record.get("model") != model_id or record.get("alignment_template") != template_id:
        return None
    return Threshold.model_validate(record["threshold"])


def fit_threshold(
    pipeline: FacePipeline,
    pairs: list[Pair],
    pairs_file: Path,
    far: float | None = None,
    progress: bool = True,
) -> tuple[Threshold, dict[str, Any]]:
    """The accuracy-maximising threshold on the pairs (or the lowest one within a target FAR)."""
    embedded = embed_images(pipeline, [p for pair in pairs for p in (pair.left, pair.right)], progress)
    sims, labels = pair_similarities(pairs, embedded.vectors)
    value = best_threshold(sims, labels) if far is None else threshold_for_far(sims, labels, far)
    value = round(value, 4)
    measured_far = far_at(sims, labels, value)
    accuracy = accuracy_at(sims, labels, value)
    rule = "maximum accuracy" if far is None else f"lowest threshold with FAR <= {far:g}"
    threshold = Threshold(
        similarity=value,
        squared_distance=round(2.0 - 2.0 * value, 4),
        calibrated=True,
        far=round(measured_far, 5),
        accuracy=round(accuracy, 5),
        calibrated_on=f"{pairs_file.name} ({len(sims)} pairs, sha256 {file_digest(pairs_file)})",
        flip_average=pipeline.settings.flip_average,
        note=f"{rule} on {pairs_file.name}: FAR {measured_far:.4f} and accuracy {accuracy:.4f} there; "
        f"{int((~labels).sum())} different-person pairs bound the FAR estimate",
    )
    return threshold, {"pairs": len(sims), "no_face_images": len(embedded.no_face)}


def install_threshold(models_dir: Path, threshold: Threshold, record: Path | None = CALIBRATION_FILE) -> None:
    """Put the threshold into the manifest (the service reads it) and, optionally, the committed record."""
    manifest = load_manifest(models_dir)
    embedder = manifest.artifact("embedder")
    updated = embedder.model_copy(update={"threshold": threshold})
    write_manifest(
        models_dir, manifest.model_copy(update={"artifacts": {**manifest.artifacts, "embedder": updated}})
    )
    if record is not None:
        entry = {
            "model": embedder.id,
            "alignment_template": embedder.input_contract.alignment_template,
            "threshold": threshold.model_dump(mode="json"),
        }
        record.write_text(json.dumps(entry, indent=2) + "\n")
