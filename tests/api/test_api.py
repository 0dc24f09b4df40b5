"""The REST API on real models, photos and SQLite: the flows, auth, and the one error shape."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.config import Settings
from app.main import create_app
from tests.conftest import photo
from tests.face.bad_images import bad_corpus

KEY_ALL, KEY_STAFF = "k-all-0123456789", "k-staff-0123456789"


@pytest.fixture
def client(models_dir: Path, tmp_path: Path) -> Iterator[TestClient]:
    with TestClient(create_app(Settings(models_dir=models_dir, data_dir=tmp_path / "data"))) as c:
        yield c


@pytest.fixture
def keyed(models_dir: Path, tmp_path: Path) -> Iterator[TestClient]:
    keys = {KEY_ALL: ["*"], KEY_STAFF: ["staff"]}
    settings = Settings(models_dir=models_dir, data_dir=tmp_path / "data", api_keys=keys)
    with TestClient(create_app(settings)) as c:
        yield c


def _file(photos: list[Path], name: str, field: str = "image") -> tuple[str, tuple[str, bytes, str]]:
    return (field, (name, photo(photos, name).read_bytes(), "application/octet-stream"))


def _error(response, status: int, code: str) -> None:  # type: ignore[no-untyped-def]
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and body["error"]["code"] == code and body["error"]["message"]


def test_verify_same_and_different_people(client: TestClient, photos: list[Path]) -> None:
    same = client.post(
        "/verify", files=[_file(photos, "obama.jpg", "image_a"), _file(photos, "obama2.jpg", "image_b")]
    )
    assert same.status_code == 200, same.text
    body = same.json()
    assert body["match"] is True
    assert body["distance"] == pytest.approx(2 - 2 * body["similarity"])
    assert body["image_a"]["faces_found"] == 2 and len(body["image_a"]["face"]["landmarks"]) == 5
    different = client.post(
        "/verify", files=[_file(photos, "obama.jpg", "image_a"), _file(photos, "biden.jpg", "image_b")]
    )
    assert different.json()["match"] is False


def test_enroll_identify_delete(client: TestClient, photos: list[Path]) -> None:
    for subject, name in (("obama", "obama.jpg"), ("biden", "biden.jpg"), ("hanks", "Tom_Hanks_54745.png")):
        response = client.post(
            "/enroll",
            data={
                "subject_id": subject,
                "name": subject.title(),
                "metadata": '{"team": "a"}',
                "allow_largest": "true",
            },
            files=[_file(photos, name, "images")],
        )
        assert response.status_code == 201, response.text
        assert len(response.json()["face_ids"]) == 1
    found = client.post("/identify", files=[_file(photos, "obama3.jpg")], data={"top_k": "3"}).json()
    assert found["match"] and found["candidates"][0]["subject_id"] == "obama"
    against = client.post("/verify", files=[_file(photos, "obama2.jpg")], data={"subject_id": "obama"}).json()
    assert against["match"] is True
    page = client.get("/subjects", params={"limit": 2}).json()
    assert page["total"] == 3 and len(page["subjects"]) == 2
    assert client.get("/subjects/biden").json()["metadata"] == {"team": "a"}
    assert client.delete("/subjects/obama").json() == {"deleted_faces": 1}
    after = client.post("/identify", files=[_file(photos, "obama3.jpg")]).json()
    assert all(c["subject_id"] != "obama" for c in after["candidates"])
    assert [c["name"] for c in client.get("/collections").json()] == ["default"]
    assert client.get("/ready").json()["collections"] == 1


def test_enroll_refuses_a_group_photo(client: TestClient, photos: list[Path]) -> None:
    response = client.post("/enroll", data={"subject_id": "x"}, files=[_file(photos, "t1.jpg", "images")])
    _error(response, 422, "many_faces")


@pytest.mark.parametrize("name", sorted(bad_corpus()))
def test_bad_images_get_their_status(client: TestClient, name: str) -> None:
    factory, expected = bad_corpus()[name]
    status = {"bad_image": 400, "image_too_large": 413, "unsupported_media_type": 415}[expected.code]
    data = factory()
    if not data:
        status, code = 400, "bad_image"
    else:
        code = expected.code
    response = client.post("/detect", files=[("image", ("x", data, "application/octet-stream"))])
    _error(response, status, code)


def test_not_found_and_invalid_fields(client: TestClient, photos: list[Path]) -> None:
    _error(client.get("/subjects/nobody"), 404, "subject_not_found")  # "default" always exists
    _error(client.get("/subjects/nobody", params={"collection": "none"}), 404, "collection_not_found")
    _error(
        client.post("/identify", files=[_file(photos, "obama.jpg")], data={"collection": "none"}),
        404,
        "collection_not_found",
    )
    _error(
        client.post("/identify", files=[_file(photos, "obama.jpg")], data={"top_k": "0"}),
        422,
        "invalid_field",
    )
    _error(client.post("/verify", files=[_file(photos, "obama.jpg", "image_a")]), 422, "invalid_field")
    _error(
        client.post(
            "/enroll",
            data={"subject_id": "x", "metadata": "[1]"},
            files=[_file(photos, "biden.jpg", "images")],
        ),
        422,
        "invalid_field",
    )
    _error(client.delete("/subjects/x/faces/99999999999999999999999"), 422, "invalid_field")
    _error(client.get("/no-such-route"), 404, "not_found")


def test_api_keys(keyed: TestClient, photos: list[Path]) -> None:
    _error(keyed.get("/subjects"), 401, "unauthorized")
    _error(keyed.get("/subjects", headers={"X-API-Key": "wrong"}), 401, "unauthorized")
    _error(keyed.get("/subjects", headers={"X-API-Key": KEY_STAFF}), 403, "forbidden")
    enrolled = keyed.post(
        "/enroll",
        headers={"X-API-Key": KEY_STAFF},
        data={"subject_id": "biden", "collection": "staff", "create_collection": "true"},
        files=[_file(photos, "biden.jpg", "images")],
    )
    assert enrolled.status_code == 201, enrolled.text
    assert keyed.get("/collections", headers={"X-API-Key": KEY_STAFF}).json()[0]["name"] == "staff"
    assert (
        keyed.get("/subjects", params={"collection": "staff"}, headers={"X-API-Key": KEY_ALL}).json()["total"]
        == 1
    )
    assert keyed.get("/health").status_code == 200


def test_metrics_count_requests_faces_and_gallery(client: TestClient, photos: list[Path]) -> None:
    client.post("/enroll", data={"subject_id": "biden"}, files=[_file(photos, "biden.jpg", "images")])
    client.post("/identify", files=[_file(photos, "biden.jpg")])
    client.get("/subjects/nobody", params={"collection": "none"})
    text = client.get("/metrics").text
    lines = text.splitlines()
    assert 'faceverify_requests_total{method="POST",route="/enroll",status="201"} 1.0' in lines
    assert 'faceverify_requests_total{method="GET",route="/subjects/{subject_id}",status="404"} 1.0' in lines
    assert 'faceverify_request_seconds_count{method="POST",route="/identify"} 1.0' in lines
    assert "faceverify_faces_embedded_total 2.0" in lines
    assert 'faceverify_gallery_faces{collection="default"} 1.0' in lines
    assert "faceverify_queue_depth 0.0" in lines


def test_a_full_queue_answers_503_with_retry_after(
    models_dir: Path, tmp_path: Path, photos: list[Path]
) -> None:
    settings = Settings(models_dir=models_dir, data_dir=tmp_path / "data", max_pending_requests=0)
    with TestClient(create_app(settings)) as busy:
        response = busy.post("/detect", files=[_file(photos, "biden.jpg")])
        _error(response, 503, "overloaded")
        assert response.headers["Retry-After"] == "1"


def test_collections_are_created_once(client: TestClient) -> None:
    assert client.post("/collections", data={"name": "staff"}).status_code == 201
    _error(client.post("/collections", data={"name": "staff"}), 409, "collection_exists")
    assert client.delete("/collections/staff").json() == {"deleted_faces": 0}
    _error(client.delete("/collections/staff"), 404, "collection_not_found")


def test_a_models_calibration_curves_are_public_and_match_its_stated_points(keyed: TestClient) -> None:
    ready = keyed.get("/ready").json()
    model = ready["models"][0]
    answer = keyed.get(f"/models/{model['model_id']}/curves")  # no key: model facts, as /ready
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["model_id"] == model["model_id"] and body["calibrated_on"] == model["calibrated_on"]
    cosine = next(curve for curve in body["curves"] if curve["score"] == "cosine")
    thresholds = [p["threshold"] for p in cosine["points"]]
    assert len(thresholds) > 10 and thresholds == sorted(thresholds)
    far = [p["far"] for p in cosine["points"]]
    assert far == sorted(far, reverse=True)  # FAR falls as the threshold rises
    # The stated default point lies on the curve: its FAR between the FARs of the points around it.
    point = model["verify"]
    around = [p for p in cosine["points"] if p["threshold"] <= point["threshold"]]
    assert around and around[-1]["far"] >= point["far"]
    _error(keyed.get("/models/no-such-model/curves"), 404, "model_not_found")


def test_the_console_page_is_public_and_locked_down(client: TestClient) -> None:
    page = client.get("/ui")
    assert page.status_code == 200 and "faceverify" in page.text
    policy = page.headers["content-security-policy"]
    assert "default-src 'self'" in policy and "frame-ancestors 'none'" in policy
    assert page.headers["x-frame-options"] == "DENY" and page.headers["referrer-policy"] == "no-referrer"
    script = client.get("/ui/assets/console.js")
    assert script.status_code == 200 and "X-API-Key" in script.text
    assert "localStorage" not in script.text  # the key lives for the browser session only


def test_subjects_are_searched_through_the_api(client: TestClient, photos: list[Path]) -> None:
    for subject_id, name in (("ann", "Ann Smith"), ("bob", "Bob Jones")):
        enrolled = client.post(
            "/enroll",
            data={"subject_id": subject_id, "name": name},
            files=[_file(photos, "obama.jpg", "images")],
        )
        assert enrolled.status_code == 201, enrolled.text
    found = client.get("/subjects", params={"search": "JONES"}).json()
    assert found["total"] == 1 and [s["subject_id"] for s in found["subjects"]] == ["bob"]
    assert client.get("/subjects", params={"search": "%"}).json()["total"] == 0
    _error(client.get("/subjects", params={"search": ""}), 422, "invalid_field")
