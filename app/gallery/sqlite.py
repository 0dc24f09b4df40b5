"""The embedded default store: one SQLite file in the data directory (WAL, full sync)."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from app.gallery.errors import GalleryError, InsufficientStorage
from app.gallery.store import Db, GalleryStore

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
    # 4: the changes feed (no foreign key: a deleted collection's changes outlive it).
    """
    CREATE TABLE IF NOT EXISTS changes (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        collection_id INTEGER NOT NULL,
        op TEXT NOT NULL,
        face_id INTEGER
    );
    """,
)
SCHEMA_VERSION = len(_MIGRATIONS)


class SQLiteStore(GalleryStore):
    """The gallery in one SQLite file: writes are serialised, reads run in parallel (WAL)."""

    def __init__(self, data_dir: Path) -> None:
        data_dir.mkdir(parents=True, exist_ok=True)
        self.path = data_dir / DATABASE_NAME
        self._local = threading.local()
        self._write_lock = threading.Lock()
        with self._connection() as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(_SCHEMA)
        self._migrate()

    @property
    def where(self) -> str:
        """The database file."""
        return str(self.path)

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
    def _read(self) -> Iterator[Db]:
        yield self._connection()

    @contextmanager
    def _write(self) -> Iterator[Db]:
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

    def _insert_faces(self, db: Db, rows: list[tuple[Any, ...]]) -> list[int]:
        db.executemany(
            "INSERT INTO faces (subject_id, collection_id, model_id, embedding, box, score, image_sha256,"
            " created_at, cohort_mean, cohort_sd) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
        (last,) = db.execute("SELECT last_insert_rowid()").fetchone()
        # Inside one write transaction AUTOINCREMENT hands out consecutive ids, in insertion order.
        first = int(last) - len(rows) + 1
        return list(range(first, first + len(rows)))

    def close(self) -> None:
        """Close this thread's connection."""
        db = getattr(self._local, "db", None)
        if db is not None:
            db.close()
            self._local.db = None
