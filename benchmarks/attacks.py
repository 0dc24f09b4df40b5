"""Hostile requests against a real server, one at a time: what each got back, how long it took, whether the
server stayed up and how much memory it took.

Run: .venv/bin/python -m benchmarks.attacks
One `faceverify serve` on loopback with a temporary data directory, an admin key ("*") and a key scoped to
"team-a", FV_REQUEST_TIMEOUT_S=5 and FV_KEEP_ALIVE_TIMEOUT_S=5 (started again if an attack brings it down).
The HTTP-edge attacks (huge heads, huge or short bodies, idle connections) go over raw sockets, the rest
through httpx. Each row says what a correct service does and whether this one did; the script exits 0
whatever it finds. Figures go to benchmarks/results/attacks.json.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import socket
import tempfile
import textwrap
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
from PIL import Image

from benchmarks.results_file import write_results
from tests.assets import lfw_photos
from tests.server import rss_mb, running_server

ADMIN_KEY = "attacks-admin-key"
SCOPED_KEY = "attacks-team-a-key"
REQUEST_TIMEOUT_S = 5.0
KEEP_ALIVE_TIMEOUT_S = 5.0
SERVER_ENV = {
    "FV_API_KEYS": json.dumps({ADMIN_KEY: ["*"], SCOPED_KEY: ["team-a"]}),
    "FV_REQUEST_TIMEOUT_S": f"{REQUEST_TIMEOUT_S:g}",
    "FV_KEEP_ALIVE_TIMEOUT_S": f"{KEEP_ALIVE_TIMEOUT_S:g}",
}
HEALTH_MEANWHILE_MS = 500.0  # /health from another client while an attack runs
MIB = 1024 * 1024


@dataclass
class Row:
    """One attack replayed: what was sent, what a correct service does, and what this one did."""

    number: str
    attack: str
    sent: str
    expected: str
    observed: str = ""
    passed: bool | None = None  # None: the attack could not be set up
    status: int | None = None
    code: str | None = None
    seconds: float | None = None
    rss_growth_mb: float | None = None
    server_up: bool = True
    details: dict[str, Any] = field(default_factory=dict)


class Server:
    """One `faceverify serve` process, started again when an attack has brought it down."""

    def __init__(self, models: Path, folder: Path) -> None:
        self.models = models
        self.folder = folder
        self.pids: list[int] = []
        self.url = ""
        self.starts = 0
        self._stack = ExitStack()

    def start(self) -> None:
        self._stack.close()
        self._stack = ExitStack()
        self.url = self._stack.enter_context(running_server(self.models, self.folder / "data", self.pids))
        self.starts += 1

    def close(self) -> None:
        self._stack.close()

    @property
    def pid(self) -> int:
        return self.pids[-1]

    @property
    def port(self) -> int:
        return int(urlsplit(self.url).port or 0)

    def up(self) -> bool:
        """The process lives and /health answers 200 within 3 s."""
        try:
            state = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            return False
        if state in ("Z", "X"):
            return False
        try:
            return httpx.get(f"{self.url}/health", timeout=3).status_code == 200
        except httpx.HTTPError:
            return False


@contextmanager
def environment(values: dict[str, str]) -> Iterator[None]:
    """These environment variables for the block (the server inherits them)."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


class RssSampler:
    """The server's resident memory sampled every 10 ms: the peak's growth over the value at the start."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.before = self.peak = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _read(self) -> float:
        try:
            return rss_mb(self.pid)
        except OSError:
            return float("nan")

    def _sample(self) -> None:
        while not self._stop.wait(0.01):
            value = self._read()
            if value == value:  # not NaN: the process is still there
                self.peak = max(self.peak, value)

    def __enter__(self) -> RssSampler:
        self.before = self.peak = self._read()
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._read())

    @property
    def growth(self) -> float:
        return round(max(self.peak - self.before, 0.0), 1)


class HealthProbe:
    """GET /health from another connection, one after another while an attack runs."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.latencies_ms: list[float] = []
        self.failures: list[str] = []
        self._client = httpx.Client(timeout=5)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._probe, daemon=True)

    def _probe(self) -> None:
        while not self._stop.is_set():
            started = time.perf_counter()
            try:
                status = self._client.get(f"{self.url}/health").status_code
            except httpx.HTTPError as exc:
                self.failures.append(type(exc).__name__)
                continue
            if status == 200:
                self.latencies_ms.append((time.perf_counter() - started) * 1000)
            else:
                self.failures.append(f"status {status}")
            self._stop.wait(0.02)

    def __enter__(self) -> HealthProbe:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()
        self._client.close()

    @property
    def max_ms(self) -> float | None:
        return round(max(self.latencies_ms), 1) if self.latencies_ms else None

    @property
    def ok(self) -> bool:
        return not self.failures and self.max_ms is not None and self.max_ms <= HEALTH_MEANWHILE_MS

    def summary(self) -> str:
        failed = f", {len(self.failures)} failed ({self.failures[0]})" if self.failures else ""
        return f"/health max {self.max_ms} ms over {len(self.latencies_ms)} probes{failed}"

    def figures(self) -> dict[str, Any]:
        return {
            "health_max_ms": self.max_ms,
            "health_probes": len(self.latencies_ms),
            "failures": self.failures,
        }


@dataclass
class RawAnswer:
    """What came back on a raw connection, with times from the first byte sent."""

    status: int | None = None
    code: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    answered_s: float | None = None  # the first byte of an answer
    closed_s: float | None = None  # the server closed or reset the connection
    sent_bytes: int = 0
    send_error: str | None = None
    recv_error: str | None = None

    def describe(self) -> str:
        if self.status is None:
            got = "no answer"
        else:
            got = f"{self.status} {self.code or ''}".strip()
            got += f" after {self.answered_s:.3f} s"
        closed = f", closed after {self.closed_s:.3f} s" if self.closed_s is not None else ", not closed"
        if self.recv_error:
            closed += f" ({self.recv_error})"
        return f"{got}{closed}; sent {self.sent_bytes:,} B" + (
            f" ({self.send_error})" if self.send_error else ""
        )


def raw_rows(
    answer: RawAnswer,
    number: str,
    attack: str,
    sent: str,
    expected: str,
    passed: bool,
    observed: str | None = None,
    seconds: float | None = None,
    details: dict[str, Any] | None = None,
) -> list[Row]:
    """The row of an attack over a raw socket: its status and code from `answer`, observed as the
    answer describes itself and timed to its first byte, unless told otherwise."""
    return [
        Row(
            number, attack, sent, expected, observed if observed is not None else answer.describe(), passed,
            answer.status, answer.code, seconds if seconds is not None else answer.answered_s,
            details=details if details is not None else asdict(answer),
        )
    ]  # fmt: skip


def _parse_answer(received: bytes, answer: RawAnswer) -> None:
    head, found, body = received.partition(b"\r\n\r\n")
    if not found:
        return
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) >= 2 and parts[1].isdigit():
        answer.status = int(parts[1])
    for line in lines[1:]:
        name, _, value = line.partition(":")
        answer.headers[name.strip().lower()] = value.strip()
    length = answer.headers.get("content-length", "")
    if length.isdigit():
        body = body[: int(length)]
    with suppress(ValueError, KeyError, TypeError):
        answer.code = json.loads(body)["error"]["code"]


def raw_exchange(port: int, chunks: Iterable[bytes], wait_s: float) -> RawAnswer:
    """Send `chunks` as fast as the server takes them while reading what it answers, until it closes the
    connection or `wait_s` pass."""
    answer = RawAnswer()
    received = bytearray()
    stop = threading.Event()
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.settimeout(0.1)  # both directions: the loops below check their deadline between tries
    started = time.perf_counter()

    def send() -> None:
        try:
            for chunk in chunks:
                view = memoryview(chunk)
                while view and not stop.is_set():
                    try:
                        sent = sock.send(view)
                    except TimeoutError:
                        continue
                    answer.sent_bytes += sent
                    view = view[sent:]
                if stop.is_set():
                    return
        except OSError as exc:
            answer.send_error = type(exc).__name__

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    try:
        while time.perf_counter() - started < wait_s:
            try:
                data = sock.recv(65536)
            except TimeoutError:
                continue
            except OSError as exc:
                answer.recv_error = type(exc).__name__
                answer.closed_s = time.perf_counter() - started
                break
            if not data:
                answer.closed_s = time.perf_counter() - started
                break
            if answer.answered_s is None:
                answer.answered_s = time.perf_counter() - started
            received += data
    finally:
        stop.set()
        sender.join(timeout=5)
        sock.close()
    _parse_answer(bytes(received), answer)
    return answer


def request_head(port: int, method: str, path: str, headers: Iterable[tuple[str, str]] = ()) -> bytes:
    """A request line and headers, with Host first, ended by the blank line."""
    lines = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", *(f"{k}: {v}" for k, v in headers)]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def pieces(data: bytes, size: int) -> Iterator[bytes]:
    """`data` in slices of `size` bytes."""
    for start in range(0, len(data), size):
        yield data[start : start + size]


def call(
    server: Server, method: str, path: str, key: str | None = ADMIN_KEY, timeout: float = 30, **kwargs: Any
) -> httpx.Response:
    """One request through httpx, with the key as X-API-Key."""
    headers = {"X-API-Key": key} if key else {}
    return httpx.request(method, f"{server.url}{path}", headers=headers, timeout=timeout, **kwargs)


def error_code(response: httpx.Response) -> str | None:
    """The service's error code, when the answer has its error shape."""
    try:
        body = response.json()
    except ValueError:
        return None
    error = body.get("error") if isinstance(body, dict) else None
    return error.get("code") if isinstance(error, dict) else None


def describe(response: httpx.Response) -> str:
    return f"{response.status_code} {error_code(response) or ''}".strip()


def timed_call(server: Server, method: str, path: str, **kwargs: Any) -> tuple[httpx.Response, float]:
    started = time.perf_counter()
    response = call(server, method, path, **kwargs)
    return response, round(time.perf_counter() - started, 3)


def grey_png(size: tuple[int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("L", size, 128).save(buffer, "PNG")
    return buffer.getvalue()


def face_photo() -> bytes | None:
    """A real face photo from lfw-dev, or None where the data is absent."""
    photos = lfw_photos(1)
    return photos[0].read_bytes() if photos else None


def photo_or_blank() -> tuple[str, bytes, str]:
    """A real face where there is one (so a refusal that fails lets the enrollment through), else a grey
    PNG: the checks under attack run before any inference either way."""
    face = face_photo()
    return ("face.jpg", face, "image/jpeg") if face else ("grey.png", grey_png((64, 64)), "image/png")


def refused_with(response: httpx.Response, status: int, code: str) -> bool:
    return response.status_code == status and error_code(response) == code


# The attacks: each returns its rows; status, code and seconds are filled in for the JSON record.


def big_image(server: Server) -> list[Row]:
    """1. A 40 MP grey PNG (cheap to send, costly to decode) to /detect, alone and four at once."""
    data = grey_png((8000, 5000))
    files = {"image": ("grey.png", data, "image/png")}
    # The first request of a fresh server warms its sessions: that cost is not the attack's.
    warm_name, warm, warm_type = photo_or_blank()
    call(server, "POST", "/detect", files={"image": (warm_name, warm, warm_type)}, timeout=60)

    def answered(response: httpx.Response) -> bool:
        if response.status_code == 200:
            return bool(response.json().get("count") == 0)
        return 400 <= response.status_code < 500 and error_code(response) == "no_face"

    with RssSampler(server.pid) as rss:
        response, seconds = timed_call(server, "POST", "/detect", files=files, timeout=60)
    faces = response.json().get("count") if response.status_code == 200 else None
    one = Row(
        "1a",
        "40 MP grey PNG to /detect",
        f"POST /detect image=8000x5000 grey PNG ({len(data):,} B)",
        "200 with no faces or 4xx no_face; <= 2 s; RSS +<= 300 MB",
        f"{describe(response)} (faces {faces}) in {seconds:.2f} s, RSS +{rss.growth:.0f} MB",
        answered(response) and seconds <= 2 and rss.growth <= 300,
        response.status_code,
        error_code(response),
        seconds,
        rss.growth,
    )
    with RssSampler(server.pid) as rss, ThreadPoolExecutor(4) as pool:
        started = time.perf_counter()
        answers = list(
            pool.map(lambda _: call(server, "POST", "/detect", files=files, timeout=120), range(4))
        )
        seconds = round(time.perf_counter() - started, 3)
    statuses = [describe(a) for a in answers]
    four = Row(
        "1b",
        "4 x 40 MP grey PNG at once",
        "4 concurrent POST /detect of the same PNG",
        "each 200 with no faces or 4xx no_face; total RSS +<= 2048 MB",
        f"{', '.join(sorted(set(statuses)))} in {seconds:.2f} s, RSS +{rss.growth:.0f} MB",
        all(answered(a) for a in answers) and rss.growth <= 2048,
        answers[0].status_code,
        error_code(answers[0]),
        seconds,
        rss.growth,
        details={"statuses": statuses},
    )
    return [one, four]


def huge_header(server: Server) -> list[Row]:
    """2. One 1 MiB header on GET /health, with /health probed from another client meanwhile."""
    head = request_head(server.port, "GET", "/health", [("X-Big", "a" * MIB)])
    with HealthProbe(server.url) as probe:
        answer = raw_exchange(server.port, pieces(head, 64 * 1024), wait_s=5)
    fast = answer.answered_s is not None and answer.answered_s <= 1
    return raw_rows(
        answer,
        "2",
        "1 MiB header",
        "GET /health with one 1 MiB header (raw socket, 64 KiB writes)",
        f"431 within 1 s; /health meanwhile <= {HEALTH_MEANWHILE_MS:g} ms",
        answer.status == 431 and fast and probe.ok,
        observed=f"{answer.describe()}; {probe.summary()}",
        details={**asdict(answer), **probe.figures()},
    )


def many_headers(server: Server) -> list[Row]:
    """3. 500 headers of 64 KiB each (31 MiB of head)."""
    value = "b" * (64 * 1024)
    lines = (f"X-H{i}: {value}\r\n".encode() for i in range(500))
    start = f"GET /health HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n".encode()
    answer = raw_exchange(server.port, [start, *lines, b"\r\n"], wait_s=5)
    return raw_rows(
        answer,
        "3",
        "500 headers of 64 KiB",
        "GET /health with 500 headers of 64 KiB (raw socket)",
        "431",
        answer.status == 431,
    )


def huge_body(server: Server) -> list[Row]:
    """4. POST /enroll declaring and streaming 200 MB, with /health probed meanwhile."""
    total = 200_000_000
    head = request_head(
        server.port,
        "POST",
        "/enroll",
        [
            ("X-API-Key", ADMIN_KEY),
            ("Content-Type", "multipart/form-data; boundary=attack"),
            ("Content-Length", str(total)),
        ],
    )
    block = b"\0" * MIB

    def body() -> Iterator[bytes]:
        yield head
        for start in range(0, total, MIB):
            yield block[: min(MIB, total - start)]

    with HealthProbe(server.url) as probe:
        answer = raw_exchange(server.port, body(), wait_s=10)
    fast = answer.answered_s is not None and answer.answered_s <= 1
    return raw_rows(
        answer,
        "4",
        "200 MB body",
        f"POST /enroll, Content-Length {total}, {total // 10**6} MB streamed at full speed",
        f"413 within 1 s; /health meanwhile <= {HEALTH_MEANWHILE_MS:g} ms",
        answer.status == 413 and fast and probe.ok,
        observed=f"{answer.describe()}; {probe.summary()}",
        details={**asdict(answer), **probe.figures()},
    )


def short_body(server: Server) -> list[Row]:
    """5. Content-Length 10000 with 10 bytes sent, then silence."""
    head = request_head(
        server.port,
        "POST",
        "/enroll",
        [
            ("X-API-Key", ADMIN_KEY),
            ("Content-Type", "multipart/form-data; boundary=attack"),
            ("Content-Length", "10000"),
        ],
    )
    # Ten bytes that open a valid multipart body: the form parser has to wait for the rest.
    answer = raw_exchange(server.port, [head + b"--attack\r\n"], wait_s=REQUEST_TIMEOUT_S + 5)
    on_time = answer.answered_s is not None and abs(answer.answered_s - REQUEST_TIMEOUT_S) <= 1
    return raw_rows(
        answer,
        "5",
        "body shorter than Content-Length",
        "POST /enroll, Content-Length 10000, 10 bytes ('--attack\\r\\n') sent, then waiting (raw socket)",
        f"408 request_timeout after {REQUEST_TIMEOUT_S:g} s (+-1 s)",
        answer.status == 408 and answer.code == "request_timeout" and on_time,
    )


def idle_connection(server: Server) -> list[Row]:
    """6. A connection that never sends a byte."""
    answer = raw_exchange(server.port, [], wait_s=KEEP_ALIVE_TIMEOUT_S + 5)
    on_time = answer.closed_s is not None and abs(answer.closed_s - KEEP_ALIVE_TIMEOUT_S) <= 1
    return raw_rows(
        answer,
        "6",
        "idle connection",
        "connect, send nothing (raw socket)",
        f"closed by the server after {KEEP_ALIVE_TIMEOUT_S:g} s (+-1 s)",
        on_time,
        seconds=answer.closed_s,
    )


def many_parts(server: Server) -> list[Row]:
    """7. An enroll form with 1000 file parts."""
    files = [("images", (f"{i}.jpg", b"x", "image/jpeg")) for i in range(1000)]
    response, seconds = timed_call(server, "POST", "/enroll", data={"subject_id": "many-parts"}, files=files)
    return [
        Row(
            "7",
            "1000 file parts",
            "POST /enroll subject_id=many-parts with 1000 one-byte file parts",
            "400 invalid_body",
            f"{describe(response)} in {seconds:.2f} s",
            refused_with(response, 400, "invalid_body"),
            response.status_code,
            error_code(response),
            seconds,
        )
    ]


METADATA_ATTACKS = {
    "nested 1000 deep": '{"a":' * 1000 + "1" + "}" * 1000,
    "5000-digit integer": '{"a":' + "9" * 5000 + "}",
    "lone surrogate": '{"a":"\\ud800"}',
    "nested 300 deep": '{"a":' * 300 + "1" + "}" * 300,
    "NaN": '{"a":NaN}',
    "Infinity": '{"a":Infinity}',
    "1e999": '{"a":1e999}',
}


def hostile_metadata(server: Server) -> list[Row]:
    """8. Metadata a strict JSON reader refuses; the subjects listing must still answer afterwards."""
    image = photo_or_blank()
    baseline = call(
        server,
        "POST",
        "/enroll",
        data={"subject_id": "meta-baseline", "metadata": '{"team": "blue"}', "allow_largest": "true"},
        files={"images": image},
    )
    rows = []
    for i, (name, text) in enumerate(METADATA_ATTACKS.items()):
        data = {"subject_id": f"meta-{i}", "metadata": text, "allow_largest": "true"}
        response, seconds = timed_call(server, "POST", "/enroll", data=data, files={"images": image})
        shown = text if len(text) <= 40 else f"{text[:24]}... ({len(text):,} chars)"
        rows.append(
            Row(
                f"8{chr(ord('a') + i)}",
                f"metadata: {name}",
                f"POST /enroll metadata={shown}",
                "422 invalid_field",
                f"{describe(response)} in {seconds:.2f} s",
                refused_with(response, 422, "invalid_field"),
                response.status_code,
                error_code(response),
                seconds,
            )
        )
    listing, seconds = timed_call(server, "GET", "/subjects?collection=default")
    total = listing.json().get("total") if listing.status_code == 200 else None
    rows.append(
        Row(
            f"8{chr(ord('a') + len(METADATA_ATTACKS))}",
            "GET /subjects after 8a-8g",
            f"GET /subjects?collection=default (baseline enroll: {describe(baseline)})",
            "200",
            f"{describe(listing)}, total {total}",
            listing.status_code == 200,
            listing.status_code,
            error_code(listing),
            seconds,
            details={"baseline_enroll": baseline.status_code, "total": total},
        )
    )
    return rows


ID_ATTACKS: list[tuple[str, str, dict[str, str]]] = [
    ("subject id with '/'", "/enroll", {"subject_id": "a/b"}),
    ("subject id with '\\'", "/enroll", {"subject_id": "a\\b"}),
    ("collection named '/'", "/collections", {"name": "/"}),
    ("collection with '/'", "/collections", {"name": "team/x"}),
    ("enroll into collection with '/'", "/enroll", {"subject_id": "ok", "collection": "team/x"}),
    ("subject id with NUL", "/enroll", {"subject_id": "a\x00b"}),
    ("subject id with newline", "/enroll", {"subject_id": "a\nb"}),
    ("subject id with ESC sequence", "/enroll", {"subject_id": "a\x1b[31mb"}),
    ("collection with BEL", "/collections", {"name": "c\x07d"}),
]


def hostile_ids(server: Server) -> list[Row]:
    """9. Subject ids and collection names no URL path can carry back."""
    image = photo_or_blank()
    rows = []
    for i, (name, path, fields) in enumerate(ID_ATTACKS):
        files = {"images": image} if path == "/enroll" else None
        data = {**fields, "allow_largest": "true"} if path == "/enroll" else fields
        response, seconds = timed_call(server, "POST", path, data=data, files=files)
        rows.append(
            Row(
                f"9{chr(ord('a') + i)}",
                name,
                f"POST {path} {', '.join(f'{k}={v!r}' for k, v in fields.items())}",
                "422 invalid_field",
                f"{describe(response)} in {seconds:.2f} s",
                refused_with(response, 422, "invalid_field"),
                response.status_code,
                error_code(response),
                seconds,
            )
        )
    return rows


def metrics_attacks(server: Server) -> list[Row]:
    """10. /metrics without a key, and collection names that try to write lines of their own into it."""
    anonymous, seconds = timed_call(server, "GET", "/metrics", key=None)
    rows = [
        Row(
            "10a",
            "/metrics without a key",
            "GET /metrics, no X-API-Key",
            "401 unauthorized",
            describe(anonymous),
            refused_with(anonymous, 401, "unauthorized"),
            anonymous.status_code,
            error_code(anonymous),
            seconds,
        )
    ]
    injected = 'evil"} 1\nfaceverify_queue_depth 9999\n#'
    created, seconds = timed_call(server, "POST", "/collections", data={"name": injected})
    text = call(server, "GET", "/metrics").text
    forged = [line for line in text.splitlines() if line.startswith("faceverify_queue_depth 9999")]
    rows.append(
        Row(
            "10b",
            "metrics line injection",
            f"POST /collections name={injected!r}, then GET /metrics",
            "422 invalid_field, or no line 'faceverify_queue_depth 9999' in /metrics",
            f"{describe(created)}; forged line {'present' if forged else 'absent'}",
            not forged and created.status_code < 500,
            created.status_code,
            error_code(created),
            seconds,
            details={"forged_lines": forged},
        )
    )
    # A quote and brace are allowed in names: the exposition format wants them escaped inside the label.
    quoted = 'evil"} 9999'
    created, seconds = timed_call(server, "POST", "/collections", data={"name": quoted})
    text = call(server, "GET", "/metrics").text
    lines = [
        line for line in text.splitlines() if line.startswith('faceverify_gallery_faces{collection="evil')
    ]
    escaped = 'faceverify_gallery_faces{collection="evil\\"} 9999"} '
    rows.append(
        Row(
            "10c",
            "metrics label quote",
            f"POST /collections name={quoted!r}, then GET /metrics",
            f"422, or the label escaped: {escaped}<count>",
            f"{describe(created)}; lines: {' | '.join(lines) or 'none'}",
            refused_with(created, 422, "invalid_field") or any(line.startswith(escaped) for line in lines),
            created.status_code,
            error_code(created),
            seconds,
            details={"lines": lines},
        )
    )
    return rows


def docs_cdn(server: Server) -> list[Row]:
    """11. Whether the documentation pages load scripts or styles from other hosts."""
    own = {f"127.0.0.1:{server.port}", f"localhost:{server.port}"}
    rows = []
    for i, path in enumerate(("/docs", "/redoc")):
        response, seconds = timed_call(server, "GET", path, key=None)
        hosts = sorted(set(re.findall(r"https?://([^/\"'\s<>)]+)", response.text)) - own)
        rows.append(
            Row(
                f"11{'ab'[i]}",
                f"{path} external hosts",
                f"GET {path}",
                "200, no http(s):// URL on another host",
                f"{describe(response)}; other hosts: {', '.join(hosts) or 'none'}",
                response.status_code == 200 and not hosts,
                response.status_code,
                error_code(response),
                seconds,
                details={"hosts": hosts},
            )
        )
    return rows


def options_allow(server: Server) -> list[Row]:
    """12. OPTIONS on two routes: the Allow header."""
    rows = []
    for i, (path, methods) in enumerate((("/verify", {"POST"}), ("/subjects/x", {"GET", "DELETE"}))):
        response, seconds = timed_call(server, "OPTIONS", path)
        allow = response.headers.get("allow")
        listed = {m.strip().upper() for m in (allow or "").split(",") if m.strip()}
        rows.append(
            Row(
                f"12{'ab'[i]}",
                f"OPTIONS {path}",
                f"OPTIONS {path}",
                f"405 or 2xx with Allow: {', '.join(sorted(methods))}",
                f"{describe(response)}; Allow: {allow}",
                allow is not None and methods <= listed and response.status_code < 500,
                response.status_code,
                error_code(response),
                seconds,
                details={"allow": allow},
            )
        )
    return rows


def faceless_subject(server: Server) -> list[Row]:
    """13. /verify against a subject whose only face was deleted."""
    row = Row(
        "13",
        "/verify a subject with no faces",
        "enroll no-faces-left, DELETE its one face, POST /verify image + subject_id=no-faces-left",
        "4xx (not 500)",
    )
    face = face_photo()
    if face is None:
        row.observed = "not reachable: no lfw-dev photo to enroll"
        return [row]
    image = ("face.jpg", face, "image/jpeg")
    enrolled = call(
        server,
        "POST",
        "/enroll",
        data={"subject_id": "no-faces-left", "allow_largest": "true"},
        files={"images": image},
        timeout=60,
    )
    if enrolled.status_code != 201:
        row.observed = f"not reachable: enroll answered {describe(enrolled)}"
        return [row]
    (face_id,) = enrolled.json()["face_ids"]
    deleted = call(server, "DELETE", f"/subjects/no-faces-left/faces/{face_id}")
    if deleted.status_code != 200:
        row.observed = f"not reachable: deleting face {face_id} answered {describe(deleted)}"
        return [row]
    response, seconds = timed_call(
        server, "POST", "/verify", data={"subject_id": "no-faces-left"}, files={"image": image}, timeout=60
    )
    row.observed = f"{describe(response)} in {seconds:.2f} s"
    row.passed = 400 <= response.status_code < 500
    row.status, row.code, row.seconds = response.status_code, error_code(response), seconds
    return [row]


def scoped_key(server: Server) -> list[Row]:
    """14. The team-a key on another collection (a check that the keys are in force)."""
    response, seconds = timed_call(server, "GET", "/subjects?collection=default", key=SCOPED_KEY)
    return [
        Row(
            "14",
            "scoped key, other collection",
            "GET /subjects?collection=default with the team-a key",
            "403 forbidden",
            describe(response),
            refused_with(response, 403, "forbidden"),
            response.status_code,
            error_code(response),
            seconds,
        )
    ]


ATTACKS: list[tuple[str, Callable[[Server], list[Row]]]] = [
    ("1", big_image),
    ("2", huge_header),
    ("3", many_headers),
    ("4", huge_body),
    ("5", short_body),
    ("6", idle_connection),
    ("7", many_parts),
    ("8", hostile_metadata),
    ("9", hostile_ids),
    ("10", metrics_attacks),
    ("11", docs_cdn),
    ("12", options_allow),
    ("13", faceless_subject),
    ("14", scoped_key),
]


def replay(server: Server, number: str, attack: Callable[[Server], list[Row]]) -> list[Row]:
    """One attack, with the server's memory watched and its health checked afterwards."""
    if not server.up():
        server.start()  # an earlier attack brought it down: each attack gets a live server
    started = time.perf_counter()
    with RssSampler(server.pid) as rss:
        try:
            rows = attack(server)
        except Exception as exc:
            summary = (attack.__doc__ or attack.__name__).split("\n")[0]
            rows = [Row(number, attack.__name__, summary, "an answer", f"no answer: {exc!r}", False)]
    wall = round(time.perf_counter() - started, 3)
    up = server.up()
    for row in rows:
        row.server_up = up
        if row.rss_growth_mb is None:
            row.rss_growth_mb = rss.growth  # the whole attack's, for rows that do not measure their own
        if row.passed is not None:
            row.passed = row.passed and up
        row.details.setdefault("attack_wall_s", wall)
    return rows


def server_log(folder: Path) -> dict[str, Any]:
    """Tracebacks and 500s in the server logs (read before the temporary folder goes)."""
    text = "\n".join(p.read_text(errors="replace") for p in sorted(folder.glob("server-*.log")))
    first = text.find("Traceback")
    return {
        "tracebacks": text.count("Traceback (most recent call last)"),
        "answered_500": len(re.findall(r'" 500\b', text)),
        "first_traceback": text[first : first + 4000] if first >= 0 else None,
    }


COLUMNS = (("#", 4), ("attack / sent", 34), ("expected", 34), ("observed", 50))


def print_table(rows: list[Row]) -> None:
    """Expected beside observed, one block of wrapped lines per row."""
    header = " ".join(f"{name:{width}}" for name, width in COLUMNS) + f" {'s':>7} {'RSS+MB':>7} up  pass"
    print(header)
    print("-" * len(header))
    for row in rows:
        cells = [
            [row.number],
            textwrap.wrap(row.attack, 34) + textwrap.wrap(f"> {row.sent}", 34),
            textwrap.wrap(row.expected, 34),
            textwrap.wrap(row.observed, 50),
        ]
        seconds = f"{row.seconds:7.2f}" if row.seconds is not None else f"{'-':>7}"
        rss = f"{row.rss_growth_mb:7.0f}" if row.rss_growth_mb is not None else f"{'-':>7}"
        verdict = {True: "PASS", False: "FAIL", None: "n/a"}[row.passed]
        tail = f" {seconds} {rss} {'yes' if row.server_up else 'NO ':3} {verdict}"
        for i in range(max(len(c) for c in cells)):
            line = " ".join(
                f"{(c[i] if i < len(c) else ''):{w}}" for c, (_, w) in zip(cells, COLUMNS, strict=True)
            )
            print(line + (tail if i == 0 else ""))
    print("-" * len(header))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", type=Path, default=Path("models"))
    args = parser.parse_args()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder, environment(SERVER_ENV):
        server = Server(args.models.resolve(), Path(folder))
        try:
            server.start()
            rows = [row for number, attack in ATTACKS for row in replay(server, number, attack)]
        finally:
            server.close()
        log = server_log(Path(folder))
    wall = round(time.perf_counter() - started, 1)
    print_table(rows)
    passed = sum(row.passed is True for row in rows)
    judged = sum(row.passed is not None for row in rows)
    print(f"passed {passed} of {judged} ({len(rows) - judged} not reachable) in {wall} s")
    print(
        f"server starts: {server.starts}; in its log: {log['tracebacks']} tracebacks, "
        f"{log['answered_500']} answers 500"
    )
    if errors := [row.number for row in rows if row.status is not None and row.status >= 500]:
        print(f"answered 5xx: rows {', '.join(errors)}")
    settings = {k: v for k, v in SERVER_ENV.items() if k != "FV_API_KEYS"}
    recorded = write_results(
        "attacks",
        {
            "server_env": {**settings, "FV_API_KEYS": "admin ['*'], scoped ['team-a']"},
            "wall_s": wall,
            "server_starts": server.starts,
            "passed": passed,
            "judged": judged,
            "rows": [asdict(row) for row in rows],
            "server_log": log,
        },
    )
    print(f"recorded in {recorded}")


if __name__ == "__main__":
    main()
