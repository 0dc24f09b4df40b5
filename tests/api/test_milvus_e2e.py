"""Two `faceverify serve` replicas on one PostgreSQL database with their vectors in one real Milvus server
(FV_VECTOR_INDEX=milvus): an enrollment through one is identified through the other at once, a deletion
through the other is gone from the first's answers at once, `faceverify gallery rebuild-index` runs
while they serve, and while Milvus is down the answers are a clean 503 and the enrollment it refused is
finished once it is back."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import photo
from tests.engines.milvus import MilvusServer
from tests.server import REPO, running_server

pytest.importorskip("pymilvus", reason="pymilvus (the `milvus` extra) talks to Milvus")
pytestmark = pytest.mark.slow


def _post(url: str, route: str, image: Path, **fields: object) -> httpx.Response:
    files = {("images" if route == "enroll" else "image"): (image.name, image.read_bytes(), "image/jpeg")}
    return httpx.post(f"{url}/{route}", data=fields, files=files, timeout=60)


def test_replicas_share_one_milvus_server(
    models_dir: Path,
    photos: list[Path],
    postgres_url: str,
    milvus_uri: str,
    milvus_server: MilvusServer,
    tmp_path: Path,
) -> None:
    shared = {
        "FV_DATABASE_URL": postgres_url,
        "FV_VECTOR_INDEX": "milvus",
        "FV_MILVUS_URI": milvus_uri,
        "FV_MILVUS_CONSISTENCY": "strong",
        "FV_MILVUS_TIMEOUT_S": "5",
    }
    obama, obama2, biden = (photo(photos, name) for name in ("obama.jpg", "obama2.jpg", "biden.jpg"))
    with (
        running_server(models_dir, tmp_path / "one", env=shared) as first,
        running_server(models_dir, tmp_path / "two", env=shared) as second,
    ):
        assert httpx.get(f"{second}/ready", timeout=30).json()["index_device"] == "milvus"
        enrolled = _post(first, "enroll", obama, subject_id="obama")
        assert enrolled.status_code == 201, enrolled.text
        # No after_seq: a strong search on the shared server reads every acknowledged write.
        found = _post(second, "identify", obama2).json()
        assert found["match"] and found["candidates"][0]["subject_id"] == "obama"

        rebuilt = subprocess.run(
            [sys.executable, "-m", "faceverify.cli", "gallery", "rebuild-index"],
            cwd=REPO,
            env={**os.environ, **shared, "FV_DATA_DIR": str(tmp_path / "cli")},
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert rebuilt.returncode == 0, rebuilt.stderr
        assert "rebuilt 1 collections, 1 faces" in rebuilt.stdout
        assert _post(first, "identify", obama2).json()["candidates"][0]["subject_id"] == "obama"

        assert _post(second, "enroll", biden, subject_id="biden").status_code == 201
        assert _post(first, "identify", biden).json()["candidates"][0]["subject_id"] == "biden"
        assert httpx.delete(f"{second}/subjects/obama", timeout=30).status_code == 200
        # The first's search may still meet the deleted face: its owner is gone from the store, so it is
        # never answered.
        answer = _post(first, "identify", obama2).json()
        assert "obama" not in [c["subject_id"] for c in answer["candidates"]]

        milvus_server.kill()
        try:
            refused = _post(first, "enroll", obama, subject_id="obama-again")
            assert refused.status_code == 503, refused.text
            assert refused.json()["error"]["code"] == "index_unavailable"
            searched = _post(second, "identify", biden)
            assert searched.status_code == 503 and searched.json()["error"]["code"] == "index_unavailable"
            metrics = httpx.get(f"{first}/metrics", timeout=30).text
            assert "faceverify_index_writes_pending 1.0" in metrics
        finally:
            milvus_server.start()
        # Stored though refused: sent again once Milvus is back, it is found repeated and made searchable.
        deadline = time.monotonic() + 120
        while (again := _post(first, "enroll", obama, subject_id="obama-again")).status_code != 201:
            assert again.status_code == 503, again.text
            assert time.monotonic() < deadline, (
                "Milvus did not take the enrollment within 120 s of its restart"
            )
            time.sleep(1)
        while (found := _post(second, "identify", obama2)).status_code != 200:
            assert time.monotonic() < deadline, found.text
            time.sleep(1)
        assert found.json()["candidates"][0]["subject_id"] == "obama-again"
