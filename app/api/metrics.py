"""Prometheus metrics in the text exposition format: requests, latency, faces, batches, queue, gallery."""

from __future__ import annotations

import threading
import time
from collections import Counter

from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64)


class Histogram:
    """Cumulative buckets, sum and count, per label set."""

    def __init__(self, buckets: tuple[float, ...]) -> None:
        self.buckets = buckets
        self.counts: dict[tuple[str, ...], list[int]] = {}
        self.sums: dict[tuple[str, ...], float] = {}

    def observe(self, labels: tuple[str, ...], value: float) -> None:
        counts = self.counts.setdefault(labels, [0] * (len(self.buckets) + 1))
        for i, bound in enumerate(self.buckets):
            if value <= bound:
                counts[i] += 1
        counts[-1] += 1
        self.sums[labels] = self.sums.get(labels, 0.0) + value

    def lines(self, name: str, label_names: tuple[str, ...]) -> list[str]:
        out = []
        for labels, counts in sorted(self.counts.items()):
            base = ",".join(f'{k}="{v}"' for k, v in zip(label_names, labels, strict=True))
            sep = "," if base else ""
            for bound, count in zip(self.buckets, counts, strict=False):
                out.append(f'{name}_bucket{{{base}{sep}le="{bound:g}"}} {count}')
            out.append(f'{name}_bucket{{{base}{sep}le="+Inf"}} {counts[-1]}')
            out.append(f"{name}_sum{{{base}}} {self.sums[labels]:.6f}")
            out.append(f"{name}_count{{{base}}} {counts[-1]}")
        return out


class Metrics:
    """Everything /metrics reports that the service counts itself."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: Counter[tuple[str, str, str]] = Counter()
        self.latency = Histogram(LATENCY_BUCKETS)
        self.faces_embedded = 0
        self.batch_sizes = Histogram(tuple(float(b) for b in BATCH_BUCKETS))

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        with self._lock:
            self.requests[(method, route, str(status))] += 1
            self.latency.observe((method, route), seconds)

    def observe_batch(self, size: int) -> None:
        """One embedder call of `size` chips (flip copies not counted)."""
        with self._lock:
            self.faces_embedded += size
            self.batch_sizes.observe((), float(size))

    def render(self, queue_depth: int, gallery_sizes: dict[str, int]) -> str:
        """The exposition text."""
        with self._lock:
            lines = ["# TYPE faceverify_requests_total counter"]
            lines += [
                f'faceverify_requests_total{{method="{m}",route="{r}",status="{s}"}} {n}'
                for (m, r, s), n in sorted(self.requests.items())
            ]
            lines.append("# TYPE faceverify_request_seconds histogram")
            lines += self.latency.lines("faceverify_request_seconds", ("method", "route"))
            lines += [
                "# TYPE faceverify_faces_embedded_total counter",
                f"faceverify_faces_embedded_total {self.faces_embedded}",
            ]
            lines.append("# TYPE faceverify_embed_batch_size histogram")
            lines += self.batch_sizes.lines("faceverify_embed_batch_size", ())
        lines += ["# TYPE faceverify_queue_depth gauge", f"faceverify_queue_depth {queue_depth}"]
        lines.append("# TYPE faceverify_gallery_faces gauge")
        lines += [
            f'faceverify_gallery_faces{{collection="{name}"}} {n}'
            for name, n in sorted(gallery_sizes.items())
        ]
        return "\n".join(lines) + "\n"


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


def install_metrics(app: FastAPI, metrics: Metrics) -> None:
    """Count every request by method, route template and status, with its latency."""
    app.add_middleware(RequestMetrics, metrics=metrics)
