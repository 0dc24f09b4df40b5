"""A full disk: writes are refused with 507 and roll back, reads go on, deletes free space, shutdown
succeeds without its snapshots, and leftovers of a cut-short snapshot are cleaned up at start."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from app.api.errors import status_of
from app.gallery.errors import InsufficientStorage
from app.gallery.gallery import SNAPSHOT_DIR, Gallery
from app.gallery.store import Enrollment, NewFace
from tests.gallery.vectors import DIM, faces_of, identities

MODEL = "model-a"


def test_a_full_database_refuses_writes_and_keeps_serving(tmp_path: Path) -> None:
    gallery = Gallery(tmp_path, MODEL, DIM)
    faces = faces_of(identities(400))
    gallery.enroll("default", [Enrollment(f"s{i}", [NewFace(v)]) for i, v in enumerate(faces[:10])])
    db = gallery.store._connection()  # this thread's connection: the one the writes below use
    (pages,) = db.execute("PRAGMA page_count").fetchone()
    db.execute(f"PRAGMA max_page_count = {pages}")  # SQLite's own SQLITE_FULL, as on a full disk
    big = [Enrollment(f"b{i}", [NewFace(v)], metadata={"pad": "x" * 4000}) for i, v in enumerate(faces[10:])]
    with pytest.raises(InsufficientStorage, match="disk is full") as refused:
        gallery.enroll("default", big)
    assert status_of(refused.value) == 507
    # Nothing half-written: the ten faces before are all there is, and they are still found.
    assert gallery.index_size("default") == 10
    assert gallery.subjects("default")[1] == 10
    (found,) = gallery.identify("default", faces[3:4], top_k=1)
    assert found[0].subject_id == "s3"
    # Deleting still works, and frees room for a new enrollment.
    assert len(gallery.delete_subject("default", "s0")) == 1
    gallery.enroll("default", [Enrollment("after", [NewFace(faces[-1])])])
    assert gallery.subjects("default")[1] == 10


def test_shutdown_succeeds_when_snapshots_cannot_be_written(tmp_path: Path) -> None:
    gallery = Gallery(tmp_path, MODEL, DIM)
    gallery.enroll("default", [Enrollment("ann", [NewFace(faces_of(identities(1))[0])])])
    (tmp_path / SNAPSHOT_DIR).write_text("not a folder")  # the snapshot folder cannot be made
    gallery.save_snapshots()  # logs and returns: SQLite holds the truth
    (tmp_path / SNAPSHOT_DIR).unlink()
    again = Gallery(tmp_path, MODEL, DIM)
    assert again.startup.rebuilt == {"default": 1}


def test_leftovers_of_a_cut_short_snapshot_are_removed_at_start(tmp_path: Path) -> None:
    gallery = Gallery(tmp_path, MODEL, DIM)
    gallery.enroll("default", [Enrollment("ann", [NewFace(faces_of(identities(1))[0])])])
    gallery.save_snapshots()
    folder = tmp_path / SNAPSHOT_DIR
    (folder / "collection-1.partial").write_bytes(b"")
    (folder / "collection-1.json.partial").write_text("{")
    reopened = Gallery(tmp_path, MODEL, DIM)
    assert not list(folder.glob("*.partial"))
    assert reopened.startup.loaded == {"default": 1}
    assert np.isfinite(reopened.index_ids("default")).all()
