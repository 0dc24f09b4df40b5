"""What the lifespan loads, as one typed object on the application."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.datastructures import State

from app.api.auth import KeyRing
from app.api.engine import ServingEngine
from app.api.metrics import Metrics
from app.config import Settings
from app.decision.points import Decisions
from app.face.catalog import ModelCatalog
from app.face.errors import ModelNotFound
from app.face.manifest import Artifact
from app.face.pipeline import FacePipeline
from app.gallery.gallery import Gallery


@dataclass(frozen=True)
class ServedModel:
    """One embedder as requests use it: its pipeline (through the engine's batcher) and its decisions."""

    pipeline: FacePipeline
    decisions: Decisions

    @property
    def model_id(self) -> str:
        """The id stored beside every embedding the model makes."""
        return self.pipeline.model_id

    @property
    def artifact(self) -> Artifact:
        """The model's manifest entry."""
        return self.pipeline.embedder.artifact


@dataclass(frozen=True)
class ServedModels:
    """Every loaded embedder by id, the default one first."""

    by_id: dict[str, ServedModel]
    default_id: str
    catalog: ModelCatalog  # names and ids, to find a model a request names

    @property
    def default(self) -> ServedModel:
        """The model of new collections and of two-photo /verify without model=."""
        return self.by_id[self.default_id]

    def __getitem__(self, model_id: str) -> ServedModel:
        try:
            return self.by_id[model_id]
        except KeyError:
            raise ModelNotFound(f"model {model_id!r} is not served here") from None

    def named(self, wanted: str | None) -> ServedModel:
        """The model a request names by id or name (the default one for None); ModelNotFound else."""
        if wanted is None:
            return self.default
        try:
            return self[self.catalog.find(wanted).id]
        except ModelNotFound:
            # Not the catalog's message: it names the models folder, which callers need not know.
            error = ModelNotFound(f"no model {wanted!r} is served here; GET /ready lists them")
            error.field = "model"
            raise error from None

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self.by_id.values())


@dataclass(frozen=True)
class Service:
    """The running service's parts, built once at start-up and shared by every request."""

    settings: Settings
    engine: ServingEngine
    gallery: Gallery
    models: ServedModels
    keys: KeyRing
    metrics: Metrics
    index_device: str  # where searches run: "gpu" or "cpu" (faiss here), or "milvus"

    @property
    def pipeline(self) -> FacePipeline:
        """The default model's pipeline (its embeddings go through the engine's batcher)."""
        return self.models.default.pipeline

    @property
    def decisions(self) -> Decisions:
        """The default model's decisions."""
        return self.models.default.decisions

    def model_of(self, collection: str) -> ServedModel:
        """The model a collection is bound to (the default one for a collection not yet created)."""
        return self.models[self.gallery.model_of(collection)]


def service_of(state: State) -> Service:
    """The service the lifespan put on the application's state."""
    service = getattr(state, "service", None)
    if not isinstance(service, Service):
        raise RuntimeError("the service is not running: its lifespan has not started it")
    return service
