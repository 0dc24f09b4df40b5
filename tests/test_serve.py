"""`faceverify serve` runs a real uvicorn server that loads the models and answers /health."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.assets import REPO


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_serve_answers_health(models_dir: Path, tmp_path: Path) -> None:
    port = _free_port()
    env = {**os.environ, "FV_MODELS_DIR": str(models_dir), "FV_DATA_DIR": str(tmp_path / "data")}
    command = [sys.executable, "-m", "faceverify.cli", "serve", "--port", str(port)]
    server = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert server.poll() is None, server.stdout.read().decode() if server.stdout else ""
            try:
                response = httpx.get(f"http://127.0.0.1:{port}/health", timeout=2)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "the server did not answer within 60 s"
                time.sleep(0.2)
        assert response.status_code == 200
        assert response.json() == {"status": "ok"}
        assert (tmp_path / "data").is_dir()
    finally:
        server.terminate()
        server.wait(timeout=20)
