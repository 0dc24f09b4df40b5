"""`faceverify gallery backup`: a consistent copy while writes go on, that restores into a working gallery."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import pytest

from app.gallery.backup import backup_gallery
from app.gallery.gallery import Gallery
from app.gallery.sqlite import DATABASE_NAME
from app.gallery.store import Enrollment, NewFace
from tests.assets import REPO
from tests.gallery.vectors import DIM, faces_of, identities

MODEL = "model-a"


def test_a_backup_taken_during_enrolments_restores_every_face_it_counted(tmp_path: Path) -> None:
    live = Gallery(tmp_path / "live", MODEL, DIM)
    centres = identities(400, seed=3)
    faces = faces_of(centres, seed=4)
    live.enroll("default", [Enrollment(f"s{i}", [NewFace(v)]) for i, v in enumerate(faces[:100])])
    done = threading.Event()

    def keep_enrolling() -> None:  # acknowledged writes land while the backup copies
        for i in range(100, 400):
            live.enroll("default", [Enrollment(f"s{i}", [NewFace(faces[i])])])
        done.set()

    writer = threading.Thread(target=keep_enrolling)
    writer.start()
    report = backup_gallery(tmp_path / "live", tmp_path / "backup.sqlite3")
    writer.join()
    assert done.is_set() and report.collections == 1 and 100 <= report.faces <= 400

    restored = tmp_path / "restored"
    restored.mkdir()
    (restored / DATABASE_NAME).write_bytes(report.path.read_bytes())
    gallery = Gallery(restored, MODEL, DIM)
    assert [faces for _, faces in gallery.collections()] == [report.faces]
    (candidates,) = gallery.identify("default", centres[:1], top_k=1)
    assert candidates[0].subject_id == "s0"


def test_the_backup_command_refuses_to_overwrite_and_names_a_missing_gallery(tmp_path: Path) -> None:
    Gallery(tmp_path / "data", MODEL, DIM).enroll("default", [Enrollment("ann", [NewFace(identities(1)[0])])])
    command = [sys.executable, "-m", "faceverify.cli", "gallery", "backup", "--data", str(tmp_path / "data")]
    first = subprocess.run(
        [*command, "--out", str(tmp_path / "b.sqlite3")], cwd=REPO, capture_output=True, text=True
    )
    assert first.returncode == 0 and "1 collections, 1 faces" in first.stdout, first.stderr
    again = subprocess.run(
        [*command, "--out", str(tmp_path / "b.sqlite3")], cwd=REPO, capture_output=True, text=True
    )
    assert again.returncode == 1 and "exists" in again.stderr
    with pytest.raises(FileNotFoundError, match="no gallery"):
        backup_gallery(tmp_path / "empty", tmp_path / "c.sqlite3")
