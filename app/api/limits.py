"""The request body's size, bounded at the edge: refused from its Content-Length before a byte is read,
and cut off while it streams when it declares none (or lies), with the service's one error shape."""

from __future__ import annotations

import json
from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class BodyLimit:
    """413 `request_too_large` for a body above `limit` bytes: from Content-Length at once, else as soon
    as the streamed bytes pass it; the app then sees a disconnect, so nothing more is read or spooled."""

    def __init__(self, app: ASGIApp, limit: int, on_refused: Callable[[str], None] | None = None) -> None:
        self.app = app
        self.limit = limit
        self.on_refused = on_refused  # told the error code of each refusal, for metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers", ())).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.limit:
            await self._refuse(send)
            return
        received, started, refused = 0, False, False

        async def counted() -> Message:
            nonlocal received, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    refused = True
                    if not started:
                        await self._refuse(send)
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

    async def _refuse(self, send: Send) -> None:
        if self.on_refused is not None:
            self.on_refused("request_too_large")
        body = json.dumps(
            {
                "error": {
                    "code": "request_too_large",
                    "message": f"the request body exceeds {self.limit:,} bytes",
                }
            }
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
