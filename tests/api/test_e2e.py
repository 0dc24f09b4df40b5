"""End to end against a real uvicorn server on a loopback port: enroll, identify, verify, delete, restart."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.assets import LFW_DEV
from tests.server import running_server


def _people() -> dict[str, list[Path]]:
    """Three LFW people with at least two photos each."""
    images = LFW_DEV / "images"
    if not images.is_dir():
        pytest.skip(f"needs LFW's development images in {images} (see README: tests and their data)")
    people: dict[str, list[Path]] = {}
    for folder in sorted(images.iterdir()):
        files = sorted(folder.glob("*.jpg"))
        if len(files) >= 2:
            people[folder.name] = files[:2]
        if len(people) == 3:
            break
    return people


def _upload(field: str, path: Path) -> tuple[str, tuple[str, bytes, str]]:
    return (field, (path.name, path.read_bytes(), "image/jpeg"))


def test_a_real_server_enrolls_identifies_verifies_and_survives_a_restart(
    models_dir: Path, tmp_path: Path
) -> None:
    people = _people()
    data = tmp_path / "data"
    with running_server(models_dir, data) as url:
        for person, (first, _) in people.items():
            response = httpx.post(
                f"{url}/enroll",
                data={"subject_id": person, "allow_largest": "true"},
                files=[_upload("images", first)],
                timeout=30,
            )
            assert response.status_code == 201, response.text
        for person, (_, second) in people.items():
            found = httpx.post(f"{url}/identify", files=[_upload("image", second)], timeout=30).json()
            assert found["match"] and found["candidates"][0]["subject_id"] == person, found
        a, b, _ = people.values()
        same = httpx.post(
            f"{url}/verify", files=[_upload("image_a", a[0]), _upload("image_b", a[1])], timeout=30
        )
        different = httpx.post(
            f"{url}/verify", files=[_upload("image_a", a[0]), _upload("image_b", b[0])], timeout=30
        )
        assert same.json()["match"] is True and different.json()["match"] is False
        removed = list(people)[2]
        assert httpx.delete(f"{url}/subjects/{removed}", timeout=30).json() == {"deleted_faces": 1}
        assert httpx.get(f"{url}/subjects/{removed}", timeout=30).status_code == 404
    with running_server(models_dir, data) as url:
        page = httpx.get(f"{url}/subjects", timeout=30).json()
        assert sorted(s["subject_id"] for s in page["subjects"]) == sorted(list(people)[:2])
        person, (_, second) = next(iter(people.items()))
        found = httpx.post(f"{url}/identify", files=[_upload("image", second)], timeout=30).json()
        assert found["candidates"][0]["subject_id"] == person
        assert httpx.get(f"{url}/ready", timeout=30).json()["collections"] == 1
