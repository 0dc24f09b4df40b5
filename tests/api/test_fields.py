"""Ids and metadata: only what later requests can address and read back is stored; one server per gallery."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.config import Settings
from app.face.errors import ModelMismatch
from app.gallery.errors import DataDirLocked
from app.main import create_app
from tests.conftest import photo


@pytest.fixture
def client(models_dir: Path, tmp_path: Path) -> Iterator[TestClient]:
    with TestClient(create_app(Settings(models_dir=models_dir, data_dir=tmp_path / "data"))) as c:
        yield c


def _enroll(client: TestClient, photos: list[Path], **data: str):  # type: ignore[no-untyped-def]
    image = ("images", ("obama.jpg", photo(photos, "obama.jpg").read_bytes(), "image/jpeg"))
    return client.post("/enroll", data={"allow_largest": "true", **data}, files=[image])


@pytest.mark.parametrize(
    "subject_id", ["a/b", "a\\b", "..", ".", " ann", "ann ", "x\x00y", "x\u202ey", "x\ny"]
)
def test_ids_no_url_can_address_are_refused(client: TestClient, photos: list[Path], subject_id: str) -> None:
    response = _enroll(client, photos, subject_id=subject_id)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "invalid_field"
    assert [c["faces"] for c in client.get("/collections").json()] == [0]  # nothing was stored


def test_ordinary_ids_are_stored_and_addressable(client: TestClient, photos: list[Path]) -> None:
    for subject_id in ("ann lee", "Zoë@example.org", "42", "a.b-c_d+e"):
        assert _enroll(client, photos, subject_id=subject_id).status_code == 201
        fetched = client.get(f"/subjects/{subject_id}")
        assert fetched.status_code == 200 and fetched.json()["subject_id"] == subject_id
    assert _enroll(client, photos, subject_id="x", collection="a/b").status_code == 422
    refused = client.post("/collections", data={"name": "/"})
    assert refused.status_code == 422 and refused.json()["error"]["code"] == "invalid_field"


@pytest.mark.parametrize(
    "metadata",
    [
        "[" * 1000 + "]" * 1000,
        '{"a": ' + "[" * 20 + "]" * 20 + "}",
        '{"n": ' + "9" * 5000 + "}",
        '{"a": "\\ud800"}',
        '{"\\udfff": 1}',
        '{"a": NaN}',
        '{"a": Infinity}',
        '{"a": 1e999}',
        '["not", "an", "object"]',
        "{not json",
    ],
)
def test_metadata_that_could_not_be_read_back_is_refused(
    client: TestClient, photos: list[Path], metadata: str
) -> None:
    response = _enroll(client, photos, subject_id="ann", metadata=metadata)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "invalid_field"
    assert [c["faces"] for c in client.get("/collections").json()] == [0]


def test_strict_metadata_round_trips(client: TestClient, photos: list[Path]) -> None:
    metadata = '{"team": "blue", "level": 3, "ratio": 0.5, "tags": ["a", {"b": null}], "name": "Zoë"}'
    assert _enroll(client, photos, subject_id="ann", metadata=metadata).status_code == 201
    listed = client.get("/subjects").json()["subjects"][0]
    assert listed["metadata"] == {
        "team": "blue",
        "level": 3,
        "ratio": 0.5,
        "tags": ["a", {"b": None}],
        "name": "Zoë",
    }


def test_a_second_server_on_the_same_data_directory_is_refused(models_dir: Path, tmp_path: Path) -> None:
    settings = Settings(models_dir=models_dir, data_dir=tmp_path / "data")
    with TestClient(create_app(settings)):
        second = TestClient(create_app(settings))
        with pytest.raises(DataDirLocked, match="in use by another faceverify server"):
            second.__enter__()
    # Once the first has stopped, the directory is free again.
    with TestClient(create_app(settings)) as again:
        assert again.get("/health").status_code == 200


def test_the_service_refuses_flip_averaging_other_than_its_calibrations(
    models_dir: Path, tmp_path: Path
) -> None:
    settings = Settings(models_dir=models_dir, data_dir=tmp_path / "data", flip_average=False)
    with pytest.raises(ModelMismatch, match="calibrated with flip averaging on"):
        TestClient(create_app(settings)).__enter__()
    # The refusal came before the gallery was opened: its data directory is free for a right start.
    with TestClient(create_app(Settings(models_dir=models_dir, data_dir=tmp_path / "data"))) as c:
        assert c.get("/health").status_code == 200


def test_settings_are_validated() -> None:
    with pytest.raises(ValueError, match="log_level"):
        Settings(log_level="loud")  # type: ignore[arg-type]


def test_a_write_holding_the_gallery_does_not_stall_other_requests(models_dir: Path, tmp_path: Path) -> None:
    settings = Settings(models_dir=models_dir, data_dir=tmp_path / "data")
    with TestClient(create_app(settings)) as client:
        gallery = client.app.state.service.gallery  # type: ignore[attr-defined]
        held, done = threading.Event(), threading.Event()

        def write_for_a_while() -> None:
            with gallery._lock.write():  # as an IVF rebuild holds it
                held.set()
                done.wait(timeout=5)

        writer = threading.Thread(target=write_for_a_while)
        writer.start()
        held.wait(timeout=5)
        waiting = [threading.Thread(target=client.get, args=(path,)) for path in ("/ready", "/collections")]
        for thread in waiting:
            thread.start()
        time.sleep(0.3)  # both are now waiting for the gallery
        started = time.perf_counter()
        assert client.get("/health").status_code == 200
        elapsed = time.perf_counter() - started
        done.set()
        writer.join()
        for thread in waiting:
            thread.join(timeout=10)
        # Served while the others still waited: the event loop was free (it would wait seconds otherwise).
        assert elapsed < 0.5, elapsed
