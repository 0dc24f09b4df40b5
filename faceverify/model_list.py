"""`faceverify models list`: every embedder of a models folder, with what its decisions promise."""

from __future__ import annotations

from pathlib import Path

from app.api.schemas import ModelOut
from app.config import Settings
from app.decision.cohort import Cohort
from app.decision.points import Decisions
from app.face.catalog import ModelCatalog


def describe_models(settings: Settings, models_dir: Path | None = None) -> list[ModelOut]:
    """Each embedder of the folder (the default one first) as `GET /ready` shows it."""
    folder = models_dir or settings.models_dir
    catalog = ModelCatalog.load(folder)
    default = catalog.find(settings.default_model) if settings.default_model else catalog.built
    ordered = [default, *(a for a in catalog.embedders() if a.id != default.id)]
    return [
        ModelOut.of(
            artifact,
            Decisions(artifact, Cohort.load(folder, artifact), settings.verify_far, settings.identify_fpir),
            artifact.id == default.id,
        )
        for artifact in ordered
    ]


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def model_lines(model: ModelOut) -> list[str]:
    """A model as a few lines of text."""
    marker = "  (default)" if model.default else ""
    lines = [
        f"{model.model_id}{marker}",
        f"  {model.embedding_size}-d, {model.chip_size} px chips aligned by {model.alignment}; "
        f"{model.normalisation}",
        f"  from {model.source_file} (sha256 {model.source_sha256[:16]}), licence: {model.licence}"
        + (f", preset {model.preset}" if model.preset else ""),
    ]
    if model.calibrated_on is None:
        lines.append(
            f"  uncalibrated: /verify decides at cosine {model.verify.threshold:.4f}, which states no FAR"
        )
        return lines
    lines.append(f"  calibrated on {model.calibrated_on}")
    stated = ", ".join(
        f"FAR {p.far:.0e} -> TAR {_percent(p.tar)} (cosine {p.threshold:.4f})" for p in model.stated
    )
    lines.append(f"  {stated}")
    verify = model.verify
    lines.append(
        f"  /verify by default: FAR {verify.far:.0e}, cosine {verify.threshold:.4f}, "
        f"TAR {_percent(verify.tar)}"
        + ("; cohort: " + model.cohort if model.cohort else "; no cohort (identify on raw cosine)")
    )
    return lines
