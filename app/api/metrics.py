"""Prometheus metrics with prometheus-client: requests and latency per route, errors by code, time per
pipeline stage, embedder batches, queue depth, gallery sizes, and the process itself."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.gallery.errors import GalleryError
from app.gallery.gallery import Gallery

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
STAGE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64)
# A label value comes from this set or is "other": a client inventing methods must not grow the series.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class GalleryCollector(Collector):
    """Faces per collection, read from the gallery at each scrape."""

    def __init__(self, gallery: Gallery) -> None:
        self.gallery = gallery

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(
            "faceverify_gallery_faces", "Faces enrolled, per collection", labels=["collection"]
        )
        for collection, faces in self.gallery.collections():
            family.add_metric([collection.name], faces)
        yield family
        if self.gallery.indexes.shared:
            yield GaugeMetricFamily(
                "faceverify_index_writes_pending",
                "Faces stored but not yet written to (or dropped from) the shared index server",
                value=self.gallery.index_writes_pending(),
            )
        if self.gallery.store.shared:
            # How far this replica's indexes trail the shared store's changes feed.
            applied = self.gallery.applied_seq
            yield GaugeMetricFamily(
                "faceverify_changes_applied",
                "The shared store's changes feed number the indexes hold",
                value=applied,
            )
            try:
                behind = max(0, self.gallery.store.last_seq() - applied)
            except GalleryError:
                return  # the store is away: a scrape still answers, without this series
            yield GaugeMetricFamily(
                "faceverify_changes_behind",
                "Changes of other replicas not yet in this replica's indexes",
                value=behind,
            )


class Metrics:
    """The service's own registry (one per app, so that apps in one process never share series)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        self.requests = Counter(
            "faceverify_requests", "Requests answered, by method, route and status",
            ["method", "route", "status"], registry=self.registry,
        )  # fmt: skip
        self.latency = Histogram(
            "faceverify_request_seconds", "Time to answer a request, by method and route",
            ["method", "route"], buckets=LATENCY_BUCKETS, registry=self.registry,
        )  # fmt: skip
        self.errors = Counter(
            "faceverify_errors", "Error answers, by the error code of their body", ["code"],
            registry=self.registry,
        )  # fmt: skip
        self.stages = Histogram(
            "faceverify_stage_seconds", "Time in each stage: decode, detect, align, embed, search",
            ["stage"], buckets=STAGE_BUCKETS, registry=self.registry,
        )  # fmt: skip
        self.faces_embedded = Counter(
            "faceverify_faces_embedded", "Faces embedded (flip copies not counted)", registry=self.registry
        )
        self.batch_sizes = Histogram(
            "faceverify_embed_batch_size", "Chips per embedder call", buckets=BATCH_BUCKETS,
            registry=self.registry,
        )  # fmt: skip
        self.queue_depth = Gauge(
            "faceverify_queue_depth", "Requests queued or running on the inference threads",
            registry=self.registry,
        )  # fmt: skip
        self._gallery: GalleryCollector | None = None

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        """One answered request."""
        method = method if method in METHODS else "other"
        self.requests.labels(method, route, str(status)).inc()
        self.latency.labels(method, route).observe(seconds)

    def observe_error(self, code: str) -> None:
        """One error answer with this code."""
        self.errors.labels(code).inc()

    def observe_stage(self, stage: str, seconds: float) -> None:
        """Time spent in one stage of one request."""
        self.stages.labels(stage).observe(seconds)

    def observe_batch(self, size: int) -> None:
        """One embedder call of `size` chips (flip copies not counted)."""
        self.faces_embedded.inc(size)
        self.batch_sizes.observe(size)

    def watch(self, queue_depth: Callable[[], int], gallery: Gallery) -> None:
        """Report the running service's queue depth and gallery sizes at each scrape."""
        self.queue_depth.set_function(queue_depth)
        self.unwatch()
        self._gallery = GalleryCollector(gallery)
        self.registry.register(self._gallery)

    def unwatch(self) -> None:
        """Stop reporting a service that is closing (and let go of its engine and gallery)."""
        self.queue_depth.set_function(lambda: 0)
        if self._gallery is not None:
            self.registry.unregister(self._gallery)
            self._gallery = None

    def render(self) -> bytes:
        """The text exposition format, escaped by prometheus-client (reads the gallery: not on the loop)."""
        return generate_latest(self.registry)


class RequestMetrics:
    """ASGI middleware counting every request by method, route template and status, with its latency.

    Plain ASGI rather than an `http` middleware, which would wrap every request and response in
    extra tasks and streams.
    """

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_counted(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_counted)
        finally:
            path = getattr(scope.get("route"), "path", "unmatched")
            self.metrics.observe_request(scope["method"], path, status, time.perf_counter() - started)
