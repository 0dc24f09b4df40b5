"""Limits at the HTTP edge, in the server's own protocol: a request head bounded in bytes and header
count (431), a deadline for a request to arrive in full (408), and idle connections closed."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httptools
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

STATUS_TEXT = {408: b"Request Timeout", 431: b"Request Header Fields Too Large"}


@dataclass(frozen=True)
class EdgeLimits:
    """What one request may take before the application sees it."""

    max_head_bytes: int = 64 * 1024  # request line and every header together
    max_headers: int = 100
    request_timeout_s: float = 60.0  # from a request's first byte to its last
    idle_timeout_s: float = 5.0  # a connection with no request under way


class HeadTooLarge(Exception):
    """The request head passed one of the limits."""


def _error_response(status: int, code: str, message: str) -> bytes:
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    head = (
        b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\nconnection: close\r\n\r\n"
        % (status, STATUS_TEXT[status], len(body))
    )
    return head + body


class EdgeProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the edge limits; `limits` and `on_refused` (told the error code
    of each refusal, for metrics) are set by `edge_protocol()`."""

    limits = EdgeLimits()
    on_refused: Callable[[str], None] | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._in_head = True
        self._head_bytes = 0
        self._header_count = 0
        self._deadline: asyncio.TimerHandle | None = None
        self._receiving: RequestResponseCycle | None = None  # the request whose body is still arriving
        self.timeout_keep_alive = self.limits.idle_timeout_s  # type: ignore[assignment]

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        # uvicorn arms its idle timer only after a response: a connection that never speaks would stay.
        self.timeout_keep_alive_task = self.loop.call_later(
            self.timeout_keep_alive, self.timeout_keep_alive_handler
        )

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_deadline()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._in_head:
            self._head_bytes += len(data)
            if self._deadline is None:
                # From the first byte, not the parser's message start: bytes it skips (blank lines)
                # must not hold a connection open forever.
                self._deadline = self.loop.call_later(self.limits.request_timeout_s, self._request_timed_out)
        self._unset_keepalive_if_required()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            if isinstance(exc.__context__, HeadTooLarge):
                self._refuse_head(str(exc.__context__))
                return
            self._send_400()
            return
        except httptools.HttpParserError:
            self._send_400()
            return
        except httptools.HttpParserUpgrade:
            self._unsupported_upgrade_warning()
            return
        # Checked after parsing, so the body bytes that came with the head's end are not counted.
        if self._in_head and self._head_bytes > self.limits.max_head_bytes:
            self._refuse_head(f"the request head exceeds {self.limits.max_head_bytes:,} bytes")

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._header_count = 0
        if self._deadline is None:
            self._deadline = self.loop.call_later(self.limits.request_timeout_s, self._request_timed_out)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_count += 1
        if self._header_count > self.limits.max_headers:
            raise HeadTooLarge(f"the request has more than {self.limits.max_headers} headers")
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_head = False
        # A head that arrived in one read is only measurable here: its line and headers, as sent.
        size = len(self.url) + sum(len(name) + len(value) + 4 for name, value in self.headers)
        if size > self.limits.max_head_bytes:
            raise HeadTooLarge(f"the request head exceeds {self.limits.max_head_bytes:,} bytes")
        super().on_headers_complete()
        self._receiving = self.cycle

    def on_message_complete(self) -> None:
        self._receiving = None
        self._cancel_deadline()
        self._in_head, self._head_bytes = True, 0  # a pipelined or keep-alive request's head follows
        super().on_message_complete()

    def on_response_complete(self) -> None:
        answered_early = self._receiving is not None and self._receiving.response_complete
        super().on_response_complete()
        if answered_early and not self.transport.is_closing():
            # Answered before its body arrived (an early 4xx): the rest is never read, so the
            # connection cannot carry another request.
            self._cancel_deadline()
            self.transport.close()

    def _cancel_deadline(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _send_400(self) -> None:
        self.logger.warning("Invalid HTTP request received.")
        self.send_400_response("Invalid HTTP request received.")

    def _refuse_head(self, message: str) -> None:
        self.logger.warning("refused a request: %s", message)
        self._count("request_header_too_large")
        self._close_with(_error_response(431, "request_header_too_large", message))

    def _count(self, code: str) -> None:
        if self.on_refused is not None:
            self.on_refused(code)

    def _request_timed_out(self) -> None:
        self._deadline = None
        seconds = self.limits.request_timeout_s
        self.logger.warning("closed a request not received in full within %g s", seconds)
        cycle = self.cycle
        if cycle is not None and cycle.response_started:
            self._close_with(b"")  # too late for a status: the connection is cut
            return
        message = f"the request was not received in full within {seconds:g} s"
        self._count("request_timeout")
        self._close_with(_error_response(408, "request_timeout", message))

    def _close_with(self, response: bytes) -> None:
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            # The application (if it started) now reads a disconnect, and nothing it sends is written.
            cycle.disconnected = True
            cycle.message_event.set()
        if response and not self.transport.is_closing():
            self.transport.write(response)
        self.transport.close()


def edge_protocol(limits: EdgeLimits, on_refused: Callable[[str], None] | None = None) -> type[EdgeProtocol]:
    """The protocol class to hand uvicorn (`http=`), with these limits."""
    # staticmethod: stored on the class, a plain function would be bound as a method.
    hook = staticmethod(on_refused) if on_refused is not None else None
    return type("ConfiguredEdgeProtocol", (EdgeProtocol,), {"limits": limits, "on_refused": hook})
