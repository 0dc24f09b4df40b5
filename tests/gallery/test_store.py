"""The SQLite store: WAL, unique subjects per collection, cascading deletes, ids never reused."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest

from app.gallery.errors import CollectionExists, CollectionNotFound, FaceNotFound, SubjectNotFound
from app.gallery.store import DATABASE_NAME, Enrollment, GalleryStore, NewFace
from tests.gallery.vectors import faces_of, identities


@pytest.fixture
def store(tmp_path: Path) -> GalleryStore:
    return GalleryStore(tmp_path)


def test_the_database_runs_in_wal_mode(store: GalleryStore, tmp_path: Path) -> None:
    mode = sqlite3.connect(tmp_path / DATABASE_NAME).execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"


def test_enroll_round_trips_embeddings_exactly(store: GalleryStore) -> None:
    collection = store.create_collection("staff", "model-a")
    vectors = faces_of(identities(3))
    added = store.enroll(
        collection,
        [Enrollment("ann", [NewFace(vectors[0], (1, 2, 3, 4), 0.99, "ab")], name="Ann"),
         Enrollment("bo", [NewFace(vectors[1]), NewFace(vectors[2])], metadata={"team": "x"})],
    )  # fmt: skip
    assert [len(group) for group in added] == [1, 2]
    ids, stored = store.embeddings(collection)
    assert ids.tolist() == [i for group in added for i in group]
    assert np.array_equal(stored, vectors)
    bo = store.subject(collection, "bo")
    assert bo.metadata == {"team": "x"} and bo.face_ids == tuple(added[1])


def test_subject_ids_are_unique_per_collection(store: GalleryStore) -> None:
    one = store.create_collection("one", "m")
    two = store.create_collection("two", "m")
    vector = faces_of(identities(1))[0]
    store.enroll(one, [Enrollment("ann", [NewFace(vector)], name="Ann")])
    store.enroll(one, [Enrollment("ann", [NewFace(vector)])])
    store.enroll(two, [Enrollment("ann", [NewFace(vector)], name="Other Ann")])
    assert len(store.subject(one, "ann").face_ids) == 2
    assert store.subject(one, "ann").name == "Ann"  # a later enrollment without a name keeps it
    assert store.subject(two, "ann").name == "Other Ann"
    page, total = store.subjects(one)
    assert total == 1 and page[0].external_id == "ann"
    with pytest.raises(CollectionExists):
        store.create_collection("one", "m")


def test_deletes_cascade_and_ids_are_never_reused(store: GalleryStore) -> None:
    collection = store.create_collection("c", "m")
    vectors = faces_of(identities(4))
    added = store.enroll(collection, [Enrollment(f"s{i}", [NewFace(v)]) for i, v in enumerate(vectors)])
    assert store.delete_subject(collection, "s3") == added[3]
    store.delete_face(collection, "s2", added[2][0])
    with pytest.raises(FaceNotFound):
        store.delete_face(collection, "s1", added[0][0])
    with pytest.raises(SubjectNotFound):
        store.subject(collection, "s3")
    (new_id,) = store.enroll(collection, [Enrollment("s5", [NewFace(vectors[0])])])[0]
    assert new_id > added[3][0], "a deleted face's id was handed out again"
    assert sorted(store.delete_collection("c")) == sorted([added[0][0], added[1][0], new_id])
    with pytest.raises(CollectionNotFound):
        store.collection("c")
    assert store.owners([new_id]) == {}


def test_a_failed_transaction_leaves_nothing_behind(store: GalleryStore) -> None:
    collection = store.create_collection("c", "m")
    good = NewFace(faces_of(identities(1))[0])
    with pytest.raises(ValueError):
        bad = NewFace(np.array(["x"]))  # type: ignore[arg-type]
        store.enroll(collection, [Enrollment("ok", [good]), Enrollment("bad", [bad])])
    assert store.subjects(collection)[1] == 0
    assert len(store.face_ids(collection)) == 0


def test_an_older_file_loses_the_subjects_its_deleted_faces_left_empty(tmp_path: Path) -> None:
    store = GalleryStore(tmp_path)
    collection = store.create_collection("staff", "model-a")
    store.enroll(collection, [Enrollment("kept", [NewFace(faces_of(identities(1))[0])])])
    store.close()
    with sqlite3.connect(tmp_path / DATABASE_NAME) as db:  # as a version 1 file could hold it
        db.execute(
            "INSERT INTO subjects (collection_id, external_id, metadata, created_at)"
            " VALUES (?, 'empty', '{}', '')",
            (collection.id,),
        )
        db.execute("PRAGMA user_version = 1")
    reopened = GalleryStore(tmp_path)
    assert [s.external_id for s in reopened.subjects(collection)[0]] == ["kept"]
    with pytest.raises(SubjectNotFound):
        reopened.subject(collection, "empty")
