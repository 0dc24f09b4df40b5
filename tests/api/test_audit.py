"""Request ids on answers and log lines, and an audit line (ids only) for every change to the gallery."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from app.api.audit import JsonFormatter, RequestIdFilter
from app.config import Settings
from app.main import create_app
from tests.conftest import photo
from tests.server import running_server

KEY = "k-audit-0123456789abcdef"


@pytest.fixture
def client(models_dir: Path, tmp_path: Path) -> Iterator[TestClient]:
    settings = Settings(models_dir=models_dir, data_dir=tmp_path / "data", api_keys={KEY: ["*"]})
    with TestClient(create_app(settings), headers={"X-API-Key": KEY}) as c:
        yield c


def _image(photos: list[Path]) -> tuple[str, tuple[str, bytes, str]]:
    return ("images", ("obama.jpg", photo(photos, "obama.jpg").read_bytes(), "image/jpeg"))


def test_every_answer_carries_a_request_id(client: TestClient) -> None:
    fresh = client.get("/health").headers["x-request-id"]
    assert len(fresh) == 16 and fresh != client.get("/health").headers["x-request-id"]
    assert (
        client.get("/health", headers={"X-Request-ID": "trace-42.a_b"}).headers["x-request-id"]
        == "trace-42.a_b"
    )
    odd = client.get("/health", headers={"X-Request-ID": "not plain\\x"}).headers["x-request-id"]
    assert odd != "not plain\\x" and len(odd) == 16
    assert client.get("/nowhere").headers["x-request-id"]  # errors too


def test_changes_are_audited_with_ids_and_a_key_id_never_the_key(
    client: TestClient, photos: list[Path], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="faceverify.audit")
    form = {"allow_largest": "true"}
    enrolled = client.post("/enroll", data={**form, "subject_id": "ann"}, files=[_image(photos)])
    (face_id,) = enrolled.json()["face_ids"]
    client.post("/enroll", data={**form, "subject_id": "bo"}, files=[_image(photos)])
    client.delete(f"/subjects/ann/faces/{face_id}")
    client.delete("/subjects/bo")
    client.post("/collections", data={"name": "staff"})
    client.delete("/collections/staff")
    lines = [r.getMessage() for r in caplog.records if r.name == "faceverify.audit"]
    key_id = hashlib.sha256(KEY.encode()).hexdigest()[:12]
    assert [line.split()[0] for line in lines] == [
        "enroll", "enroll", "delete_face", "delete_subject", "create_collection", "delete_collection",
    ]  # fmt: skip
    assert lines[0] == f'enroll key={key_id} collection="default" subject="ann" face_ids=[{face_id}]'
    assert lines[2] == f'delete_face key={key_id} collection="default" subject="ann" face_ids=[{face_id}]'
    assert all(KEY not in line for line in lines)


def test_json_lines_carry_the_request_id() -> None:
    record = logging.LogRecord("faceverify.audit", logging.INFO, __file__, 1, "enroll %s", ("x",), None)
    RequestIdFilter().filter(record)
    entry = json.loads(JsonFormatter().format(record))
    assert entry["message"] == "enroll x" and entry["request_id"] == "-" and entry["level"] == "INFO"


def test_a_real_servers_log_lines_name_their_request(
    models_dir: Path, tmp_path: Path, photos: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FV_LOG_FORMAT", "json")
    data = tmp_path / "data"
    with running_server(models_dir, data) as url:
        response = httpx.post(
            f"{url}/enroll",
            data={"subject_id": "ann", "allow_largest": "true"},
            files=[_image(photos)],
            headers={"X-Request-ID": "enroll-ann-1"},
            timeout=30,
        )
        assert response.status_code == 201 and response.headers["x-request-id"] == "enroll-ann-1"
    entries = [
        json.loads(line)
        for line in next(tmp_path.glob("server-*.log")).read_text().splitlines()
        if line.startswith("{")
    ]
    mine = [e for e in entries if e["request_id"] == "enroll-ann-1"]
    assert any(e["logger"] == "faceverify.audit" and e["message"].startswith("enroll key=open") for e in mine)
    assert any(e["logger"] == "uvicorn.access" for e in mine)  # the access line names its request too
