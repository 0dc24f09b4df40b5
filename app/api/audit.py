"""Request ids on every log line and response, an audit line for every change to biometric data, JSON logs."""

from __future__ import annotations

import contextvars
import json
import logging
import re
import uuid
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.api.auth import Caller

REQUEST_ID_HEADER = "x-request-id"
_REQUEST_ID = contextvars.ContextVar("request_id", default="-")
# A caller's own id is kept when it is short and plain; anything else gets a fresh one.
_ACCEPTED_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
audit_log = logging.getLogger("faceverify.audit")


def current_request_id() -> str:
    """The id of the request being served ('-' outside one)."""
    return _REQUEST_ID.get()


def audit(event: str, caller: Caller, **fields: Any) -> None:
    """One log line for a change to the gallery: never embeddings or images, only ids."""
    details = " ".join(f"{name}={json.dumps(value, ensure_ascii=False)}" for name, value in fields.items())
    audit_log.info("%s key=%s %s", event, caller.key_id, details)


class RequestIdMiddleware:
    """Gives each HTTP request an id (the caller's X-Request-ID when plain, else a new one), for the
    logs of its handling and the X-Request-ID header of its answer."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = dict(scope.get("headers", ())).get(REQUEST_ID_HEADER.encode(), b"").decode("latin-1")
        request_id = given if _ACCEPTED_ID.match(given) else uuid.uuid4().hex[:16]
        token = _REQUEST_ID.set(request_id)

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [
                    (k, v) for k, v in message.get("headers", []) if k.lower() != REQUEST_ID_HEADER.encode()
                ]
                message = {
                    **message,
                    "headers": [*headers, (REQUEST_ID_HEADER.encode(), request_id.encode())],
                }
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            _REQUEST_ID.reset(token)


class RequestIdFilter(logging.Filter):
    """Puts the current request id on every record, as `request_id`."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = current_request_id()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, request id, message (and the exception, if any)."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": self.formatTime(record),
            "level": record.levelname,
            "logger": record.name,
            "request_id": getattr(record, "request_id", "-"),
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def configure_logging(level: str, json_lines: bool) -> None:
    """The root logger's one handler: text with the request id, or JSON lines."""
    handler = logging.StreamHandler()
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(
        JsonFormatter()
        if json_lines
        else logging.Formatter("%(asctime)s %(levelname)s %(name)s [%(request_id)s]: %(message)s")
    )
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)
