"""JSON bodies with base64 photos: the same answers as the multipart form for the same photos on every
route that takes photos, the same errors naming the same fields, limits on the decoded bytes."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.config import Settings
from app.main import create_app
from tests.conftest import photo

VOLATILE = ("timings_ms",)


@pytest.fixture
def client(models_dir: Path, tmp_path: Path) -> Iterator[TestClient]:
    settings = Settings(models_dir=models_dir, data_dir=tmp_path / "data", max_image_bytes=300_000)
    with TestClient(create_app(settings)) as c:
        yield c


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _same(a: dict[str, Any], b: dict[str, Any]) -> None:
    assert {k: v for k, v in a.items() if k not in VOLATILE} == {
        k: v for k, v in b.items() if k not in VOLATILE
    }


def test_every_photo_route_answers_json_as_it_answers_the_form(
    client: TestClient, photos: list[Path]
) -> None:
    one, two = photo(photos, "obama.jpg").read_bytes(), photo(photos, "obama2.jpg").read_bytes()
    group = photo(photos, "t1.jpg").read_bytes()
    # /enroll: two subjects, one by each body.
    form = client.post(
        "/enroll", data={"subject_id": "ann", "metadata": '{"team": "a"}'}, files=[("images", ("a.jpg", one))]
    )
    sent = client.post(
        "/enroll", json={"subject_id": "bob", "metadata": {"team": "a"}, "images": [_b64(two)]}
    )
    assert form.status_code == sent.status_code == 201, sent.text
    assert form.json()["faces"][0]["box"] != sent.json()["faces"][0]["box"]
    assert client.get("/subjects/bob").json()["metadata"] == client.get("/subjects/ann").json()["metadata"]
    # /verify, /identify and /detect: identical answers.
    for path, files, fields in (
        ("/verify", {"image_a": one, "image_b": two}, {"far": 0.0001}),
        ("/verify", {"image": two}, {"subject_id": "ann", "normalise": True}),
        ("/identify", {"image": group}, {"faces": "all", "include_misses": True, "top_k": 2}),
        ("/detect", {"image": group}, {}),
    ):
        as_form = client.post(
            path,
            data={k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in fields.items()},
            files=[(name, (f"{name}.jpg", data)) for name, data in files.items()],
        )
        as_json = client.post(path, json={**fields, **{name: _b64(data) for name, data in files.items()}})
        assert as_form.status_code == as_json.status_code == 200, (path, as_json.text)
        _same(as_form.json(), as_json.json())


def test_json_bodies_get_the_forms_errors(client: TestClient, photos: list[Path]) -> None:
    one = photo(photos, "obama.jpg").read_bytes()
    cases = [
        ({"image_a": _b64(one)}, 422, "invalid_field", None),  # the route's own check
        ({"image_a": _b64(one), "image_b": "not base64!"}, 422, "invalid_field", "image_b"),
        ({"image_a": _b64(one), "image_b": _b64(b"not an image")}, 400, "bad_image", "image_b"),
        ({"image_a": _b64(one), "image_b": _b64(b"x" * 300_001)}, 413, "image_too_large", "image_b"),
        ({"image_a": _b64(one), "image_b": _b64(one), "far": "often"}, 422, "invalid_field", "far"),
    ]
    for body, status, code, field in cases:
        answer = client.post("/verify", json=body)
        assert answer.status_code == status, (body.keys(), answer.text)
        assert answer.json()["error"]["code"] == code and answer.json()["error"].get("field") == field
    for raw in (b'{"image": NaN}', b"[1, 2]", b'{"image": ' + b"[" * 40 + b"]" * 40 + b"}"):
        answer = client.post("/detect", content=raw, headers={"content-type": "application/json"})
        assert answer.status_code == 422 and answer.json()["error"]["field"] == "body", raw
    data_url = client.post("/detect", json={"image": "data:image/jpeg;base64," + _b64(one)})
    assert data_url.status_code == 200 and data_url.json()["count"] == 2  # Obama and someone behind


def test_openapi_documents_both_bodies(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    for path in ("/verify", "/enroll", "/identify", "/detect"):
        content = spec["paths"][path]["post"]["requestBody"]["content"]
        assert set(content) == {"multipart/form-data", "application/json"}
    enroll = spec["components"]["schemas"]["Body_enroll_enroll_post_json"]["properties"]
    assert enroll["images"]["items"]["contentEncoding"] == "base64"


def test_a_json_body_without_a_valid_key_is_refused_unread(models_dir: Path, tmp_path: Path) -> None:
    keys = {"k-json-0123456789": ["*"]}
    settings = Settings(models_dir=models_dir, data_dir=tmp_path / "data", api_keys=keys)
    with TestClient(create_app(settings)) as keyed:
        body = {"image": _b64(b"x" * 1000)}
        assert keyed.post("/detect", json=body).json()["error"]["code"] == "unauthorized"
        answer = keyed.post("/detect", json=body, headers={"Authorization": "Bearer k-json-0123456789"})
        assert answer.status_code == 400 and answer.json()["error"]["field"] == "image"
