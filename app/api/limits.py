"""The request body's size, bounded at the edge: refused from its Content-Length before a byte is read,
and cut off while it streams when it declares none (or lies), with the service's one error shape."""

from __future__ import annotations

import json
from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

# A JSON body carries its photos in base64 (4 bytes for 3): it may be this much larger, and its
# decoded bytes are held to `limit` once decoded (app.api.json_bodies).
JSON_GROWTH = 4 / 3
REFUSED = "faceverify.refused"  # set in the scope of a request BodyLimit has answered
JSON_SLACK = 64 * 1024


def is_json(scope: Scope) -> bool:
    """The request's body is JSON (application/json or a +json type)."""
    content_type: bytes = dict(scope.get("headers", ())).get(b"content-type", b"")
    media = content_type.split(b";", 1)[0].strip().lower()
    return media == b"application/json" or media.endswith(b"+json")


class BodyLimit:
    """413 `request_too_large` for a body above `limit` bytes (a JSON one: its base64 equivalent): from
    Content-Length at once, else as soon as the streamed bytes pass it; the app then sees a disconnect,
    so nothing more is read or spooled."""

    def __init__(self, app: ASGIApp, limit: int, on_refused: Callable[[str], None] | None = None) -> None:
        self.app = app
        self.limit = limit
        self.json_limit = int(limit * JSON_GROWTH) + JSON_SLACK
        self.on_refused = on_refused  # told the error code of each refusal, for metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.json_limit if is_json(scope) else self.limit
        declared = dict(scope.get("headers", ())).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > limit:
            await self._refuse(send, limit)
            return
        received, started, refused = 0, False, False

        async def counted() -> Message:
            nonlocal received, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    refused = True
                    scope[REFUSED] = True  # what the app answers now is dropped: not counted either
                    if not started:
                        await self._refuse(send, limit)
                    return {"type": "http.disconnect"}
            return message

        async def watched(message: Message) -> None:
            nonlocal started
            if refused:
                return  # the 413 is the answer: whatever the app says after the disconnect is dropped
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        await self.app(scope, counted, watched)

    async def _refuse(self, send: Send, limit: int) -> None:
        if self.on_refused is not None:
            self.on_refused("request_too_large")
        for message in refusal(413, "request_too_large", f"the request body exceeds {limit:,} bytes"):
            await send(message)


def refusal(status: int, code: str, message: str, field: str | None = None) -> list[Message]:
    """The ASGI messages of an error answer given before the app saw the request (one error shape)."""
    error = {"code": code, "message": message, **({"field": field} if field else {})}
    body = json.dumps({"error": error}).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),
    ]
    return [
        {"type": "http.response.start", "status": status, "headers": headers},
        {"type": "http.response.body", "body": body},
    ]
