"""GET /health (alive), GET /ready (models and gallery loaded, and where they run), GET /metrics."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse

from app.api.deps import GalleryDep, GateDep, PipelineDep
from app.api.schemas import Health, Ready

router = APIRouter(tags=["service"])


@router.get("/health", response_model=Health)
async def health() -> Health:
    """Liveness: the process answers."""
    return Health(status="ok")


@router.get("/metrics", response_class=PlainTextResponse)
async def metrics(request: Request, gallery: GalleryDep, gate: GateDep) -> str:
    """Prometheus metrics: requests and latency per route and status, faces embedded, batch sizes,
    queue depth, gallery sizes."""
    sizes = {collection.name: faces for collection, faces in gallery.collections()}
    return str(request.app.state.metrics.render(gate.pending, sizes))


@router.get("/ready", response_model=Ready)
async def ready(request: Request, pipeline: PipelineDep, gallery: GalleryDep) -> Ready:
    """Readiness, with the execution providers and the index device in use."""
    threshold = pipeline.embedder.artifact.threshold
    assert threshold is not None
    return Ready(
        status="ready",
        model_id=pipeline.model_id,
        execution_providers=pipeline.embedder.providers,
        index_device=request.app.state.index_device,
        collections=len(gallery.collections()),
        threshold=threshold.similarity,
        threshold_calibrated=threshold.calibrated,
    )
