"""`faceverify serve` runs a real uvicorn server that loads the models and answers /health."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.server import running_server


def test_serve_answers_health(models_dir: Path, tmp_path: Path) -> None:
    with running_server(models_dir, tmp_path / "data") as url:
        response = httpx.get(f"{url}/health", timeout=5)
        assert response.status_code == 200
        assert response.json() == {"status": "ok"}
    assert (tmp_path / "data").is_dir()
