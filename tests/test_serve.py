"""`faceverify serve` runs a real uvicorn server that loads the models and answers /health."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx

from app.face.runtime import available_providers
from app.gallery.index import gpu_count
from tests.assets import REPO
from tests.server import running_server


def test_serve_answers_health(models_dir: Path, tmp_path: Path) -> None:
    with running_server(models_dir, tmp_path / "data") as url:
        response = httpx.get(f"{url}/health", timeout=5)
        assert response.status_code == 200
        assert response.json() == {"status": "ok"}
    assert (tmp_path / "data").is_dir()


def test_serve_refuses_an_open_service_on_a_network_address(models_dir: Path, tmp_path: Path) -> None:
    env = {**os.environ, "FV_MODELS_DIR": str(models_dir), "FV_DATA_DIR": str(tmp_path), "FV_API_KEYS": "{}"}
    command = [sys.executable, "-m", "faceverify.cli", "serve", "--host", "0.0.0.0", "--port", "1"]
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert "without API keys" in done.stderr and "FV_ALLOW_OPEN" in done.stderr


def test_the_start_up_log_and_ready_name_the_execution_providers_and_index_device(
    models_dir: Path, tmp_path: Path
) -> None:
    with running_server(models_dir, tmp_path / "data") as url:
        ready = httpx.get(f"{url}/ready", timeout=5).json()
    port = url.rsplit(":", 1)[1]
    log = (tmp_path / f"server-{port}.log").read_text()
    # What this environment offers: the CPU pair by default, CUDA and a GPU index where there are.
    providers, device = available_providers(), "gpu" if gpu_count() else "cpu"
    assert ready["execution_providers"] == providers and ready["index_device"] == device
    assert f"on {', '.join(providers)}" in log and f"faiss index search on the {device}" in log
