"""Limits at the HTTP edge, on a real server: oversized bodies and heads are refused at once, requests
that never finish arriving and connections that never speak are closed, forms are bounded in parts."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.server import running_server

LIMIT = 2 * 1024 * 1024
REQUEST_TIMEOUT_S = 2.0
IDLE_TIMEOUT_S = 1.0


@pytest.fixture(scope="module")
def server(models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One server with small limits and short timeouts for every test here."""
    with pytest.MonkeyPatch.context() as env:
        env.setenv("FV_MAX_REQUEST_BYTES", str(LIMIT))
        env.setenv("FV_REQUEST_TIMEOUT_S", str(REQUEST_TIMEOUT_S))
        env.setenv("FV_KEEP_ALIVE_TIMEOUT_S", str(IDLE_TIMEOUT_S))
        with running_server(models_dir, tmp_path_factory.mktemp("edge") / "data") as url:
            yield url


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


def _answer(sock: socket.socket) -> tuple[int, dict[str, object]]:
    data = b""
    sock.settimeout(10)
    while b"\r\n\r\n" not in data or len(data.split(b"\r\n\r\n", 1)[1]) < 20:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    assert b"{" in body, data[:400]
    return int(head.split()[1]), json.loads(body[body.index(b"{") : body.rindex(b"}") + 1])


def _post_head(port: int, extra: str) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port))
    head = "POST /enroll HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: multipart/form-data; boundary=b\r\n"
    sock.sendall(f"{head}{extra}\r\n".encode())
    return sock


def test_a_body_above_the_limit_is_refused_before_it_is_read(server: str) -> None:
    url, port = server, _port(server)
    # Declared 200 MB: refused from the header, after a few KiB of it.
    started = time.perf_counter()
    sock = _post_head(port, "Content-Length: 200000000\r\n")
    sock.sendall(b"--b\r\n" + b"x" * 4096)
    status, body = _answer(sock)
    sock.close()
    assert status == 413 and body["error"]["code"] == "request_too_large"  # type: ignore[index]
    assert time.perf_counter() - started < 1.0
    # No length declared (chunked): cut off once the streamed bytes pass the limit.
    sock = _post_head(port, "Transfer-Encoding: chunked\r\n")
    part = b'--b\r\nContent-Disposition: form-data; name="images"; filename="a.jpg"\r\n\r\n'
    sock.sendall(f"{len(part):x}\r\n".encode() + part + b"\r\n")
    chunk = b"y" * 65536  # one photo's bytes, streamed on past the limit
    for _ in range(LIMIT // len(chunk) + 2):
        sock.sendall(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
    status, body = _answer(sock)
    sock.close()
    assert status == 413 and body["error"]["code"] == "request_too_large"  # type: ignore[index]
    # Other clients were served all along.
    assert httpx.get(f"{url}/health", timeout=5).status_code == 200


def test_a_head_above_the_limit_is_refused_while_others_are_served(server: str) -> None:
    sock = socket.create_connection(("127.0.0.1", _port(server)))
    started = time.perf_counter()
    sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Filler: ")
    # A 1 MiB header, sent in pieces, with another client asking for /health halfway.
    for piece in range(16):
        try:
            sock.sendall(b"a" * 65536)
        except (BrokenPipeError, ConnectionResetError):
            break  # refused before the end: what we want
        if piece == 0:
            assert httpx.get(f"{server}/health", timeout=5).status_code == 200
    status, body = _answer(sock)
    sock.close()
    assert status == 431 and body["error"]["code"] == "request_header_too_large"  # type: ignore[index]
    assert time.perf_counter() - started < 1.0


def test_too_many_headers_are_refused(server: str) -> None:
    sock = socket.create_connection(("127.0.0.1", _port(server)))
    headers = "".join(f"X-H{i}: v\r\n" for i in range(101))
    sock.sendall(f"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n{headers}\r\n".encode())
    status, body = _answer(sock)
    sock.close()
    assert status == 431 and "headers" in body["error"]["message"]  # type: ignore[index]


def test_a_body_shorter_than_its_length_times_out(server: str) -> None:
    started = time.perf_counter()
    sock = _post_head(_port(server), "Content-Length: 10000\r\n")
    sock.sendall(b"--b\r\n")  # and then nothing more
    status, body = _answer(sock)
    sock.close()
    assert status == 408 and body["error"]["code"] == "request_timeout"  # type: ignore[index]
    assert REQUEST_TIMEOUT_S <= time.perf_counter() - started < REQUEST_TIMEOUT_S + 2


def test_a_connection_that_never_speaks_is_closed(server: str) -> None:
    sock = socket.create_connection(("127.0.0.1", _port(server)))
    sock.settimeout(IDLE_TIMEOUT_S + 5)
    started = time.perf_counter()
    assert sock.recv(1) == b""  # closed by the server, not by our timeout
    assert time.perf_counter() - started < IDLE_TIMEOUT_S + 2
    sock.close()


def test_a_form_with_too_many_files_is_refused(server: str) -> None:
    files = [("images", (f"{i}.jpg", b"x", "image/jpeg")) for i in range(11)]
    response = httpx.post(f"{server}/enroll", data={"subject_id": "a"}, files=files, timeout=10)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_body"
    assert "files" in response.json()["error"]["message"]


def test_a_request_answered_before_its_body_arrived_closes_its_connection(server: str) -> None:
    started = time.perf_counter()
    sock = _post_head(_port(server), "Content-Length: 10000\r\n")
    sock.sendall(b"0123456789")  # not multipart: refused at once, with most of the body unsent
    status, _ = _answer(sock)
    sock.settimeout(REQUEST_TIMEOUT_S + 5)
    while sock.recv(65536):
        pass  # the rest of the answer, then the close
    sock.close()
    assert status == 400
    assert time.perf_counter() - started < REQUEST_TIMEOUT_S


def _refusals(url: str, code: str) -> float:
    for line in httpx.get(f"{url}/metrics", timeout=5).text.splitlines():
        if line.startswith(f'faceverify_errors_total{{code="{code}"}}'):
            return float(line.split()[-1])
    return 0.0


def test_refusals_at_the_edge_are_counted_in_the_metrics(server: str) -> None:
    before = _refusals(server, "request_header_too_large")
    sock = socket.create_connection(("127.0.0.1", _port(server)))
    sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Filler: " + b"a" * 70_000 + b"\r\n\r\n")
    status, _ = _answer(sock)
    sock.close()
    assert status == 431
    assert _refusals(server, "request_header_too_large") == before + 1


def test_blank_lines_do_not_keep_a_connection_open(server: str) -> None:
    sock = socket.create_connection(("127.0.0.1", _port(server)))
    started = time.perf_counter()
    status = None
    while time.perf_counter() - started < REQUEST_TIMEOUT_S + 3:
        try:
            sock.sendall(b"\r\n")  # bytes the parser skips, each before the idle timer runs out
        except (BrokenPipeError, ConnectionResetError):
            break
        sock.settimeout(IDLE_TIMEOUT_S / 2)
        try:
            data = sock.recv(65536)
        except TimeoutError:
            continue
        status = int(data.split()[1]) if data else status
        break
    sock.close()
    assert status == 408
    assert time.perf_counter() - started < REQUEST_TIMEOUT_S + 2


def _answered(url: str, status: int) -> float:
    """POSTs to /enroll answered with this status, as /metrics counts them."""
    wanted = f'faceverify_requests_total{{method="POST",route="/enroll",status="{status}"}}'
    lines = httpx.get(f"{url}/metrics", timeout=5).text.splitlines()
    return sum(float(line.split()[-1]) for line in lines if line.startswith(wanted))


def test_a_refused_body_is_counted_as_the_413_it_got(server: str) -> None:
    before = {status: _answered(server, status) for status in (400, 413)}
    before_invalid = _refusals(server, "invalid_body")
    sock = _post_head(_port(server), "Transfer-Encoding: chunked\r\n")
    part = b'--b\r\nContent-Disposition: form-data; name="images"; filename="a.jpg"\r\n\r\n'
    sock.sendall(f"{len(part):x}\r\n".encode() + part + b"\r\n")
    chunk = b"y" * 65536
    try:
        for _ in range(LIMIT // len(chunk) + 2):
            sock.sendall(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
    except (BrokenPipeError, ConnectionResetError):
        pass  # refused while it streamed
    sock.close()
    time.sleep(0.5)  # the app's own (dropped) answer to the disconnect comes after
    assert _answered(server, 413) == before[413] + 1
    assert _answered(server, 400) == before[400]
    assert _refusals(server, "invalid_body") == before_invalid
