"""Closed by default, honest metrics, offline docs: every route but the probes needs a key, /metrics is
prometheus-client's exposition behind a key for every collection, /docs and /redoc load no CDN."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from app.config import Settings
from app.main import create_app
from tests.conftest import photo

ADMIN, SCOPED = "k-admin-0123456789", "k-team-0123456789"
PUBLIC = {"/health", "/ready", "/models/{model}/curves"}


@pytest.fixture
def keyed(models_dir: Path, tmp_path: Path) -> Iterator[TestClient]:
    keys = {ADMIN: ["*"], SCOPED: ["team"]}
    settings = Settings(models_dir=models_dir, data_dir=tmp_path / "data", api_keys=keys)
    with TestClient(create_app(settings)) as client:
        yield client


def _families(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    return {
        family.name: [(sample.labels, sample.value) for sample in family.samples]
        for family in text_string_to_metric_families(text)
    }


def test_every_route_but_the_probes_needs_a_key(keyed: TestClient) -> None:
    operations = keyed.get("/openapi.json").json()["paths"]
    assert len(operations) >= 10
    model_id = keyed.get("/ready").json()["model_id"]
    for template, methods in operations.items():
        # A served model's id where the route names one (a public fact, as in /ready); "1" elsewhere.
        path = re.sub(r"\{model\}", model_id, template)
        path = re.sub(r"\{[^}]+\}", "1", path)
        for method in methods:
            answer = keyed.request(method.upper(), path)
            if template in PUBLIC:
                assert answer.status_code == 200, (method, path)
                assert "security" not in methods[method]
            else:
                assert answer.status_code == 401, (method, path, answer.text)
                assert answer.json()["error"]["code"] == "unauthorized"
                assert {"ApiKey": []} in methods[method]["security"]
    # A bearer token is the same key.
    assert keyed.get("/collections", headers={"Authorization": f"Bearer {ADMIN}"}).status_code == 200


def test_metrics_need_a_key_for_every_collection(keyed: TestClient) -> None:
    assert keyed.get("/metrics", headers={"X-API-Key": SCOPED}).status_code == 403
    answer = keyed.get("/metrics", headers={"X-API-Key": ADMIN})
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain; version=")


def test_metrics_count_errors_stages_and_escape_labels(keyed: TestClient, photos: list[Path]) -> None:
    admin = {"X-API-Key": ADMIN}
    hostile = 'evil"} 9999 # {a="b'  # (a newline or backslash is refused by the id rules)
    assert keyed.post("/collections", data={"name": hostile}, headers=admin).status_code == 201
    image = photo(photos, "biden.jpg").read_bytes()
    enrolled = keyed.post(
        "/enroll", data={"subject_id": "biden"}, files=[("images", ("b.jpg", image))], headers=admin
    )
    assert enrolled.status_code == 201
    assert keyed.post("/identify", files=[("image", ("b.jpg", image))], headers=admin).status_code == 200
    assert (
        keyed.post("/detect", files=[("image", ("x.jpg", b"not an image"))], headers=admin).status_code == 400
    )
    keyed.get("/subjects")  # 401
    text = keyed.get("/metrics", headers=admin).text
    assert not any(line.startswith("faceverify_queue_depth 9999") for line in text.splitlines())
    families = _families(text)
    assert {labels["collection"] for labels, _ in families["faceverify_gallery_faces"]} == {
        hostile,
        "default",
    }
    errors = {labels["code"]: value for labels, value in families["faceverify_errors"]}
    assert errors["bad_image"] == 1 and errors["unauthorized"] == 1
    stages = {
        labels["stage"]: value
        for labels, value in families["faceverify_stage_seconds"]
        if labels.get("le") == "+Inf"
    }
    # enroll and identify each decode, detect, align and embed once; identify also searches (a decode
    # that fails is not timed).
    assert stages == {"decode": 2, "detect": 2, "align": 2, "embed": 2, "search": 1}
    assert ({"method": "POST", "route": "/enroll", "status": "201"}, 1.0) in families["faceverify_requests"]
    assert ({}, 2.0) in families["faceverify_faces_embedded"]
    assert families["process_resident_memory_bytes"][0][1] > 0
    assert "# HELP faceverify_stage_seconds" in text and "# TYPE faceverify_stage_seconds histogram" in text


def test_docs_load_nothing_from_another_host(keyed: TestClient) -> None:
    for page in ("/docs", "/redoc"):
        html = keyed.get(page).text
        assert not re.search(r"(src|href)=[\"']?https?://", html), page
        for asset in re.findall(r"(?:src|href)=[\"']([^\"']+)[\"']", html):
            fetched = keyed.get(asset)
            assert fetched.status_code == 200 and len(fetched.content) > 1000, asset
    assert keyed.get("/openapi.json").json()["components"]["securitySchemes"]["ApiKey"]["name"] == "X-API-Key"


def test_a_wrong_method_names_every_allowed_one(keyed: TestClient) -> None:
    answer = keyed.request("PUT", "/subjects/x", headers={"X-API-Key": ADMIN})
    assert answer.status_code == 405 and answer.headers["Allow"] == "DELETE, GET, PATCH"
    assert answer.json()["error"]["code"] == "method_not_allowed"
