"""The embedders of a models folder: the built one in manifest.json, and those imported beside it."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from app.face.errors import ModelError, ModelNotFound
from app.face.manifest import Artifact, Manifest, load_manifest, write_manifest

# An imported embedder is a graph and a card (its manifest entry), `embedders/<model id>.{onnx,json}`:
# a rebuild of the stock models rewrites manifest.json and leaves them alone.
IMPORTED_DIR = "embedders"
PEOPLE_SUFFIX = ".people.json"  # a cohort's people file (see training/cohort.py)


def card_path(models_dir: Path, model_id: str) -> Path:
    """Where the card of an imported embedder lives."""
    return models_dir / IMPORTED_DIR / f"{model_id}.json"


def write_card(models_dir: Path, artifact: Artifact) -> Path:
    """Write an imported embedder's card atomically (temporary file, then rename)."""
    path = card_path(models_dir, artifact.id)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".json.part")
    partial.write_text(json.dumps(artifact.model_dump(mode="json"), indent=2) + "\n")
    os.replace(partial, path)
    return path


def _read_card(path: Path) -> Artifact:
    try:
        artifact = Artifact.model_validate(json.loads(path.read_text()))
    except (ValueError, ValidationError) as exc:
        raise ModelError(f"the model card {path} is unreadable: {exc}") from exc
    if artifact.role != "embedder" or path.stem != artifact.id:
        raise ModelError(f"the model card {path} is not the card of an embedder named {path.stem!r}")
    return artifact


@dataclass(frozen=True)
class ModelCatalog:
    """Every embedder a models folder holds, by id; the built one first."""

    models_dir: Path
    manifest: Manifest
    imported: tuple[Artifact, ...]

    @classmethod
    def load(cls, models_dir: Path) -> ModelCatalog:
        """Read manifest.json and every card under embedders/ (ModelError when one is unreadable)."""
        manifest = load_manifest(models_dir)
        folder = models_dir / IMPORTED_DIR
        # Beside the cards lie the imported models' cohorts, whose people files are JSON too.
        found = sorted(folder.glob("*.json")) if folder.is_dir() else []
        cards = [path for path in found if not path.name.endswith(PEOPLE_SUFFIX)]
        return cls(models_dir, manifest, tuple(_read_card(path) for path in cards))

    @property
    def built(self) -> Artifact:
        """The embedder `faceverify models build` made, that serves unless another is named."""
        return self.manifest.artifact("embedder")

    def built_embedders(self) -> list[Artifact]:
        """Every embedder the build made (the float one first, then its int8 form where there is one)."""
        others = [
            a
            for key, a in sorted(self.manifest.artifacts.items())
            if a.role == "embedder" and key != "embedder"
        ]
        return [self.built, *others]

    def embedders(self) -> list[Artifact]:
        """The built embedders, then the imported ones by id."""
        return [*self.built_embedders(), *self.imported]

    def find(self, wanted: str) -> Artifact:
        """The embedder of that id, or of that name when one alone has it; ModelNotFound otherwise."""
        by_id = {artifact.id: artifact for artifact in self.embedders()}
        if wanted in by_id:
            return by_id[wanted]
        named = [artifact for artifact in self.embedders() if artifact.name == wanted]
        if len(named) == 1:
            return named[0]
        known = ", ".join(sorted(by_id))
        if named:
            raise ModelNotFound(f"{len(named)} models are named {wanted!r}: give one of their ids ({known})")
        raise ModelNotFound(f"no model {wanted!r} in {self.models_dir}; the models here: {known}")

    def is_built(self, artifact: Artifact) -> bool:
        """Whether the artifact is a built embedder (kept in manifest.json, not in a card)."""
        return any(artifact.id == built.id for built in self.built_embedders())

    def save(self, artifact: Artifact) -> ModelCatalog:
        """Write an embedder's updated entry where it lives (manifest or card); the catalog after it."""
        if self.is_built(artifact):
            key = next(key for key, known in self.manifest.artifacts.items() if known.id == artifact.id)
            artifacts = {**self.manifest.artifacts, key: artifact}
            write_manifest(self.models_dir, self.manifest.model_copy(update={"artifacts": artifacts}))
        elif any(known.id == artifact.id for known in self.imported):
            write_card(self.models_dir, artifact)
        else:
            raise ModelNotFound(f"no model {artifact.id!r} in {self.models_dir} to update")
        return ModelCatalog.load(self.models_dir)
