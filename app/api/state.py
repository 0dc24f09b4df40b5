"""What the lifespan loads, as one typed object on the application."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.datastructures import State

from app.api.auth import KeyRing
from app.api.engine import ServingEngine
from app.api.metrics import Metrics
from app.config import Settings
from app.decision.points import Decisions
from app.face.pipeline import FacePipeline
from app.gallery.gallery import Gallery


@dataclass(frozen=True)
class Service:
    """The running service's parts, built once at start-up and shared by every request."""

    settings: Settings
    engine: ServingEngine
    gallery: Gallery
    decisions: Decisions
    keys: KeyRing
    metrics: Metrics
    index_device: str  # where faiss searches: "gpu" or "cpu"

    @property
    def pipeline(self) -> FacePipeline:
        """The engine's face pipeline (its embeddings go through the engine's batcher)."""
        return self.engine.pipeline


def service_of(state: State) -> Service:
    """The service the lifespan put on the application's state."""
    service = getattr(state, "service", None)
    if not isinstance(service, Service):
        raise RuntimeError("the service is not running: its lifespan has not started it")
    return service
