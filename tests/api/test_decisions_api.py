"""The operating points of /verify and /identify through the API, on the stock model's calibration."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.config import Settings
from app.face.manifest import load_manifest
from app.main import create_app
from tests.conftest import photo


@pytest.fixture
def client(models_dir: Path, tmp_path: Path) -> Iterator[TestClient]:
    artifact = load_manifest(models_dir).artifact("embedder")
    if artifact.calibration is None or artifact.cohort is None:
        pytest.fail("the stock model ships a calibration and a cohort (training/calibrations/, cohorts/)")
    with TestClient(create_app(Settings(models_dir=models_dir, data_dir=tmp_path / "data"))) as c:
        yield c


def _file(photos: list[Path], name: str, field: str = "image") -> tuple[str, tuple[str, bytes, str]]:
    return (field, (name, photo(photos, name).read_bytes(), "application/octet-stream"))


def _pair(photos: list[Path], a: str, b: str) -> list[tuple[str, tuple[str, bytes, str]]]:
    return [_file(photos, a, "image_a"), _file(photos, b, "image_b")]


def _enroll(client: TestClient, photos: list[Path], subject: str, *names: str) -> None:
    files = [_file(photos, name, "images") for name in names]
    response = client.post("/enroll", data={"subject_id": subject, "allow_largest": "true"}, files=files)
    assert response.status_code == 201, response.text


def test_verify_decides_at_the_stated_far_by_default(client: TestClient, photos: list[Path]) -> None:
    ready = client.get("/ready").json()
    body = client.post("/verify", files=_pair(photos, "obama.jpg", "obama2.jpg")).json()
    point = body["operating_point"]
    assert point["rule"] == "far" and point["score"] == "cosine" and point["comparisons"] == 1
    assert point["far"] == pytest.approx(1e-3, rel=1e-6) and body["threshold_far"] == pytest.approx(1e-3)
    assert 0.5 < point["tar"] < 1.0 and "pairsDevTrain.txt" in point["calibrated_on"]
    assert body["threshold"] == point["threshold"] == ready["verify"]["threshold"] == ready["threshold"]
    assert body["score"] == body["similarity"] and body["match"] is True
    different = client.post("/verify", files=_pair(photos, "obama.jpg", "biden.jpg")).json()
    assert different["match"] is False and different["score"] < different["threshold"]


def test_verify_takes_another_far_a_threshold_or_a_named_point(
    client: TestClient, photos: list[Path]
) -> None:
    files = _pair(photos, "obama.jpg", "obama2.jpg")
    default = client.post("/verify", files=files).json()["threshold"]
    looser = client.post("/verify", files=files, data={"far": "0.01"}).json()
    assert looser["threshold"] < default and looser["operating_point"]["far"] == pytest.approx(0.01)
    given = client.post("/verify", files=files, data={"threshold": "0.99"}).json()
    assert given["operating_point"]["rule"] == "threshold" and given["threshold"] == 0.99
    assert given["match"] is False and given["threshold_far"] < 1e-6
    named = client.post("/verify", files=files, data={"operating_point": "max_accuracy"}).json()
    assert named["operating_point"]["rule"] == "max_accuracy" and named["threshold"] < default
    normalised = client.post("/verify", files=files, data={"normalise": "true"}).json()
    assert normalised["operating_point"]["score"] == "snorm" and normalised["match"] is True
    assert normalised["score"] != normalised["similarity"]


@pytest.mark.parametrize(
    ("data", "code"),
    [
        ({"far": "1e-9"}, "operating_point_unsupported"),  # below what the calibration supports
        ({"far": "0.01", "threshold": "0.9"}, "operating_point_unsupported"),
        ({"far": "0"}, "invalid_field"),
        ({"threshold": "nan"}, "invalid_field"),
        ({"operating_point": "lucky"}, "invalid_field"),
    ],
)
def test_unsupported_operating_points_are_refused_before_any_work(
    client: TestClient, photos: list[Path], data: dict[str, str], code: str
) -> None:
    response = client.post("/verify", files=_pair(photos, "obama.jpg", "obama2.jpg"), data=data)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == code


def test_verify_against_a_subject_holds_the_far_over_all_its_faces(
    client: TestClient, photos: list[Path]
) -> None:
    _enroll(client, photos, "obama", "obama.jpg", "obama2.jpg")
    single = client.post("/verify", files=_pair(photos, "obama.jpg", "obama3.jpg")).json()
    against = client.post("/verify", files=[_file(photos, "obama3.jpg")], data={"subject_id": "obama"}).json()
    point = against["operating_point"]
    assert point["comparisons"] == 2 and against["threshold"] > single["threshold"]
    assert against["threshold_far"] == pytest.approx(1e-3, rel=1e-6) and point["far"] < 1e-3
    assert against["match"] is True


def test_a_subject_whose_last_face_went_cannot_be_verified_against(
    client: TestClient, photos: list[Path]
) -> None:
    _enroll(client, photos, "obama", "obama.jpg")
    (face_id,) = client.get("/subjects/obama").json()["face_ids"]
    assert client.delete(f"/subjects/obama/faces/{face_id}").json()["subject_deleted"] is True
    for data in ({"subject_id": "obama"}, {"subject_id": "obama", "normalise": "true", "far": "0.01"}):
        response = client.post("/verify", files=[_file(photos, "obama2.jpg")], data=data)
        assert response.status_code == 404, response.text
        assert response.json()["error"]["code"] == "subject_not_found"


def test_identify_is_an_open_set_decision(client: TestClient, photos: list[Path]) -> None:
    _enroll(client, photos, "obama", "obama.jpg")
    _enroll(client, photos, "biden", "biden.jpg")
    found = client.post("/identify", files=[_file(photos, "obama3.jpg")]).json()
    assert found["match"] is True and found["candidates"][0]["subject_id"] == "obama"
    assert found["candidates"][0]["match"] is True
    point = found["operating_point"]
    assert point["rule"] == "fpir" and point["score"] == "snorm" and point["comparisons"] == 2
    assert found["fpir"] == pytest.approx(0.01, rel=1e-6) == point["false_accept_rate"]
    assert found["margin"] == pytest.approx(found["candidates"][0]["score"] - _second_score(client, photos))
    # A stranger: no candidate by default, the nearest miss on request.
    stranger = client.post("/identify", files=[_file(photos, "Tom_Hanks_54745.png")]).json()
    assert stranger["match"] is False and stranger["candidates"] == []
    misses = client.post(
        "/identify", files=[_file(photos, "Tom_Hanks_54745.png")], data={"include_misses": "true"}
    ).json()
    assert misses["match"] is False and len(misses["candidates"]) == 2
    assert all(c["match"] is False and c["score"] < misses["threshold"] for c in misses["candidates"])


def _second_score(client: TestClient, photos: list[Path]) -> float:
    body = client.post(
        "/identify", files=[_file(photos, "obama3.jpg")], data={"include_misses": "true"}
    ).json()
    return float(body["candidates"][1]["score"])


def test_identify_threshold_follows_the_fpir_and_the_collection_size(
    client: TestClient, photos: list[Path]
) -> None:
    _enroll(client, photos, "obama", "obama.jpg")
    probe = [_file(photos, "obama3.jpg")]
    one = client.post("/identify", files=probe).json()
    strict = client.post("/identify", files=probe, data={"fpir": "0.001"}).json()
    loose = client.post("/identify", files=probe, data={"fpir": "0.1"}).json()
    assert loose["threshold"] < one["threshold"] < strict["threshold"]
    _enroll(client, photos, "biden", "biden.jpg")
    _enroll(client, photos, "hanks", "Tom_Hanks_54745.png")
    three = client.post("/identify", files=probe).json()
    assert three["operating_point"]["comparisons"] == 3 and three["threshold"] > one["threshold"]
    raw = client.post("/identify", files=probe, data={"normalise": "false"}).json()
    assert raw["operating_point"]["score"] == "cosine"
    assert raw["candidates"][0]["score"] == raw["candidates"][0]["similarity"]
    both = client.post("/identify", files=probe, data={"fpir": "0.01", "threshold": "0.9"})
    assert both.status_code == 422 and both.json()["error"]["code"] == "operating_point_unsupported"
    tiny = client.post("/identify", files=probe, data={"fpir": "5e-324"})
    assert tiny.status_code == 422 and tiny.json()["error"]["code"] == "invalid_field"


def test_ready_states_the_operating_points(client: TestClient) -> None:
    ready = client.get("/ready").json()
    assert ready["verify"]["rule"] == "far" and ready["verify"]["far"] == pytest.approx(1e-3)
    assert ready["identify_fpir"] == 0.01 and ready["score_normalisation"] is True
    assert ready["threshold_calibrated"] is True
