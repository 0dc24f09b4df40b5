"""Real photos with several people: which face a request uses, enroll's dominance rule, /identify of
every face, errors that name the image at fault, and collections that are not created by a typo."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from app.config import Settings
from app.face.choice import DOMINANCE
from app.main import create_app
from tests.assets import devtest_people
from tests.conftest import photo


@pytest.fixture
def client(models_dir: Path, tmp_path: Path) -> Iterator[TestClient]:
    with TestClient(create_app(Settings(models_dir=models_dir, data_dir=tmp_path / "data"))) as c:
        yield c


def _upload(data: bytes, field: str, name: str = "photo.jpg") -> tuple[str, tuple[str, bytes, str]]:
    return (field, (name, data, "application/octet-stream"))


def _people(count: int) -> list[list[Path]]:
    people = devtest_people(count)
    if len(people) < count:
        pytest.skip(f"lfw-dev's DevTest people are not in ../shared/data/lfw-dev ({len(people)} found)")
    return people


def _collage(paths: list[Path]) -> bytes:
    """The centre of each LFW photo (where its subject is) side by side, two by two, as one JPEG."""
    side = 150
    sheet = Image.new("RGB", (2 * side, 2 * side))
    for i, path in enumerate(paths):
        with Image.open(path) as image:
            left, top = (image.width - side) // 2, (image.height - side) // 2
            sheet.paste(
                image.convert("RGB").crop((left, top, left + side, top + side)),
                ((i % 2) * side, (i // 2) * side),
            )
    buffer = io.BytesIO()
    sheet.resize((4 * side, 4 * side), Image.Resampling.BICUBIC).save(buffer, "JPEG", quality=92)
    return buffer.getvalue()


def test_a_dominant_face_is_enrolled_without_asking(client: TestClient) -> None:
    refused_dominant, taken_from_groups = [], 0
    for person in _people(20):
        data = person[0].read_bytes()
        found = client.post("/detect", files=[_upload(data, "image")]).json()["faces"]
        areas = [(f["box"][2] - f["box"][0]) * (f["box"][3] - f["box"][1]) for f in found]
        answer = client.post(
            "/enroll", data={"subject_id": person[0].parent.name}, files=[_upload(data, "images")]
        )
        dominant = len(areas) < 2 or areas[0] >= DOMINANCE * areas[1]
        if answer.status_code != 201:
            assert answer.json()["error"]["code"] == "many_faces", answer.text
            if dominant:
                refused_dominant.append(person[0].name)
            continue
        stored = answer.json()["faces"][0]
        assert stored["field"] == "images[0]" and stored["faces_found"] == len(found)
        assert stored["box"] == pytest.approx(found[0]["box"], abs=0.01)  # the largest face was stored
        taken_from_groups += len(found) > 1
    assert refused_dominant == []
    assert taken_from_groups >= 1, "no photo among the 20 had a background face: the rule went untested"


def test_identify_names_every_face_of_a_collage(client: TestClient) -> None:
    people = _people(4)
    for person in people:
        enrolled = client.post(
            "/enroll", data={"subject_id": person[0].parent.name, "allow_largest": "true"},
            files=[_upload(person[1].read_bytes(), "images")],
        )  # fmt: skip
        assert enrolled.status_code == 201, enrolled.text
    collage = _collage([person[0] for person in people])
    answer = client.post("/identify", data={"faces": "all"}, files=[_upload(collage, "image")])
    assert answer.status_code == 200, answer.text
    body = answer.json()
    named = {f["candidates"][0]["subject_id"] for f in body["faces"] if f["match"]}
    assert named == {person[0].parent.name for person in people}
    assert len(body["faces"]) == 4 and body["image"]["faces_found"] == 4
    # The single-face fields are the largest face's, as without faces=all.
    alone = client.post("/identify", files=[_upload(collage, "image")]).json()
    assert alone["faces"] is None
    assert [c["subject_id"] for c in alone["candidates"]] == [c["subject_id"] for c in body["candidates"]]
    assert [c["score"] for c in alone["candidates"]] == pytest.approx(
        [c["score"] for c in body["candidates"]]
    )


def test_a_named_face_is_used(client: TestClient, photos: list[Path]) -> None:
    group = photo(photos, "t1.jpg").read_bytes()
    faces = client.post("/detect", files=[_upload(group, "image")]).json()["faces"]
    x1, y1, x2, y2 = faces[2]["box"]
    answer = client.post(
        "/verify", data={"face_a": "2", "face_b": f"{x1 + 2},{y1 + 2},{x2 - 2},{y2 - 2}"},
        files=[_upload(group, "image_a"), _upload(group, "image_b")],
    )  # fmt: skip
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["image_a"]["face"]["box"] == body["image_b"]["face"]["box"] == faces[2]["box"]
    assert body["similarity"] == pytest.approx(1.0, abs=1e-4)
    other = client.post(
        "/verify",
        data={"face_a": "2", "face_b": "3"},
        files=[_upload(group, "image_a"), _upload(group, "image_b")],
    ).json()
    assert other["similarity"] < body["similarity"] - 0.05
    with Image.open(io.BytesIO(group)) as image:
        cx, cy = image.width / 2, image.height / 2
    nearest = min(
        faces,
        key=lambda f: (
            ((f["box"][0] + f["box"][2]) / 2 - cx) ** 2 + ((f["box"][1] + f["box"][3]) / 2 - cy) ** 2
        ),
    )
    central = client.post("/identify", data={"face": "central"}, files=[_upload(group, "image")]).json()
    assert central["image"]["face"]["box"] == nearest["box"] != faces[0]["box"]
    refused = client.post(
        "/verify", data={"face_a": "99"}, files=[_upload(group, "image_a"), _upload(group, "image_b")]
    )
    assert refused.status_code == 422 and refused.json()["error"]["field"] == "face_a"


def test_close_faces_are_refused_with_the_image_and_their_boxes(
    client: TestClient, photos: list[Path]
) -> None:
    one, group = photo(photos, "obama.jpg").read_bytes(), photo(photos, "t1.jpg").read_bytes()
    answer = client.post(
        "/enroll", data={"subject_id": "x"}, files=[_upload(one, "images"), _upload(group, "images")]
    )
    assert answer.status_code == 422
    error = answer.json()["error"]
    assert error["code"] == "many_faces" and error["field"] == "images[1]"
    assert len(error["boxes"]) == 6 and all(len(box) == 4 for box in error["boxes"])
    chosen = client.post("/enroll", data={"subject_id": "x", "face": "1"}, files=[_upload(group, "images")])
    assert chosen.status_code == 201 and chosen.json()["faces"][0]["box"] == pytest.approx(
        error["boxes"][1], abs=0.1
    )


def test_errors_name_the_image_at_fault(client: TestClient, photos: list[Path]) -> None:
    face = photo(photos, "obama.jpg").read_bytes()
    blank = io.BytesIO()
    Image.new("RGB", (200, 200), (90, 90, 90)).save(blank, "PNG")
    no_face = client.post("/verify", files=[_upload(face, "image_a"), _upload(blank.getvalue(), "image_b")])
    assert no_face.status_code == 422
    assert no_face.json()["error"] == {
        "code": "no_face",
        "message": no_face.json()["error"]["message"],
        "field": "image_b",
    }
    corrupt = client.post(
        "/enroll", data={"subject_id": "x"},
        files=[_upload(face, "images"), _upload(face, "images"), _upload(b"not an image", "images")],
    )  # fmt: skip
    assert corrupt.status_code == 400 and corrupt.json()["error"]["field"] == "images[2]"
    invalid = client.post("/identify", data={"top_k": "0"}, files=[_upload(face, "image")])
    assert invalid.status_code == 422 and invalid.json()["error"]["field"] == "top_k"


def test_a_missing_collection_is_not_created_by_enroll_unless_asked(
    client: TestClient, photos: list[Path]
) -> None:
    face = photo(photos, "obama.jpg").read_bytes()
    assert [c["name"] for c in client.get("/collections").json()] == ["default"]
    typo = client.post(
        "/enroll", data={"subject_id": "x", "collection": "staf"}, files=[_upload(face, "images")]
    )
    assert typo.status_code == 404 and typo.json()["error"]["code"] == "collection_not_found"
    created = client.post(
        "/enroll", data={"subject_id": "x", "collection": "staff", "create_collection": "true"},
        files=[_upload(face, "images")],
    )  # fmt: skip
    assert created.status_code == 201
    assert client.delete("/collections/default").status_code == 200
    assert "default" in [c["name"] for c in client.get("/collections").json()]  # it always exists
