"""The FastAPI application factory: settings in, app with models loaded in its lifespan out."""

from __future__ import annotations

import importlib.metadata
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from app.config import Settings
from app.face.pipeline import FacePipeline
from app.face.runtime import configure_threads

log = logging.getLogger("faceverify")


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app; models load when it starts, and a bad artifact stops the start."""
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        configure_threads(settings.inference_threads)
        pipeline = FacePipeline.from_models(
            settings.models_dir, settings.pipeline_settings(), settings.detector_settings()
        )
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        app.state.settings = settings
        app.state.pipeline = pipeline
        embedder = pipeline.embedder
        log.info("embedder %s on %s", embedder.model_id, ", ".join(embedder.providers))
        yield

    app = FastAPI(title="faceverify", version=importlib.metadata.version("faceverify"), lifespan=lifespan)

    @app.get("/health")
    async def health() -> dict[str, str]:
        """Liveness: the process answers."""
        return {"status": "ok"}

    return app
