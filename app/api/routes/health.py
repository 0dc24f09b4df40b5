"""GET /health (alive) and GET /ready (models and gallery loaded, where they run), public for probes;
GET /metrics, for keys that may use every collection."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.concurrency import run_in_threadpool

from app.api.deps import CallerDep, GalleryDep, SettingsDep
from app.api.errors import ApiError
from app.api.responses import errors
from app.api.schemas import (
    CurvePoint,
    Health,
    ModelCurves,
    ModelOut,
    OperatingPointOut,
    Ready,
    ScoreCurveOut,
    ServedModelOut,
)
from app.api.state import service_of
from app.decision.curves import MIN_PAIRS_ABOVE

# Probes carry no key: these two answer anyone, and tell nothing about what is enrolled.
public_router = APIRouter(tags=["service"])
router = APIRouter(tags=["service"])


@public_router.get("/health", response_model=Health)
async def health() -> Health:
    """Liveness: the process answers."""
    return Health(status="ok")


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}}}},
)
async def metrics(request: Request, caller: CallerDep) -> Response:
    """Prometheus metrics: requests, latency and errors, time per pipeline stage, faces embedded, batch
    sizes, queue depth, gallery sizes per collection, process figures. Needs a key for every collection."""
    if not caller.sees_all:
        raise ApiError(403, "forbidden", "/metrics names every collection: it needs a key for all ('*')")
    # Off the event loop: the gallery sizes wait for a write that holds the gallery's lock.
    body = await run_in_threadpool(service_of(request.app.state).metrics.render)
    return Response(body, media_type=CONTENT_TYPE_LATEST)


@public_router.get("/ready", response_model=Ready)
async def ready(request: Request, gallery: GalleryDep, settings: SettingsDep) -> Ready:
    """Readiness, with every model (its execution providers and operating points), the index device and
    the default operating points."""
    service = service_of(request.app.state)
    collections = await run_in_threadpool(gallery.collections)
    models = [
        ServedModelOut(
            **ModelOut.of(
                model.artifact, model.decisions, model.model_id == service.models.default_id
            ).model_dump(),
            execution_providers=model.pipeline.embedder.providers,
        )
        for model in service.models
    ]
    decisions, pipeline = service.decisions, service.pipeline
    point = decisions.verify()
    return Ready(
        status="ready",
        model_id=pipeline.model_id,
        models=models,
        execution_providers=pipeline.embedder.providers,
        index_device=service.index_device,
        collections=len(collections),
        threshold=point.threshold,
        threshold_calibrated=point.rule != "uncalibrated",
        verify=OperatingPointOut.of(point),
        identify_fpir=settings.identify_fpir,
        score_normalisation=decisions.score_for(None, settings.score_normalisation) == "snorm",
    )


@public_router.get("/models/{model}/curves", response_model=ModelCurves, responses=errors(404))
async def model_curves(model: str, request: Request) -> ModelCurves:
    """The measured points of a served model's calibration (by id or name), for DET and ROC curves: each
    point where at least MIN_PAIRS_ABOVE different-person pairs score at or above its threshold."""
    served = service_of(request.app.state).models.named(model)  # ModelNotFound: 404
    calibration = served.artifact.calibration
    curves = []
    for score, curve in served.decisions.curves.items():
        table = curve.table
        points = [
            CurvePoint(threshold=t, far=far, tar=tar)
            for t, far, tar, above in zip(
                table.thresholds, table.far, table.tar, table.different_above, strict=True
            )
            if above >= MIN_PAIRS_ABOVE
        ]
        curves.append(ScoreCurveOut(score=score, points=points))  # type: ignore[arg-type]
    return ModelCurves(
        model_id=served.model_id,
        calibrated_on=calibration.calibrated_on if calibration is not None else None,
        curves=curves,
    )
