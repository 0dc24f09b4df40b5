"""The FastAPI application factory: settings in, app with models and gallery loaded in its lifespan out."""

from __future__ import annotations

import importlib.metadata
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI

from app.api.audit import RequestIdMiddleware
from app.api.auth import KeyRing, has_valid_key
from app.api.deps import authenticated
from app.api.docs import install_docs
from app.api.engine import ServingEngine
from app.api.errors import install_error_handlers
from app.api.json_bodies import JsonBodies, document_json_bodies, photo_fields
from app.api.limits import BodyLimit
from app.api.metrics import Metrics, RequestMetrics
from app.api.responses import ANY_ROUTE, WITH_KEY, errors
from app.api.routes import collections, detect, enroll, health, identify, subjects, verify
from app.api.state import ServedModel, ServedModels, Service, service_of
from app.config import Settings
from app.decision.cohort import Cohort
from app.decision.points import Decisions
from app.face.catalog import ModelCatalog
from app.face.errors import ModelMismatch
from app.face.manifest import Artifact
from app.face.runtime import available_providers, configure_threads
from app.gallery.gallery import EmbeddingSpace, Gallery
from app.gallery.index import gpu_count
from app.gallery.lock import DataDirLock
from app.gallery.stores import open_indexes, open_store
from app.gallery.sync import ChangeFollower
from app.ui import install_ui

log = logging.getLogger("faceverify")


def check_calibration(artifact: Artifact, settings: Settings) -> None:
    """Refuse to serve thresholds calibrated on other vectors than the ones the settings make."""
    calibration = artifact.calibration
    if calibration is None:
        log.warning("%s has no score calibration: decisions use its uncalibrated threshold", artifact.id)
    elif calibration.flip_average != settings.flip_average:
        measured = "on" if calibration.flip_average else "off"
        raise ModelMismatch(
            f"{artifact.id} was calibrated with flip averaging {measured}: "
            f"FV_FLIP_AVERAGE={str(settings.flip_average).lower()} would decide on other vectors with its "
            "thresholds; set it back, or calibrate again with the same setting (`faceverify calibrate "
            f"--install{'' if settings.flip_average else ' --no-flip'}`)"
        )


def open_gallery(settings: Settings, default_model: str, spaces: dict[str, EmbeddingSpace]) -> Gallery:
    """The gallery on the store the settings name, with a space per served model (the default one first
    for new collections); refuses a gallery whose faces a model not served here embedded."""
    return Gallery(
        settings.data_dir,
        default_model,
        spaces[default_model].dimension,
        settings.index_settings(),
        cohort=spaces[default_model].cohort,
        other_models=spaces,
        store=open_store(settings.data_dir, settings.database_url, settings.database_pool_size),
        indexes=open_indexes(settings.vector_index, settings.index_settings(), settings.milvus_settings()),
    )


def _index_device(settings: Settings) -> str:
    """Where searches run: "gpu" or "cpu" (FAISS in this process), or "milvus"."""
    if settings.vector_index == "milvus":
        return "milvus"
    return "gpu" if settings.index_use_gpu and gpu_count() else "cpu"


def create_app(settings: Settings | None = None, metrics: Metrics | None = None) -> FastAPI:
    """Build the app; models and gallery load when it starts, and a bad artifact stops the start.
    `metrics` is given by a server that also counts what its protocol refuses before the app."""
    settings = settings or Settings()
    metrics = metrics or Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Two servers on one embedded gallery would drift apart: the second is refused.
        with DataDirLock(settings.data_dir):
            async with serving(app):
                yield

    @asynccontextmanager
    async def serving(app: FastAPI) -> AsyncIterator[None]:
        configure_threads(settings.inference_threads)
        engine = ServingEngine.from_models(
            settings.models_dir,
            settings.pipeline_settings(),
            settings.detector_settings(),
            settings.engine_settings(),
            on_batch=metrics.observe_batch,
            on_stage=metrics.observe_stage,
            default_model=settings.default_model,
        )
        try:
            service = _start(engine)
        except BaseException:
            engine.close()
            raise
        app.state.service = service
        metrics.watch(lambda: engine.pending, service.gallery)
        follower = None
        if service.gallery.follows:  # replicas: follow the others' writes into the indexes
            store = service.gallery.store
            follower = ChangeFollower(service.gallery, store.listener(), settings.sync_poll_s).start()
        try:
            yield
        finally:
            metrics.unwatch()
            if follower is not None:
                follower.close()
            engine.close()
            service.gallery.save_snapshots()  # lets the next start skip rebuilding the indexes
            service.gallery.close()

    def _start(engine: ServingEngine) -> Service:
        served, spaces = {}, {}
        for model_id, pipeline in engine.pipelines.items():
            artifact = pipeline.embedder.artifact
            # Refuses another model's cohort (CohortMismatch).
            cohort = Cohort.load(settings.models_dir, artifact)
            decisions = Decisions(artifact, cohort, settings.verify_far, settings.identify_fpir)
            check_calibration(artifact, settings)
            served[model_id] = ServedModel(pipeline, decisions)
            spaces[model_id] = EmbeddingSpace(pipeline.embedder.embedding_size, cohort)
        models = ServedModels(served, engine.pipeline.model_id, ModelCatalog.load(settings.models_dir))
        default = models.default
        gallery = open_gallery(settings, default.model_id, spaces)  # GalleryModelMismatch
        service = Service(
            settings=settings,
            engine=engine,
            gallery=gallery,
            models=models,
            keys=KeyRing(settings.api_keys),
            metrics=metrics,
            index_device=_index_device(settings),
        )
        _log_start(service)
        return service

    app = FastAPI(
        title="faceverify",
        version=importlib.metadata.version("faceverify"),
        lifespan=lifespan,
        form_limits={"max_files": settings.max_form_files, "max_fields": settings.max_form_fields},
        docs_url=None,  # both pages come from packaged assets (install_docs), not a CDN
        redoc_url=None,
    )
    install_docs(app)
    install_ui(app)
    install_error_handlers(app, on_error=metrics.observe_error)
    # A JSON body reaches a photo route as the multipart form it stands for: one validation for both.
    app.add_middleware(
        JsonBodies,
        routes=lambda: photo_fields(app.openapi()),
        allowed=lambda scope: has_valid_key(service_of(app.state).keys, dict(scope["headers"])),
        max_image_bytes=settings.max_image_bytes,
        max_request_bytes=settings.max_request_bytes,
        on_refused=metrics.observe_error,
    )
    # Not FastAPI's max_body_size: its 413 is plain text, not the service's one error shape.
    app.add_middleware(BodyLimit, limit=settings.max_request_bytes, on_refused=metrics.observe_error)
    # Outside BodyLimit: a request it refuses is counted with the 413 it got, not what the app said after.
    app.add_middleware(RequestMetrics, metrics=metrics)
    app.add_middleware(RequestIdMiddleware)  # outermost: the id covers everything, metrics included
    for module in (verify, enroll, identify, detect, subjects, collections, health):
        # Every route needs a valid key (when keys are configured) unless its router is a public one.
        app.include_router(
            module.router, dependencies=[Depends(authenticated)], responses=errors(*ANY_ROUTE, *WITH_KEY)
        )
    app.include_router(health.public_router, responses=errors(*ANY_ROUTE))
    document_json_bodies(app)
    return app


def _log_start(service: Service) -> None:
    settings, decisions = service.settings, service.decisions
    for model in service.models:
        embedder = model.pipeline.embedder
        marker = " (default)" if model.model_id == service.models.default_id else ""
        log.info("embedder %s%s on %s", embedder.model_id, marker, ", ".join(embedder.providers))
        if (
            "CUDAExecutionProvider" in available_providers()
            and "CUDAExecutionProvider" not in embedder.providers
        ):
            log.warning("onnxruntime offers CUDA but the embedder runs on the CPU: is a GPU visible here?")
    if service.index_device == "milvus":
        where = service.gallery.store.where
        log.info("gallery in %s, vectors in %s", where, service.gallery.indexes.where)
    else:
        log.info("gallery in %s, faiss index search on the %s", settings.data_dir, service.index_device)
    default = decisions.verify()
    log.info(
        "verify at FAR %g (%s threshold %.4f); identify holds FPIR %g on %s scores",
        settings.verify_far, default.score, default.threshold, settings.identify_fpir,
        decisions.score_for(None, settings.score_normalisation),
    )  # fmt: skip
    if service.keys.open:
        log.warning("no API keys configured (FV_API_KEYS): the service is open to anyone who reaches it")
