"""The subjects API: change a subject, list its faces, the same photo twice, the last face deleted or
moved, on real photos and a real gallery."""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.config import Settings
from app.gallery.sqlite import DATABASE_NAME
from app.main import create_app
from tests.conftest import photo


@pytest.fixture
def client(models_dir: Path, tmp_path: Path) -> Iterator[TestClient]:
    with TestClient(create_app(Settings(models_dir=models_dir, data_dir=tmp_path / "data"))) as c:
        yield c


def _enroll(client: TestClient, subject: str, *images: bytes, **data: str) -> dict:  # type: ignore[type-arg]
    files = [("images", (f"{i}.jpg", image, "image/jpeg")) for i, image in enumerate(images)]
    answer = client.post("/enroll", data={"subject_id": subject, **data}, files=files)
    assert answer.status_code == 201, answer.text
    return answer.json()  # type: ignore[no-any-return]


def test_a_subject_is_changed_by_patch(client: TestClient, photos: list[Path]) -> None:
    _enroll(
        client,
        "ann",
        photo(photos, "obama.jpg").read_bytes(),
        name="Ann",
        metadata='{"team": "a", "floor": 2}',
    )
    merged = client.patch("/subjects/ann", json={"metadata": {"floor": None, "badge": 7}})
    assert merged.status_code == 200, merged.text
    assert merged.json()["metadata"] == {"team": "a", "badge": 7} and merged.json()["name"] == "Ann"
    replaced = client.patch(
        "/subjects/ann", json={"name": None, "metadata": {"x": 1}, "replace_metadata": True}
    )
    assert replaced.json()["metadata"] == {"x": 1} and replaced.json()["name"] is None
    assert client.get("/subjects/ann").json()["metadata"] == {"x": 1}
    for body, field in (
        (b'{"metadata": {"a": NaN}}', "body"),
        (b'{"nmae": "typo"}', "nmae"),
        (b"[1]", "body"),
    ):
        refused = client.patch("/subjects/ann", content=body, headers={"content-type": "application/json"})
        assert refused.status_code == 422 and refused.json()["error"]["field"] == field, refused.text
    huge = client.patch("/subjects/ann", json={"metadata": {f"k{i}": "v" * 1000 for i in range(70)}})
    assert huge.status_code == 422 and huge.json()["error"]["field"] == "metadata"
    assert client.patch("/subjects/nobody", json={"name": "x"}).status_code == 404


def test_a_subjects_faces_say_where_they_came_from(client: TestClient, photos: list[Path]) -> None:
    first, second = photo(photos, "obama.jpg").read_bytes(), photo(photos, "obama2.jpg").read_bytes()
    enrolled = _enroll(client, "ann", first, second)
    listed = client.get("/subjects/ann/faces").json()["faces"]
    assert [f["face_id"] for f in listed] == enrolled["face_ids"]
    assert [f["image_sha256"] for f in listed] == [hashlib.sha256(d).hexdigest() for d in (first, second)]
    assert listed[0]["box"] == pytest.approx(enrolled["faces"][0]["box"])
    assert listed[0]["model_id"] == enrolled["model_id"]


def test_the_same_photo_twice_is_stored_once(client: TestClient, photos: list[Path]) -> None:
    image = photo(photos, "obama.jpg").read_bytes()
    first = _enroll(client, "ann", image)
    again = _enroll(client, "ann", image, image)
    assert again["face_ids"] == first["face_ids"] * 2
    assert [f["duplicate"] for f in again["faces"]] == [True, True]
    twice = _enroll(client, "bob", image, image)  # another subject may hold the same photo, once
    assert twice["face_ids"][0] == twice["face_ids"][1] != first["face_ids"][0]
    assert [f["duplicate"] for f in twice["faces"]] == [False, True]
    assert [c["faces"] for c in client.get("/collections").json()] == [2]  # the index holds two faces


def test_the_last_face_takes_its_subject_with_it(client: TestClient, photos: list[Path]) -> None:
    two = _enroll(
        client, "ann", photo(photos, "obama.jpg").read_bytes(), photo(photos, "obama2.jpg").read_bytes()
    )
    first, second = two["face_ids"]
    assert client.delete(f"/subjects/ann/faces/{first}").json() == {
        "deleted_faces": 1,
        "subject_deleted": False,
    }
    assert client.delete(f"/subjects/ann/faces/{second}").json() == {
        "deleted_faces": 1,
        "subject_deleted": True,
    }
    assert client.get("/subjects/ann").status_code == 404
    assert client.get("/subjects").json()["total"] == 0


def test_a_face_moves_to_another_subject(client: TestClient, photos: list[Path]) -> None:
    biden = photo(photos, "biden.jpg").read_bytes()
    wrong = _enroll(client, "obama", photo(photos, "obama.jpg").read_bytes(), biden)
    moved = client.post(f"/subjects/obama/faces/{wrong['face_ids'][1]}/move", json={"subject_id": "biden"})
    assert moved.status_code == 200 and moved.json()["subject_deleted"] is False, moved.text
    found = client.post("/identify", files=[("image", ("b.jpg", biden, "image/jpeg"))]).json()
    assert found["candidates"][0]["subject_id"] == "biden"
    assert client.get("/subjects/obama").json()["face_ids"] == wrong["face_ids"][:1]
    last = client.post(f"/subjects/obama/faces/{wrong['face_ids'][0]}/move", json={"subject_id": "biden"})
    assert last.json()["subject_deleted"] is True
    assert client.get("/subjects/biden").json()["face_ids"] == sorted(wrong["face_ids"])
    refused = client.post(f"/subjects/biden/faces/{wrong['face_ids'][0]}/move", json={"subject_id": "a/b"})
    assert refused.status_code == 422 and refused.json()["error"]["field"] == "subject_id"


def test_thumbnails_are_kept_only_when_asked_and_go_with_their_face(
    models_dir: Path, tmp_path: Path, photos: list[Path]
) -> None:
    image = photo(photos, "obama.jpg").read_bytes()
    with TestClient(create_app(Settings(models_dir=models_dir, data_dir=tmp_path / "off"))) as off:
        (face_id,) = _enroll(off, "ann", image)["face_ids"]
        missing = off.get(f"/subjects/ann/faces/{face_id}/thumbnail")
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "thumbnail_not_stored"
    settings = Settings(models_dir=models_dir, data_dir=tmp_path / "on", store_face_thumbnails=True)
    with TestClient(create_app(settings)) as on:
        first, second = _enroll(on, "ann", image, photo(photos, "obama2.jpg").read_bytes())["face_ids"]
        answer = on.get(f"/subjects/ann/faces/{first}/thumbnail")
        assert answer.status_code == 200 and answer.headers["content-type"] == "image/jpeg"
        thumbnail = answer.content
        assert 2_000 < len(thumbnail) < 60_000
        # A later model can find the face again in it: one face, half the side, and the same person.
        found = on.post("/detect", files=[("image", ("t.jpg", thumbnail, "image/jpeg"))]).json()["faces"]
        assert len(found) == 1 and 80 < found[0]["box"][2] - found[0]["box"][0] < 200
        same = on.post(
            "/verify", data={"subject_id": "ann"}, files=[("image", ("t.jpg", thumbnail, "image/jpeg"))]
        )
        assert same.json()["match"] is True and same.json()["similarity"] > 0.9
        assert on.delete(f"/subjects/ann/faces/{first}").status_code == 200
        assert on.get(f"/subjects/ann/faces/{first}/thumbnail").json()["error"]["code"] == "face_not_found"
        assert on.get(f"/subjects/ann/faces/{second}/thumbnail").status_code == 200
    with sqlite3.connect(tmp_path / "on" / DATABASE_NAME) as db:  # the JPEG itself went with its face
        assert db.execute("SELECT face_id FROM face_thumbnails").fetchall() == [(second,)]
