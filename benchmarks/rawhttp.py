"""A lean HTTP/1.1 load client: requests encoded once up front, sent over keep-alive connections.

A general client (httpx) spends a few milliseconds of CPU per request on building multipart bodies
and parsing; on a 2-core box that comes out of the server's share and inflates its latency. This
one does what a tool like wrk does: write prepared bytes, read the status line, headers and body.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit


def multipart_request(url: str, path: str, files: list[tuple[str, bytes]]) -> bytes:
    """A complete POST of `files` (form field name, JPEG bytes) as multipart/form-data."""
    host = urlsplit(url).netloc
    boundary = uuid.uuid4().hex
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{name}.jpg"\r\n'
        f"Content-Type: image/jpeg\r\n\r\n".encode()
        + data
        + b"\r\n"
        for name, data in files
    ]
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\n"
        f"Content-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def _response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
    length = 0
    for line in head[1:]:
        name, _, value = line.partition(":")
        if name.lower() == "content-length":
            length = int(value)
    return int(head[0].split()[1]), await reader.readexactly(length)


@dataclass
class Run:
    """What one load run saw: latency of every answered request, server timings, failures."""

    latencies_ms: list[float] = field(default_factory=list)
    pipeline_ms: list[float] = field(default_factory=list)
    errors: int = 0
    dropped: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    seconds: float = 0.0


async def drive(url: str, requests: list[bytes], concurrency: int, seconds: float, limit: int) -> Run:
    """`concurrency` connections send `requests` in turn until `seconds` pass or `limit` are sent."""
    split = urlsplit(url)
    run = Run()
    issued = 0
    deadline = time.monotonic() + seconds

    async def connection() -> None:
        nonlocal issued
        reader, writer = await asyncio.open_connection(split.hostname, split.port)
        try:
            while time.monotonic() < deadline and issued < limit:
                request = requests[issued % len(requests)]
                issued += 1
                started = time.perf_counter()
                try:
                    writer.write(request)
                    status, body = await asyncio.wait_for(_response(reader), timeout=120)
                except (OSError, asyncio.IncompleteReadError, TimeoutError):
                    run.errors += 1  # a dropped or stalled connection: count it and open another
                    run.dropped += 1
                    writer.close()
                    reader, writer = await asyncio.open_connection(split.hostname, split.port)
                    continue
                run.latencies_ms.append((time.perf_counter() - started) * 1000)
                run.statuses[status] = run.statuses.get(status, 0) + 1
                if status != 200:
                    run.errors += 1
                    continue
                answer: dict[str, Any] = json.loads(body)
                run.pipeline_ms.append(float(answer["timings_ms"]["pipeline"]))
        finally:
            writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(connection() for _ in range(concurrency)))
    run.seconds = time.perf_counter() - started
    return run
