"""Limits at the HTTP edge, on a real server: a body above FV_MAX_REQUEST_BYTES is refused at once."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import httpx
import pytest

from tests.server import running_server

LIMIT = 2 * 1024 * 1024


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


def test_a_body_above_the_limit_is_refused_before_it_is_read(
    models_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FV_MAX_REQUEST_BYTES", str(LIMIT))
    with running_server(models_dir, tmp_path / "data") as url:
        port = int(url.rsplit(":", 1)[1])
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
