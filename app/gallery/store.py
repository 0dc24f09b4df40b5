"""The gallery's source of truth (collections, subjects and their face embeddings) as SQL that SQLite
(the embedded default) and PostgreSQL (many replicas) both run; sqlite.py and postgres.py connect it.

Every write also appends to a changes feed (`changes`, a sequence number per row, in the write's own
transaction), which replicas follow into their indexes and whose number a caller can wait for.
"""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

import numpy as np
import numpy.typing as npt

from app.gallery.errors import (
    CollectionExists,
    CollectionNotFound,
    FaceNotFound,
    MetadataTooLarge,
    SubjectNotFound,
    ThumbnailNotStored,
)


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
    written for face i: the subject had that photo already, or it came earlier in the same request;
    `seq` is the changes feed's number of the transaction (0 when it wrote nothing)."""

    repeated: tuple[bool, ...] = ()
    seq: int = 0


ChangeOp = Literal["add", "remove", "collection"]


@dataclass(frozen=True)
class Change:
    """One entry of the changes feed: a face added to or removed from a collection's index, or a
    collection created, renamed or deleted (face_id None)."""

    seq: int
    collection_id: int
    op: ChangeOp
    face_id: int | None


class Db(Protocol):
    """A connection inside a read or a write: statements with `?` placeholders, giving back cursors as
    sqlite3 and psycopg both do (fetchone, fetchall, rowcount, iteration)."""

    def execute(self, sql: str, params: Any = (), /) -> Any: ...
    def executemany(self, sql: str, rows: Iterable[Any], /) -> Any: ...


@dataclass(frozen=True)
class Enrollment:
    """Faces of one subject to add in one transaction."""

    external_id: str
    faces: Sequence[NewFace]
    name: str | None = None
    metadata: dict[str, Any] | None = None


PRUNED_BEFORE = "changes_pruned_before"  # the settings key


class Wakeup(Protocol):
    """Waits for the store to say that another process changed something (or for the timeout)."""

    def wait(self, timeout: float) -> bool: ...
    def close(self) -> None: ...


class GalleryStore(ABC):
    """All reads and writes of the gallery's database. Writes are serialised (also across processes,
    so that the changes feed is in commit order); reads run in parallel."""

    # Whether other processes write to it too (replicas), so that the indexes follow its changes feed.
    shared = False
    # The SQL aggregate that lists a group's face ids, comma-separated.
    FACE_ID_LIST = "GROUP_CONCAT(f.id)"
    # Most bound parameters one statement takes (SQLite's limit is the lower).
    CHUNK = 500

    @abstractmethod
    def _read(self) -> AbstractContextManager[Db]:
        """A connection for reads."""

    @abstractmethod
    def _write(self) -> AbstractContextManager[Db]:
        """One write transaction at a time: committed on success, rolled back on any error;
        InsufficientStorage when the disk is full."""

    @abstractmethod
    def _insert_faces(self, db: Db, rows: list[tuple[Any, ...]]) -> list[int]:
        """Insert face rows in order; their new ids."""

    @abstractmethod
    def close(self) -> None:
        """Release this store's connections."""

    def listener(self) -> Wakeup | None:
        """A wake-up for the changes other processes make (none where no other process writes)."""
        return None

    @property
    @abstractmethod
    def where(self) -> str:
        """Where the data lives, for messages (a file, or a server without its password)."""

    # The changes feed

    def _record(self, db: Db, collection_id: int, op: ChangeOp, face_ids: Sequence[int | None]) -> int:
        """Append changes inside the write's transaction; the feed's number after them."""
        db.executemany(
            "INSERT INTO changes (collection_id, op, face_id) VALUES (?, ?, ?)",
            [(collection_id, op, face_id) for face_id in face_ids],
        )
        # Writers are serialised, so no other write's changes can interleave with these.
        (seq,) = db.execute("SELECT COALESCE(MAX(seq), 0) FROM changes").fetchone()
        return int(seq)

    def last_seq(self) -> int:
        """The number of the newest change (0 when there is none; never less than what was pruned)."""
        with self._read() as db:
            (seq,) = db.execute("SELECT COALESCE(MAX(seq), 0) FROM changes").fetchone()
        return max(int(seq), self.pruned_before() - 1)

    def changes_since(self, seq: int, limit: int = 10_000) -> list[Change]:
        """The changes after `seq`, oldest first (at most `limit`)."""
        with self._read() as db:
            rows = db.execute(
                "SELECT seq, collection_id, op, face_id FROM changes WHERE seq > ? ORDER BY seq LIMIT ?",
                (seq, limit),
            ).fetchall()
        return [Change(int(r[0]), int(r[1]), r[2], None if r[3] is None else int(r[3])) for r in rows]

    def pruned_before(self) -> int:
        """Changes before this number were forgotten: a follower further behind reloads from the faces."""
        value = self.setting(PRUNED_BEFORE)
        return int(value) if value is not None else 0

    def prune_changes(self, before: int) -> int:
        """Forget the changes before `before` (every follower has them); how many went."""
        with self._write() as db:
            cursor = db.execute("DELETE FROM changes WHERE seq < ?", (before,))
            db.execute(
                "INSERT INTO settings (key, value) VALUES (?, ?)"
                " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (PRUNED_BEFORE, str(before)),
            )
            return int(cursor.rowcount)

    # Collections

    def create_collection(self, name: str, model_id: str) -> Collection:
        """A new, empty collection for faces embedded by model_id."""
        with self._write() as db:
            if db.execute("SELECT 1 FROM collections WHERE name = ?", (name,)).fetchone():
                raise CollectionExists(f"collection {name!r} exists already")
            (collection_id,) = db.execute(
                "INSERT INTO collections (name, model_id, created_at) VALUES (?, ?, ?) RETURNING id",
                (name, model_id, _now()),
            ).fetchone()
            self._record(db, int(collection_id), "collection", [None])
        return self.collection(name)

    def collection(self, name: str) -> Collection:
        """The collection of that name, or CollectionNotFound."""
        with self._read() as db:
            row = db.execute(
                "SELECT id, name, model_id, created_at FROM collections WHERE name = ?", (name,)
            ).fetchone()
        if row is None:
            raise CollectionNotFound(f"no collection named {name!r}")
        return Collection(*row)

    def collections(self) -> list[Collection]:
        """Every collection, oldest first."""
        with self._read() as db:
            rows = db.execute("SELECT id, name, model_id, created_at FROM collections ORDER BY id").fetchall()
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
            # Through names no collection can have (ids are unique; the API refuses control
            # characters), so that no two ever collide.
            for collection_id in ids.values():
                db.execute(
                    "UPDATE collections SET name = ? WHERE id = ?", (f"\x01{collection_id}", collection_id)
                )
            for old, new in renames.items():
                db.execute("UPDATE collections SET name = ? WHERE id = ?", (new, ids[old]))
                self._record(db, ids[old], "collection", [None])

    def delete_collection(self, name: str) -> list[int]:
        """Delete a collection with its subjects and faces; the ids of the deleted faces."""
        with self._write() as db:
            row = db.execute("SELECT id FROM collections WHERE name = ?", (name,)).fetchone()
            if row is None:
                raise CollectionNotFound(f"no collection named {name!r}")
            collection_id = int(row[0])
            face_ids = [
                int(r[0])
                for r in db.execute("SELECT id FROM faces WHERE collection_id = ?", (collection_id,))
            ]
            db.execute("DELETE FROM collections WHERE id = ?", (collection_id,))
            self._record(db, collection_id, "collection", [None])
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
            new_ids = self._insert_faces(db, rows) if rows else []
            db.executemany(
                "INSERT INTO face_thumbnails (face_id, jpeg) VALUES (?, ?)",
                [(new_ids[row], jpeg) for row, jpeg in enumerate(thumbnails) if jpeg is not None],
            )
            seq = self._record(db, collection.id, "add", new_ids) if new_ids else 0
        ids = [value if kind == "id" else new_ids[value] for kind, value in refs]
        repeated = [kind != "row" for kind, _ in refs]
        added, position = [], 0
        for item in enrollments:
            end = position + len(item.faces)
            group = StoredIds(ids[position:end])
            group.repeated = tuple(repeated[position:end])
            group.seq = seq
            added.append(group)
            position = end
        return added

    def _marks(self, count: int) -> str:
        return ",".join("?" * count)

    def _stored_photos(self, db: Db, subject_ids: list[int]) -> dict[tuple[int, str | None], int]:
        """(subject id, photo sha256) -> face id, for the faces these subjects have already."""
        found: dict[tuple[int, str | None], int] = {}
        for start in range(0, len(subject_ids), self.CHUNK):
            chunk = subject_ids[start : start + self.CHUNK]
            rows = db.execute(
                f"SELECT subject_id, image_sha256, MIN(id) FROM faces WHERE image_sha256 IS NOT NULL"
                f" AND subject_id IN ({self._marks(len(chunk))}) GROUP BY subject_id, image_sha256",
                chunk,
            ).fetchall()
            found.update(((int(r[0]), str(r[1])), int(r[2])) for r in rows)
        return found

    def _subject_ids(self, db: Db, collection: Collection, external_ids: list[str]) -> dict[str, int]:
        found: dict[str, int] = {}
        unique = list(dict.fromkeys(external_ids))
        for start in range(0, len(unique), self.CHUNK):
            chunk = unique[start : start + self.CHUNK]
            rows = db.execute(
                f"SELECT external_id, id FROM subjects WHERE collection_id = ? AND external_id IN"
                f" ({self._marks(len(chunk))})",
                [collection.id, *chunk],
            ).fetchall()
            found.update((str(r[0]), int(r[1])) for r in rows)
        return found

    def _subject_id(self, db: Db, collection: Collection, external_id: str) -> int:
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
            face_ids = [
                int(r[0]) for r in db.execute("SELECT id FROM faces WHERE subject_id = ?", (subject_id,))
            ]
            db.execute("DELETE FROM subjects WHERE id = ?", (subject_id,))
            self._record(db, collection.id, "remove", face_ids)
        return face_ids

    def delete_face(self, collection: Collection, external_id: str, face_id: int) -> bool:
        """Delete one face of a subject, and the subject with its last face; whether it went."""
        with self._write() as db:
            subject_id = self._subject_id(db, collection, external_id)
            cursor = db.execute("DELETE FROM faces WHERE id = ? AND subject_id = ?", (face_id, subject_id))
            if cursor.rowcount == 0:
                raise FaceNotFound(f"subject {external_id!r} has no face {face_id}")
            self._record(db, collection.id, "remove", [face_id])
            return self._drop_if_empty(db, subject_id)

    def _drop_if_empty(self, db: Db, subject_id: int) -> bool:
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
        with self._read() as db:
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
        with self._read() as db:
            (count,) = db.execute(
                "SELECT COUNT(*) FROM faces f LEFT JOIN face_thumbnails t ON t.face_id = f.id"
                " WHERE f.collection_id = ? AND t.face_id IS NULL",
                (collection.id,),
            ).fetchone()
        return int(count)

    def faces(self, collection: Collection, external_id: str) -> list[FaceRecord]:
        """A subject's faces, oldest first, with where each came from."""
        with self._read() as db:
            subject_id = self._subject_id(db, collection, external_id)
            rows = db.execute(
                "SELECT id, box, score, image_sha256, model_id, created_at FROM faces WHERE subject_id = ?"
                " ORDER BY id",
                (subject_id,),
            ).fetchall()
        return [FaceRecord(r[0], _box(r[1]), r[2], r[3], r[4], r[5]) for r in rows]

    def subject(self, collection: Collection, external_id: str) -> Subject:
        """One subject with its face ids."""
        with self._read() as db:
            row = db.execute(
                "SELECT id, external_id, name, metadata, created_at FROM subjects"
                " WHERE collection_id = ? AND external_id = ?",
                (collection.id, external_id),
            ).fetchone()
            if row is None:
                raise SubjectNotFound(f"no subject {external_id!r} in collection {collection.name!r}")
            faces = tuple(
                int(r[0])
                for r in db.execute(
                    "SELECT id FROM faces WHERE subject_id = ? ORDER BY id", (row[0],)
                ).fetchall()
            )
        return Subject(row[0], row[1], row[2], json.loads(row[3]), row[4], faces)

    def subjects(
        self, collection: Collection, offset: int = 0, limit: int = 100, search: str | None = None
    ) -> tuple[list[Subject], int]:
        """A page of subjects (oldest first) and the total count; with `search`, only those whose id or
        name holds it (letters in either case: ASCII ones on SQLite, all on PostgreSQL)."""
        where, params = "s.collection_id = ?", list[object]([collection.id])
        if search:
            # LIKE's own characters in the text are matched as themselves.
            escaped = search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            where += (
                " AND (lower(s.external_id) LIKE lower(?) ESCAPE '\\'"
                " OR lower(COALESCE(s.name, '')) LIKE lower(?) ESCAPE '\\')"
            )
            params += [f"%{escaped}%", f"%{escaped}%"]
        with self._read() as db:
            (total,) = db.execute(f"SELECT COUNT(*) FROM subjects s WHERE {where}", tuple(params)).fetchone()
            rows = db.execute(
                f"SELECT s.id, s.external_id, s.name, s.metadata, s.created_at, {self.FACE_ID_LIST}"
                f" FROM subjects s LEFT JOIN faces f ON f.subject_id = s.id WHERE {where}"
                " GROUP BY s.id ORDER BY s.id LIMIT ? OFFSET ?",
                (*params, limit, offset),
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
        with self._read() as db:
            for start in range(0, len(face_ids), self.CHUNK):
                chunk = [int(i) for i in face_ids[start : start + self.CHUNK]]
                rows = db.execute(
                    f"SELECT f.id, s.external_id, s.name, f.cohort_mean, f.cohort_sd FROM faces f"
                    f" JOIN subjects s ON s.id = f.subject_id WHERE f.id IN ({self._marks(len(chunk))})",
                    chunk,
                ).fetchall()
                found.update((int(r[0]), FaceOwner(r[1], r[2], r[3], r[4])) for r in rows)
        return found

    def setting(self, key: str) -> str | None:
        """A value the gallery keeps about itself (such as the cohort its statistics belong to)."""
        with self._read() as db:
            row = db.execute("SELECT value FROM settings WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def faces_without_cohort_stats(self) -> int:
        """How many faces have no cohort statistics yet."""
        with self._read() as db:
            (count,) = db.execute("SELECT COUNT(*) FROM faces WHERE cohort_sd IS NULL").fetchone()
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
                    list(zip(means.tolist(), sds.tolist(), ids.tolist(), strict=True)),
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
        with self._read() as db:
            rows = db.execute(
                f"SELECT id, embedding FROM faces WHERE collection_id = ?{only} ORDER BY id", (collection.id,)
            ).fetchall()
        return _vectors(rows)

    def embeddings_of(self, face_ids: Sequence[int]) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
        """The ids and embeddings of those faces that still exist, in id order."""
        found = []
        with self._read() as db:
            for start in range(0, len(face_ids), self.CHUNK):
                chunk = [int(i) for i in face_ids[start : start + self.CHUNK]]
                found.extend(
                    db.execute(
                        f"SELECT id, embedding FROM faces WHERE id IN ({self._marks(len(chunk))})", chunk
                    ).fetchall()
                )
        return _vectors(sorted(found))

    def subject_embeddings(self, collection: Collection, external_id: str) -> npt.NDArray[np.float32]:
        """The embeddings of one subject's faces."""
        with self._read() as db:
            subject_id = self._subject_id(db, collection, external_id)
            blobs = [
                r[0]
                for r in db.execute(
                    "SELECT embedding FROM faces WHERE subject_id = ? ORDER BY id", (subject_id,)
                ).fetchall()
            ]
        if not blobs:
            return np.zeros((0, 0), np.float32)
        return np.frombuffer(b"".join(blobs), dtype="<f4").reshape(len(blobs), -1).astype(np.float32)

    def face_ids(self, collection: Collection) -> npt.NDArray[np.int64]:
        """Every face id of a collection, in id order."""
        with self._read() as db:
            rows = db.execute(
                "SELECT id FROM faces WHERE collection_id = ? ORDER BY id", (collection.id,)
            ).fetchall()
        return np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))

    def highest_face_id(self) -> int:
        """The largest face id in use (0 with none)."""
        with self._read() as db:
            (highest,) = db.execute("SELECT COALESCE(MAX(id), 0) FROM faces").fetchone()
        return int(highest)

    def model_ids(self) -> dict[str, set[str]]:
        """collection name -> the model ids its faces were embedded with."""
        found: dict[str, set[str]] = {}
        with self._read() as db:
            rows = db.execute(
                "SELECT c.name, c.model_id FROM collections c UNION SELECT c.name, f.model_id"
                " FROM faces f JOIN collections c ON c.id = f.collection_id"
            ).fetchall()
        for name, model_id in rows:
            found.setdefault(name, set()).add(model_id)
        return found


def _vectors(rows: Sequence[Any]) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
    """(id, embedding bytes) rows as an id array and a (n, d) float32 array."""
    if not rows:
        return np.zeros(0, np.int64), np.zeros((0, 0), np.float32)
    ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
    vectors = np.frombuffer(b"".join(bytes(r[1]) for r in rows), dtype="<f4").reshape(len(rows), -1)
    return ids, vectors.astype(np.float32, copy=False)
