"""Run the service under uvicorn."""

from __future__ import annotations

import ipaddress

import uvicorn

from app.api.audit import configure_logging
from app.api.metrics import Metrics
from app.config import Settings
from app.edge import edge_protocol
from app.main import create_app


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def serve(host: str | None = None, port: int | None = None) -> None:
    """Start uvicorn on the configured (or given) address with the app built from FV_* settings."""
    settings = Settings()
    if host is not None:
        settings.host = host
    if port is not None:
        settings.port = port
    if not settings.api_keys and not _is_loopback(settings.host) and not settings.allow_open:
        # Open and reachable from the network is almost never meant: say so instead of serving.
        raise SystemExit(
            f"refusing to serve on {settings.host} without API keys: set FV_API_KEYS, bind to "
            "127.0.0.1, or set FV_ALLOW_OPEN=true where something in front of the service checks callers"
        )
    configure_logging(settings.log_level, settings.log_format == "json")
    # log_config=None: uvicorn's own loggers go through the one handler, request id and all.
    metrics = Metrics()  # shared with the protocol: its 408 and 431 are counted with the app's errors
    uvicorn.run(
        create_app(settings, metrics),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        log_config=None,
        http=edge_protocol(settings.edge_limits(), on_refused=metrics.observe_error),
        limit_concurrency=settings.max_connections,
    )
