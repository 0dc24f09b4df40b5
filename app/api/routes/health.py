"""GET /health (alive), GET /ready (models and gallery loaded, and where they run), GET /metrics."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse
from starlette.concurrency import run_in_threadpool

from app.api.deps import DecisionsDep, GalleryDep, GateDep, PipelineDep, SettingsDep
from app.api.schemas import Health, OperatingPointOut, Ready

router = APIRouter(tags=["service"])


@router.get("/health", response_model=Health)
async def health() -> Health:
    """Liveness: the process answers."""
    return Health(status="ok")


@router.get("/metrics", response_class=PlainTextResponse)
async def metrics(request: Request, gallery: GalleryDep, gate: GateDep) -> str:
    """Prometheus metrics: requests and latency per route and status, faces embedded, batch sizes,
    queue depth, gallery sizes."""
    # Off the event loop: a write holding the gallery's lock must not stall every other request.
    sizes = {collection.name: faces for collection, faces in await run_in_threadpool(gallery.collections)}
    return str(request.app.state.metrics.render(gate.pending, sizes))


@router.get("/ready", response_model=Ready)
async def ready(
    request: Request,
    pipeline: PipelineDep,
    gallery: GalleryDep,
    decisions: DecisionsDep,
    settings: SettingsDep,
) -> Ready:
    """Readiness, with the execution providers, the index device and the operating points in use."""
    point = decisions.verify()
    return Ready(
        status="ready",
        model_id=pipeline.model_id,
        execution_providers=pipeline.embedder.providers,
        index_device=request.app.state.index_device,
        collections=len(await run_in_threadpool(gallery.collections)),
        threshold=point.threshold,
        threshold_calibrated=point.rule != "uncalibrated",
        verify=OperatingPointOut.of(point),
        identify_fpir=settings.identify_fpir,
        score_normalisation=decisions.score_for(None, settings.score_normalisation) == "snorm",
    )
