"""SQLite, the gallery's source of truth: collections, subjects and their face embeddings."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from app.gallery.errors import (
    CollectionExists,
    CollectionNotFound,
    FaceNotFound,
    GalleryError,
    InsufficientStorage,
    MetadataTooLarge,
    SubjectNotFound,
    ThumbnailNotStored,
)

DATABASE_NAME = "gallery.sqlite3"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS collections (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE,
    model_id TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS subjects (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    collection_id INTEGER NOT NULL REFERENCES collections(id) ON DELETE CASCADE,
    external_id TEXT NOT NULL,
    name TEXT,
    metadata TEXT NOT NULL DEFAULT '{}',
    created_at TEXT NOT NULL,
    UNIQUE (collection_id, external_id)
);
-- AUTOINCREMENT: a deleted face's id is never handed out again, so an index can never confuse the two.
CREATE TABLE IF NOT EXISTS faces (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    subject_id INTEGER NOT NULL REFERENCES subjects(id) ON DELETE CASCADE,
    collection_id INTEGER NOT NULL REFERENCES collections(id) ON DELETE CASCADE,
    model_id TEXT NOT NULL,
    embedding BLOB NOT NULL,
    box TEXT,
    score REAL,
    image_sha256 TEXT,
    created_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS faces_by_collection ON faces (collection_id, id);
CREATE INDEX IF NOT EXISTS faces_by_subject ON faces (subject_id);
"""

# Schema versions after the first (PRAGMA user_version): each step runs once, in order, in one transaction.
_MIGRATIONS = (
    # 1: each face's cohort statistics for score normalisation, and which cohort they belong to.
    """
    ALTER TABLE faces ADD COLUMN cohort_mean REAL;
    ALTER TABLE faces ADD COLUMN cohort_sd REAL;
    CREATE TABLE IF NOT EXISTS settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    """,
    # 2: a subject always has a face (deleting or moving its last one removes it): older files may
    # hold subjects whose last face was deleted; a lookup of photos by subject for duplicates.
    """
    DELETE FROM subjects WHERE id NOT IN (SELECT subject_id FROM faces);
    CREATE INDEX IF NOT EXISTS faces_by_photo ON faces (subject_id, image_sha256);
    """,
    # 3: face thumbnails (FV_STORE_FACE_THUMBNAILS), deleted with their face.
    """
    CREATE TABLE IF NOT EXISTS face_thumbnails (
        face_id INTEGER PRIMARY KEY REFERENCES faces(id) ON DELETE CASCADE,
        jpeg BLOB NOT NULL
    );
    """,
)
SCHEMA_VERSION = len(_MIGRATIONS)


def _box(text: str | None) -> tuple[float, float, float, float] | None:
    if not text:
        return None
    x1, y1, x2, y2 = json.loads(text)
    return float(x1), float(y1), float(x2), float(y2)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


@dataclass(frozen=True)
class Collection:
    """A named set of subjects, bound to the model that embedded its faces."""

    id: int
    name: str
    model_id: str
    created_at: str


@dataclass(frozen=True)
class Subject:
    """A person in a collection."""

    id: int
    external_id: str
    name: str | None
    metadata: dict[str, Any]
    created_at: str
    face_ids: tuple[int, ...]


@dataclass(frozen=True)
class NewFace:
    """A face to store: its unit embedding and where it came from."""

    embedding: npt.NDArray[np.float32]
    box: tuple[float, float, float, float] | None = None
    score: float | None = None
    image_sha256: str | None = None
    cohort_mean: float | None = None  # top-k cohort statistics, for normalising scores against it
    cohort_sd: float | None = None
    thumbnail: bytes | None = None  # a JPEG of the aligned face with a margin, when they are kept

    @classmethod
    def from_photo(
        cls,
        embedding: npt.NDArray[np.float32],
        box: tuple[float, float, float, float],
        score: float,
        photo: bytes,
        thumbnail: bytes | None = None,
    ) -> NewFace:
        """A face found in an uploaded photo, remembered by the photo's sha256 (a repeat is not stored)."""
        return cls(embedding, box, score, hashlib.sha256(photo).hexdigest(), thumbnail=thumbnail)


@dataclass(frozen=True)
class FaceOwner:
    """Who a stored face belongs to, with its cohort statistics."""

    subject_id: str
    name: str | None
    cohort_mean: float | None
    cohort_sd: float | None


@dataclass(frozen=True)
class FaceRecord:
    """A stored face as the API shows it: where it was in its photo and which photo (by sha256)."""

    id: int
    box: tuple[float, float, float, float] | None
    score: float | None
    image_sha256: str | None
    model_id: str
    created_at: str


class StoredIds(list[int]):
    """An enrollment's face ids, one per face in order; `repeated[i]` is True where nothing new was
    written for face i: the subject had that photo already, or it came earlier in the same request."""

    repeated: tuple[bool, ...] = ()


@dataclass(frozen=True)
class Enrollment:
    """Faces of one subject to add in one transaction."""

    external_id: str
    faces: Sequence[NewFace]
    name: str | None = None
    metadata: dict[str, Any] | None = None


class GalleryStore:
    """All reads and writes of the SQLite file; writes are serialised, reads run in parallel (WAL)."""

    def __init__(self, data_dir: Path) -> None:
        data_dir.mkdir(parents=True, exist_ok=True)
        self.path = data_dir / DATABASE_NAME
        self._local = threading.local()
        self._write_lock = threading.Lock()
        with self._connection() as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(_SCHEMA)
        self._migrate()

    def _migrate(self) -> None:
        """Bring an older file up to SCHEMA_VERSION; refuse a newer one rather than misread it."""
        with self._write() as db:
            (version,) = db.execute("PRAGMA user_version").fetchone()
            if version > SCHEMA_VERSION:
                raise GalleryError(
                    f"{self.path} has schema version {version}, newer than this service's {SCHEMA_VERSION}"
                )
            for step in range(version, SCHEMA_VERSION):
                for statement in filter(str.strip, _MIGRATIONS[step].split(";")):
                    db.execute(statement)
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def _connection(self) -> sqlite3.Connection:
        """This thread's connection (sqlite3 connections must not be shared between threads)."""
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            # FULL: a transaction is on disk when COMMIT returns, so an acknowledged write survives
            # a crash of the process and of the machine.
            db.execute("PRAGMA synchronous=FULL")
            db.execute("PRAGMA foreign_keys=ON")
            self._local.db = db
        return db

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One IMMEDIATE transaction at a time: committed on success, rolled back on any error;
        InsufficientStorage when the disk is full (reads go on working)."""
        with self._write_lock:
            db = self._connection()
            try:
                db.execute("BEGIN IMMEDIATE")
                try:
                    yield db
                except BaseException:
                    if db.in_transaction:
                        db.execute("ROLLBACK")
                    raise
                db.execute("COMMIT")
            except sqlite3.OperationalError as exc:
                if getattr(exc, "sqlite_errorname", "") != "SQLITE_FULL":
                    raise
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise InsufficientStorage(
                    f"the gallery's disk is full ({exc}): nothing was written; free space or delete data"
                ) from None

    def close(self) -> None:
        """Close this thread's connection."""
        db = getattr(self._local, "db", None)
        if db is not None:
            db.close()
            self._local.db = None

    # Collections

    def create_collection(self, name: str, model_id: str) -> Collection:
        """A new, empty collection for faces embedded by model_id."""
        with self._write() as db:
            try:
                db.execute(
                    "INSERT INTO collections (name, model_id, created_at) VALUES (?, ?, ?)",
                    (name, model_id, _now()),
                )
            except sqlite3.IntegrityError:
                raise CollectionExists(f"collection {name!r} exists already") from None
        return self.collection(name)

    def collection(self, name: str) -> Collection:
        """The collection of that name, or CollectionNotFound."""
        row = (
            self._connection()
            .execute("SELECT id, name, model_id, created_at FROM collections WHERE name = ?", (name,))
            .fetchone()
        )
        if row is None:
            raise CollectionNotFound(f"no collection named {name!r}")
        return Collection(*row)

    def collections(self) -> list[Collection]:
        """Every collection, oldest first."""
        rows = self._connection().execute(
            "SELECT id, name, model_id, created_at FROM collections ORDER BY id"
        )
        return [Collection(*row) for row in rows]

    def rename_collections(self, renames: Mapping[str, str]) -> None:
        """Rename collections in one transaction (old name -> new name); a swap renames each to the
        other's name. CollectionNotFound / CollectionExists leave every name as it was."""
        if len(set(renames.values())) != len(renames):
            raise ValueError(f"two collections cannot take one name: {renames}")
        with self._write() as db:
            ids = {}
            for old in renames:
                row = db.execute("SELECT id FROM collections WHERE name = ?", (old,)).fetchone()
                if row is None:
                    raise CollectionNotFound(f"no collection named {old!r}")
                ids[old] = int(row[0])
            for new in renames.values():
                taken = db.execute("SELECT 1 FROM collections WHERE name = ?", (new,)).fetchone()
                if taken and new not in renames:
                    raise CollectionExists(f"collection {new!r} exists already")
            # Through names no collection can have (ids are unique), so that no two ever collide.
            for collection_id in ids.values():
                db.execute(
                    "UPDATE collections SET name = ? WHERE id = ?", (f"\0{collection_id}", collection_id)
                )
            for old, new in renames.items():
                db.execute("UPDATE collections SET name = ? WHERE id = ?", (new, ids[old]))

    def delete_collection(self, name: str) -> list[int]:
        """Delete a collection with its subjects and faces; the ids of the deleted faces."""
        with self._write() as db:
            row = db.execute("SELECT id FROM collections WHERE name = ?", (name,)).fetchone()
            if row is None:
                raise CollectionNotFound(f"no collection named {name!r}")
            face_ids = [r[0] for r in db.execute("SELECT id FROM faces WHERE collection_id = ?", row)]
            db.execute("DELETE FROM collections WHERE id = ?", row)
        return face_ids

    # Faces and subjects

    def enroll(self, collection: Collection, enrollments: Sequence[Enrollment]) -> list[StoredIds]:
        """Add faces to subjects (created on first use), all in one transaction; per enrollment, the
        face ids in order. A photo already stored for that subject (same sha256) is not stored again:
        its existing face's id is given, and marked in `repeated`."""
        now = _now()
        with self._write() as db:
            db.executemany(
                "INSERT INTO subjects (collection_id, external_id, name, metadata, created_at)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT (collection_id, external_id) DO UPDATE SET"
                " name = COALESCE(excluded.name, subjects.name),"
                " metadata = CASE WHEN ? THEN excluded.metadata ELSE subjects.metadata END",
                [(collection.id, item.external_id, item.name, json.dumps(item.metadata or {}), now,
                  item.metadata is not None) for item in enrollments],
            )  # fmt: skip
            subject_ids = self._subject_ids(db, collection, [item.external_id for item in enrollments])
            known = self._stored_photos(db, list(subject_ids.values()))
            pending: dict[tuple[int, str], int] = {}  # the same photo twice in this request: one row
            rows: list[tuple[Any, ...]] = []
            thumbnails: list[bytes | None] = []  # per new row
            # Per face: ("id", a stored face's id), ("row", its new row) or ("again", an earlier new row).
            refs: list[tuple[str, int]] = []
            for item in enrollments:
                subject = subject_ids[item.external_id]
                for face in item.faces:
                    key = (subject, face.image_sha256 or "")
                    if face.image_sha256 is not None and key in known:
                        refs.append(("id", known[key]))
                    elif face.image_sha256 is not None and key in pending:
                        refs.append(("again", pending[key]))
                    else:
                        pending[key] = len(rows)
                        refs.append(("row", len(rows)))
                        thumbnails.append(face.thumbnail)
                        rows.append(
                            (subject, collection.id, collection.model_id,
                             np.ascontiguousarray(face.embedding, dtype="<f4").tobytes(),
                             json.dumps(face.box) if face.box is not None else None, face.score,
                             face.image_sha256, now, face.cohort_mean, face.cohort_sd)
                        )  # fmt: skip
            db.executemany(
                "INSERT INTO faces (subject_id, collection_id, model_id, embedding, box, score, image_sha256,"
                " created_at, cohort_mean, cohort_sd) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
            (last,) = db.execute("SELECT last_insert_rowid()").fetchone()
            # Inside one write transaction AUTOINCREMENT hands out consecutive ids, in insertion order.
            first = int(last) - len(rows) + 1
            db.executemany(
                "INSERT INTO face_thumbnails (face_id, jpeg) VALUES (?, ?)",
                [(first + row, jpeg) for row, jpeg in enumerate(thumbnails) if jpeg is not None],
            )
        ids = [value if kind == "id" else first + value for kind, value in refs]
        repeated = [kind != "row" for kind, _ in refs]
        added, position = [], 0
        for item in enrollments:
            end = position + len(item.faces)
            group = StoredIds(ids[position:end])
            group.repeated = tuple(repeated[position:end])
            added.append(group)
            position = end
        return added

    def _stored_photos(
        self, db: sqlite3.Connection, subject_ids: list[int]
    ) -> dict[tuple[int, str | None], int]:
        """(subject id, photo sha256) -> face id, for the faces these subjects have already."""
        found: dict[tuple[int, str | None], int] = {}
        for start in range(0, len(subject_ids), 500):  # stay under SQLite's bound-parameter limit
            chunk = subject_ids[start : start + 500]
            rows = db.execute(
                f"SELECT subject_id, image_sha256, MIN(id) FROM faces WHERE image_sha256 IS NOT NULL"
                f" AND subject_id IN ({','.join('?' * len(chunk))}) GROUP BY subject_id, image_sha256",
                chunk,
            )
            found.update(((int(r[0]), str(r[1])), int(r[2])) for r in rows)
        return found

    def _subject_ids(
        self, db: sqlite3.Connection, collection: Collection, external_ids: list[str]
    ) -> dict[str, int]:
        found: dict[str, int] = {}
        unique = list(dict.fromkeys(external_ids))
        for start in range(0, len(unique), 500):  # stay under SQLite's bound-parameter limit
            chunk = unique[start : start + 500]
            marks = ",".join("?" * len(chunk))
            rows = db.execute(
                f"SELECT external_id, id FROM subjects WHERE collection_id = ? AND external_id IN ({marks})",
                [collection.id, *chunk],
            )
            found.update((str(r[0]), int(r[1])) for r in rows)
        return found

    def _subject_id(self, db: sqlite3.Connection, collection: Collection, external_id: str) -> int:
        row = db.execute(
            "SELECT id FROM subjects WHERE collection_id = ? AND external_id = ?",
            (collection.id, external_id),
        ).fetchone()
        if row is None:
            raise SubjectNotFound(f"no subject {external_id!r} in collection {collection.name!r}")
        return int(row[0])

    def delete_subject(self, collection: Collection, external_id: str) -> list[int]:
        """Delete a subject and its faces; the ids of the deleted faces."""
        with self._write() as db:
            subject_id = self._subject_id(db, collection, external_id)
            face_ids = [r[0] for r in db.execute("SELECT id FROM faces WHERE subject_id = ?", (subject_id,))]
            db.execute("DELETE FROM subjects WHERE id = ?", (subject_id,))
        return face_ids

    def delete_face(self, collection: Collection, external_id: str, face_id: int) -> bool:
        """Delete one face of a subject, and the subject with its last face; whether it went."""
        with self._write() as db:
            subject_id = self._subject_id(db, collection, external_id)
            cursor = db.execute("DELETE FROM faces WHERE id = ? AND subject_id = ?", (face_id, subject_id))
            if cursor.rowcount == 0:
                raise FaceNotFound(f"subject {external_id!r} has no face {face_id}")
            return self._drop_if_empty(db, subject_id)

    def _drop_if_empty(self, db: sqlite3.Connection, subject_id: int) -> bool:
        """A subject without faces could match nothing and only clutter listings: it goes."""
        if db.execute("SELECT 1 FROM faces WHERE subject_id = ? LIMIT 1", (subject_id,)).fetchone():
            return False
        db.execute("DELETE FROM subjects WHERE id = ?", (subject_id,))
        return True

    def move_face(self, collection: Collection, external_id: str, face_id: int, to_external_id: str) -> bool:
        """Give one face of a subject to another subject of the collection (created if new, with no
        name or metadata); whether the first subject went with its last face."""
        with self._write() as db:
            source = self._subject_id(db, collection, external_id)
            db.execute(
                "INSERT INTO subjects (collection_id, external_id, metadata, created_at)"
                " VALUES (?, ?, '{}', ?) ON CONFLICT (collection_id, external_id) DO NOTHING",
                (collection.id, to_external_id, _now()),
            )
            target = self._subject_id(db, collection, to_external_id)
            cursor = db.execute(
                "UPDATE faces SET subject_id = ? WHERE id = ? AND subject_id = ?", (target, face_id, source)
            )
            if cursor.rowcount == 0:
                raise FaceNotFound(f"subject {external_id!r} has no face {face_id}")
            return self._drop_if_empty(db, source)

    def update_subject(
        self,
        collection: Collection,
        external_id: str,
        name: str | None = None,
        clear_name: bool = False,
        metadata: dict[str, Any] | None = None,
        replace_metadata: bool = False,
        metadata_limit: int = 65_536,
    ) -> Subject:
        """Change a subject's name (or clear it) and metadata: merged key by key (a null value removes
        its key), or replaced whole, and at most `metadata_limit` bytes of JSON once merged; the subject
        as it is now."""
        with self._write() as db:
            subject_id = self._subject_id(db, collection, external_id)
            if name is not None or clear_name:
                db.execute("UPDATE subjects SET name = ? WHERE id = ?", (name, subject_id))
            if metadata is not None:
                (current,) = db.execute(
                    "SELECT metadata FROM subjects WHERE id = ?", (subject_id,)
                ).fetchone()
                merged = {} if replace_metadata else json.loads(current)
                merged.update(metadata)
                text = json.dumps({key: value for key, value in merged.items() if value is not None})
                if len(text.encode()) > metadata_limit:
                    raise MetadataTooLarge(f"the merged metadata would exceed {metadata_limit:,} bytes")
                db.execute("UPDATE subjects SET metadata = ? WHERE id = ?", (text, subject_id))
        return self.subject(collection, external_id)

    def thumbnail(self, collection: Collection, external_id: str, face_id: int) -> bytes:
        """The JPEG kept for one face of a subject; FaceNotFound, or ThumbnailNotStored when none was."""
        db = self._connection()
        subject_id = self._subject_id(db, collection, external_id)
        row = db.execute(
            "SELECT t.jpeg, f.id FROM faces f LEFT JOIN face_thumbnails t ON t.face_id = f.id"
            " WHERE f.id = ? AND f.subject_id = ?",
            (face_id, subject_id),
        ).fetchone()
        if row is None:
            raise FaceNotFound(f"subject {external_id!r} has no face {face_id}")
        if row[0] is None:
            raise ThumbnailNotStored(
                f"face {face_id} was enrolled without a thumbnail (FV_STORE_FACE_THUMBNAILS was off)"
            )
        return bytes(row[0])

    def faces_without_thumbnails(self, collection: Collection) -> int:
        """How many faces of a collection were stored without a thumbnail."""
        (count,) = (
            self._connection()
            .execute(
                "SELECT COUNT(*) FROM faces f LEFT JOIN face_thumbnails t ON t.face_id = f.id"
                " WHERE f.collection_id = ? AND t.face_id IS NULL",
                (collection.id,),
            )
            .fetchone()
        )
        return int(count)

    def faces(self, collection: Collection, external_id: str) -> list[FaceRecord]:
        """A subject's faces, oldest first, with where each came from."""
        db = self._connection()
        subject_id = self._subject_id(db, collection, external_id)
        rows = db.execute(
            "SELECT id, box, score, image_sha256, model_id, created_at FROM faces WHERE subject_id = ?"
            " ORDER BY id",
            (subject_id,),
        )
        return [FaceRecord(r[0], _box(r[1]), r[2], r[3], r[4], r[5]) for r in rows]

    def subject(self, collection: Collection, external_id: str) -> Subject:
        """One subject with its face ids."""
        db = self._connection()
        row = db.execute(
            "SELECT id, external_id, name, metadata, created_at FROM subjects"
            " WHERE collection_id = ? AND external_id = ?",
            (collection.id, external_id),
        ).fetchone()
        if row is None:
            raise SubjectNotFound(f"no subject {external_id!r} in collection {collection.name!r}")
        faces = tuple(
            r[0] for r in db.execute("SELECT id FROM faces WHERE subject_id = ? ORDER BY id", (row[0],))
        )
        return Subject(row[0], row[1], row[2], json.loads(row[3]), row[4], faces)

    def subjects(
        self, collection: Collection, offset: int = 0, limit: int = 100
    ) -> tuple[list[Subject], int]:
        """A page of subjects (oldest first) and the total count."""
        db = self._connection()
        total = db.execute(
            "SELECT COUNT(*) FROM subjects WHERE collection_id = ?", (collection.id,)
        ).fetchone()[0]
        rows = db.execute(
            "SELECT s.id, s.external_id, s.name, s.metadata, s.created_at, GROUP_CONCAT(f.id)"
            " FROM subjects s LEFT JOIN faces f ON f.subject_id = s.id WHERE s.collection_id = ?"
            " GROUP BY s.id ORDER BY s.id LIMIT ? OFFSET ?",
            (collection.id, limit, offset),
        ).fetchall()
        page = [
            Subject(
                r[0],
                r[1],
                r[2],
                json.loads(r[3]),
                r[4],
                tuple(sorted(int(i) for i in r[5].split(","))) if r[5] else (),
            )
            for r in rows
        ]
        return page, int(total)

    def owners(self, face_ids: Sequence[int]) -> dict[int, FaceOwner]:
        """face id -> its subject and cohort statistics, for the ids that exist."""
        found: dict[int, FaceOwner] = {}
        for start in range(0, len(face_ids), 500):  # stay under SQLite's bound-parameter limit
            chunk = [int(i) for i in face_ids[start : start + 500]]
            rows = self._connection().execute(
                f"SELECT f.id, s.external_id, s.name, f.cohort_mean, f.cohort_sd FROM faces f"
                f" JOIN subjects s ON s.id = f.subject_id WHERE f.id IN ({','.join('?' * len(chunk))})",
                chunk,
            )
            found.update((int(r[0]), FaceOwner(r[1], r[2], r[3], r[4])) for r in rows)
        return found

    def setting(self, key: str) -> str | None:
        """A value the gallery keeps about itself (such as the cohort its statistics belong to)."""
        row = self._connection().execute("SELECT value FROM settings WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def faces_without_cohort_stats(self) -> int:
        """How many faces have no cohort statistics yet."""
        (count,) = self._connection().execute("SELECT COUNT(*) FROM faces WHERE cohort_sd IS NULL").fetchone()
        return int(count)

    def set_cohort_stats(
        self, cohort: str, stats: Sequence[tuple[npt.NDArray[np.int64], npt.NDArray[np.float32],
                                                        npt.NDArray[np.float32]]], key: str = "cohort",
    ) -> None:  # fmt: skip
        """Store faces' cohort statistics (ids, means, SDs per chunk) and, under `key`, the cohort they
        are for."""
        with self._write() as db:
            for ids, means, sds in stats:
                db.executemany(
                    "UPDATE faces SET cohort_mean = ?, cohort_sd = ? WHERE id = ?",
                    zip(means.tolist(), sds.tolist(), ids.tolist(), strict=True),
                )
            db.execute(
                "INSERT INTO settings (key, value) VALUES (?, ?)"
                " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (key, cohort),
            )

    def embeddings(
        self, collection: Collection, missing_cohort_stats: bool = False
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
        """Every face id and embedding of a collection, in id order (for rebuilding its index); or only
        those of faces without cohort statistics."""
        only = " AND cohort_sd IS NULL" if missing_cohort_stats else ""
        rows = (
            self._connection()
            .execute(
                f"SELECT id, embedding FROM faces WHERE collection_id = ?{only} ORDER BY id", (collection.id,)
            )
            .fetchall()
        )
        if not rows:
            return np.zeros(0, np.int64), np.zeros((0, 0), np.float32)
        ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        vectors = np.frombuffer(b"".join(r[1] for r in rows), dtype="<f4").reshape(len(rows), -1)
        return ids, vectors.astype(np.float32, copy=False)

    def subject_embeddings(self, collection: Collection, external_id: str) -> npt.NDArray[np.float32]:
        """The embeddings of one subject's faces."""
        db = self._connection()
        subject_id = self._subject_id(db, collection, external_id)
        blobs = [
            r[0]
            for r in db.execute("SELECT embedding FROM faces WHERE subject_id = ? ORDER BY id", (subject_id,))
        ]
        if not blobs:
            return np.zeros((0, 0), np.float32)
        return np.frombuffer(b"".join(blobs), dtype="<f4").reshape(len(blobs), -1).astype(np.float32)

    def face_ids(self, collection: Collection) -> npt.NDArray[np.int64]:
        """Every face id of a collection, in id order."""
        rows = (
            self._connection()
            .execute("SELECT id FROM faces WHERE collection_id = ? ORDER BY id", (collection.id,))
            .fetchall()
        )
        return np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))

    def model_ids(self) -> dict[str, set[str]]:
        """collection name -> the model ids its faces were embedded with."""
        found: dict[str, set[str]] = {}
        rows = self._connection().execute(
            "SELECT c.name, c.model_id FROM collections c UNION SELECT c.name, f.model_id"
            " FROM faces f JOIN collections c ON c.id = f.collection_id"
        )
        for name, model_id in rows:
            found.setdefault(name, set()).add(model_id)
        return found
