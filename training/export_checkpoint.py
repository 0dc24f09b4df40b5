"""`faceverify train export`: a training checkpoint -> an ONNX embedder under the model contract,
checked against torch, with a manifest beside the detector models so that the service can load it."""

from __future__ import annotations

import importlib.metadata
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
from torch import nn

from app.face.errors import ModelError
from app.face.manifest import (
    Artifact,
    Manifest,
    Source,
    Threshold,
    load_manifest,
    sha256_file,
    verified_path,
    write_manifest,
)
from training.backbones import EMBEDDING_SIZE, build_backbone
from training.export import check_parity, embedder_artifact, export_onnx
from training.fit_config import FitConfig
from training.guard import UNIT_TOLERANCE

PARITY_TOLERANCE = 1e-5
# Only the weights are new: the input scale is the backbone's own, inside the graph.
_NORMALISATION = {
    "small": "x / 127.5 - 1, inside the graph",
    "dlib": "(x - mean_rgb(122.782, 117.001, 104.298)) / 256, inside the graph",
}
_BASE_LICENCE = {"small": "MIT", "dlib": "CC0-1.0"}


class ExportRefused(ModelError):
    """The checkpoint's model breaks the embedder contract; nothing was written."""


@dataclass(frozen=True)
class ExportResult:
    """Where the exported models went, the new embedder's entry, and the measured torch/ORT gap."""

    models_dir: Path
    artifact: Artifact
    parity: float


def load_trained(checkpoint: Path) -> tuple[nn.Module, dict[str, Any]]:
    """The model of a `train fit` checkpoint, in eval mode, and the checkpoint's contents."""
    saved = torch.load(checkpoint, map_location="cpu", weights_only=False)
    if "alignment" not in saved:
        raise ExportRefused(f"{checkpoint} does not record how its chips were aligned; train it again")
    config = FitConfig(**saved["config"])
    model = build_backbone(config.backbone)
    model.load_state_dict(saved["model"])
    return model.eval(), saved


def _random_chips(count: int, size: int, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (count, size, size, 3), dtype=torch.uint8, generator=generator)


def check_unit_rows(model: nn.Module, size: int) -> None:
    """Refuse a model whose rows are not unit vectors (normalised over the wrong axis, or not at all)."""
    for count in (1, 4):
        with torch.no_grad():
            rows = model(_random_chips(count, size, seed=count))
        if rows.ndim != 2 or rows.shape[1] != EMBEDDING_SIZE:
            raise ExportRefused(f"the model outputs {tuple(rows.shape)}, not (N, {EMBEDDING_SIZE})")
        error = float((rows.norm(dim=1) - 1.0).abs().max())
        if not error <= UNIT_TOLERANCE:
            raise ExportRefused(
                f"the model's output rows are not of unit norm (off by up to {error:.3g} on a batch of "
                f"{count}): it must L2-normalise each embedding over dim 1, the feature axis, inside "
                "forward. Normalising over dim 0 (the batch) makes a vector depend on its batch-mates."
            )


def _threshold(saved: dict[str, Any]) -> Threshold:
    """An uncalibrated starting threshold: the best one on the held-out chips during training."""
    figures = next((row for row in reversed(saved["history"]) if "best_threshold" in row), None)
    if figures is None:
        similarity = 0.5
        note = "provisional: the run had no held-out evaluation; fit it with `faceverify calibrate --models`"
    else:
        similarity = round(float(figures["best_threshold"]), 4)
        note = (
            f"provisional: best accuracy on the held-out pairs at epoch {figures['epoch']}; fit it on "
            "labelled pairs with `train export --calibrate-pairs` or `faceverify calibrate --models`"
        )
    return Threshold(
        similarity=similarity,
        squared_distance=round(2.0 - 2.0 * similarity, 4),
        calibrated=False,
        far=None,
        calibrated_on=None,
        note=note,
    )


def _artifact(path: Path, checkpoint: Path, saved: dict[str, Any]) -> Artifact:
    config = FitConfig(**saved["config"])
    alignment = saved["alignment"]
    return embedder_artifact(
        path,
        model_id=f"trained-{config.backbone}-{sha256_file(path)[:8]}",
        side=int(alignment["size"]),
        template=alignment["template"],
        points=tuple((float(x), float(y)) for x, y in alignment["points"]),
        normalisation=_NORMALISATION[config.backbone],
        embedding_size=EMBEDDING_SIZE,
        threshold=_threshold(saved),
        source=Source(
            package="faceverify",
            version=importlib.metadata.version("faceverify"),
            file=f"{checkpoint.parent.name}/{checkpoint.name} (epoch {saved['epoch']})",
            sha256=sha256_file(checkpoint),
            licence=_BASE_LICENCE[config.backbone],
        ),
    )


def export_checkpoint(
    checkpoint: Path, out: Path, detectors: Path, log: Callable[[str], None] = print
) -> ExportResult:
    """Export the checkpoint's embedder into `out` with a manifest whose detector models are those of
    `detectors` (copied unless `out` is that folder). When `out` is the served models folder, the
    service loads the new embedder at its next start; `faceverify models build --force` puts the stock
    one back."""
    model, saved = load_trained(checkpoint)
    return export_model(model, saved, checkpoint, out, detectors, log)


def export_model(
    model: nn.Module,
    saved: dict[str, Any],
    checkpoint: Path,
    out: Path,
    detectors: Path,
    log: Callable[[str], None] = print,
) -> ExportResult:
    """Export a loaded model with the contents of its checkpoint (see export_checkpoint)."""
    side = int(saved["alignment"]["size"])
    check_unit_rows(model, side)
    base = load_manifest(detectors)
    staging = out / ".export"
    staging.mkdir(parents=True, exist_ok=True)
    path = staging / f"{checkpoint.parent.name or 'trained'}_{checkpoint.stem}.onnx"
    export_onnx(model, _random_chips(2, side, seed=0), path, "chips", ("embeddings",), {0: "batch"})
    parity = check_parity(
        model, path, [_random_chips(n, side, seed=10 + n) for n in (1, 5)], atol=PARITY_TOLERANCE
    )
    artifact = _artifact(path, checkpoint, saved)
    log(f"exported {artifact.id}: {side} px chips, torch vs ONNX Runtime within {parity:.1e}")

    artifacts = {**base.artifacts, "embedder": artifact}
    # Files first, manifest last: a cut-off export leaves the previous manifest in force.
    for role, entry in artifacts.items():
        if role != "embedder" and out.resolve() != detectors.resolve():
            shutil.copyfile(verified_path(detectors, entry), staging / entry.file)
            os.replace(staging / entry.file, out / entry.file)
    os.replace(path, out / artifact.file)
    staging.rmdir()
    # The detectors' recipe stays: `models build` then finds the folder current and keeps the new
    # embedder, and only `--force` rebuilds the stock one.
    manifest = Manifest(
        schema_version=base.schema_version,
        built_at=datetime.now(UTC).isoformat(timespec="seconds"),
        recipe=base.recipe,
        toolchain=base.toolchain,
        artifacts=artifacts,
    )
    write_manifest(out, manifest)
    return ExportResult(out, artifact, parity)
