"""The stores, SQLite and PostgreSQL alike: unique subjects per collection, cascading deletes, ids never
reused, the changes feed; and what is SQLite's own (WAL, older files)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from app.gallery.errors import CollectionExists, CollectionNotFound, FaceNotFound, SubjectNotFound
from app.gallery.sqlite import DATABASE_NAME, SQLiteStore
from app.gallery.store import Enrollment, GalleryStore, NewFace
from tests.gallery.vectors import faces_of, identities


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[GalleryStore]:
    """Each store the gallery runs on: the embedded file, and a database on a real PostgreSQL server."""
    if request.param == "sqlite":
        opened: GalleryStore = SQLiteStore(tmp_path)
    else:
        from app.gallery.postgres import PostgresStore

        opened = PostgresStore(request.getfixturevalue("postgres_url"))
    yield opened
    opened.close()


def test_the_database_runs_in_wal_mode(tmp_path: Path) -> None:
    SQLiteStore(tmp_path).close()
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
    store = SQLiteStore(tmp_path)
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
    reopened = SQLiteStore(tmp_path)
    assert [s.external_id for s in reopened.subjects(collection)[0]] == ["kept"]
    with pytest.raises(SubjectNotFound):
        reopened.subject(collection, "empty")


def test_every_write_is_in_the_changes_feed_in_commit_order(store: GalleryStore) -> None:
    collection = store.create_collection("c", "m")
    vectors = faces_of(identities(3))
    (first,) = store.enroll(collection, [Enrollment("ann", [NewFace(vectors[0]), NewFace(vectors[1])])])
    (again,) = store.enroll(collection, [Enrollment("bo", [NewFace(vectors[2])])])
    assert 0 < first.seq < again.seq == store.last_seq()
    store.delete_face(collection, "ann", first[0])
    store.delete_collection("c")
    changes = store.changes_since(0)
    assert [(c.op, c.face_id) for c in changes] == [
        ("collection", None), ("add", first[0]), ("add", first[1]), ("add", again[0]),
        ("remove", first[0]), ("collection", None),
    ]  # fmt: skip
    assert [c.seq for c in changes] == sorted(c.seq for c in changes)
    assert store.changes_since(first.seq) == [c for c in changes if c.seq > first.seq]
    assert store.prune_changes(again.seq) == 3 and store.pruned_before() == again.seq
    assert store.changes_since(0)[0].seq == again.seq


def test_subjects_are_searched_by_id_or_name_taking_like_characters_literally(store: GalleryStore) -> None:
    collection = store.create_collection("people", "m")
    vectors = faces_of(identities(5))
    named = [
        ("ann-1", "Ann Smith"),
        ("bob_2", None),
        ("carl", "Bob%Carl"),
        ("dora", "Élodie Dora"),
        ("50%", None),
    ]
    store.enroll(
        collection,
        [Enrollment(ext, [NewFace(v)], name) for (ext, name), v in zip(named, vectors, strict=True)],
    )

    def found(text: str) -> list[str]:
        page, total = store.subjects(collection, search=text)
        assert total == len(page)
        return [s.external_id for s in page]

    assert found("ANN") == ["ann-1"]  # by id, either case
    assert found("smith") == ["ann-1"]  # by name
    assert found("bob") == ["bob_2", "carl"]  # one by id, one by name
    assert found("_") == ["bob_2"]  # not LIKE's any-character
    assert found("%") == ["carl", "50%"]  # not LIKE's anything
    assert found("zed") == []
    assert found("Élodie") == ["dora"]  # beyond ASCII, as written
    page, total = store.subjects(collection, offset=1, limit=1, search="o")
    assert total == 3 and [s.external_id for s in page] == ["carl"]  # bob_2, carl, dora
