"""`faceverify enroll` of a folder of people, against a real server and in-process, resumable from its
journal; `faceverify verify` and `identify` of single files."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from app.config import Settings
from app.main import create_app
from tests.assets import REPO, devtest_people
from tests.conftest import photo
from tests.server import running_server


def _folder(tmp_path: Path, photos: list[Path]) -> Path:
    people = devtest_people(3)
    if len(people) < 3:
        pytest.skip("lfw-dev's DevTest people are not in ../shared/data/lfw-dev")
    folder = tmp_path / "people"
    for person in people:
        (folder / person[0].parent.name).mkdir(parents=True)
        for path in person:
            shutil.copy(path, folder / person[0].parent.name / path.name)
    (folder / "crowd").mkdir()
    shutil.copy(photo(photos, "t1.jpg"), folder / "crowd" / "t1.jpg")  # six faces: refused
    (folder / "crowd" / "notes.jpg").write_bytes(b"not a photo")
    return folder


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "faceverify.cli", *args]
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)


def _journal(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_a_folder_is_enrolled_through_a_running_service_and_resumes(
    models_dir: Path, tmp_path: Path, photos: list[Path]
) -> None:
    folder = _folder(tmp_path, photos)
    journal = tmp_path / "journal.jsonl"
    with running_server(models_dir, tmp_path / "data") as url:
        done = _cli("enroll", "--images", str(folder), "--url", url, "--journal", str(journal))
        assert done.returncode == 0, done.stderr
        outcomes = _journal(journal)
        assert len(outcomes) == 8
        by_photo = {o["photo"]: o for o in outcomes}
        assert (by_photo["t1.jpg"]["code"], by_photo["notes.jpg"]["code"]) == ("many_faces", "bad_image")
        stored = [o for o in outcomes if o["status"] == "stored"]
        assert len(stored) >= 5 and all(o["status"] in ("stored", "refused") for o in outcomes)
        assert "bad_image: 1" in done.stdout
        listed = httpx.get(f"{url}/subjects", timeout=10).json()
        assert sorted(s["subject_id"] for s in listed["subjects"]) == sorted({o["person"] for o in stored})
        # Rerun: the journal holds every photo, so nothing is sent again.
        again = _cli("enroll", "--images", str(folder), "--url", url, "--journal", str(journal))
        assert again.returncode == 0 and len(_journal(journal)) == 8
        assert "8/8 photos" in again.stderr
        # Without the journal the service itself recognises the photos: duplicates, nothing stored twice.
        fresh = _cli(
            "enroll", "--images", str(folder), "--url", url, "--journal", str(tmp_path / "new.jsonl")
        )
        assert [o["status"] for o in _journal(tmp_path / "new.jsonl")].count("duplicate") == len(stored)
        assert httpx.get(f"{url}/collections", timeout=10).json()[0]["faces"] == len(stored), fresh.stderr
        # Single files.
        first, second = sorted((folder / stored[0]["person"]).iterdir())
        verified = _cli("verify", str(first), str(second), "--url", url)
        assert verified.returncode == 0 and json.loads(verified.stdout)["match"] is True
        found = _cli("identify", str(first), "--url", url)
        assert json.loads(found.stdout)["candidates"][0]["subject_id"] == stored[0]["person"]
        missing = _cli("enroll", "--images", str(folder), "--url", url, "--collection", "typo",
                       "--journal", str(tmp_path / "typo.jsonl"))  # fmt: skip
        assert missing.returncode == 1 and "collection_not_found" in missing.stderr


def test_a_folder_is_enrolled_in_process_on_a_data_directory(
    models_dir: Path, tmp_path: Path, photos: list[Path]
) -> None:
    folder = _folder(tmp_path, photos)
    data = tmp_path / "data"
    done = _cli("enroll", "--images", str(folder), "--data-dir", str(data), "--models", str(models_dir),
                "--journal", str(tmp_path / "j.jsonl"))  # fmt: skip
    assert done.returncode == 0, done.stderr
    stored = [o for o in _journal(tmp_path / "j.jsonl") if o["status"] == "stored"]
    assert len(stored) >= 5
    with TestClient(create_app(Settings(models_dir=models_dir, data_dir=data))) as client:
        listed = client.get("/subjects").json()
        assert sorted(s["subject_id"] for s in listed["subjects"]) == sorted({o["person"] for o in stored})
        assert sorted(i for s in listed["subjects"] for i in s["face_ids"]) == sorted(
            o["face_id"] for o in stored
        )
