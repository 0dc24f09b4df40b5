"""The shared store for replicas: PostgreSQL (`FV_DATABASE_URL`) through a psycopg connection pool.

The same tables and SQL as the embedded SQLite file; every write transaction first takes one advisory
lock, so that writes from every replica are serialised and the changes feed's numbers are in commit
order (a follower reading "after n" can never miss a smaller number that commits later).
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from functools import lru_cache
from typing import Any

import psycopg
from psycopg import errors as pg_errors
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import ConnectionPool, PoolTimeout

from app.gallery.errors import GalleryError, InsufficientStorage, StoreUnavailable
from app.gallery.store import Db, GalleryStore

# pg_advisory_xact_lock keys (arbitrary, fixed): one for writes, one for migrations.
WRITE_LOCK = 0x66_76_67_01
MIGRATION_LOCK = 0x66_76_67_02
NOTIFY_CHANNEL = "faceverify_changes"

# Each step runs once, in order, in one transaction; faceverify_schema holds how many ran.
_MIGRATIONS = (
    # 1: the tables of SQLite's schema version 4.
    """
    CREATE TABLE collections (
        id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        model_id TEXT NOT NULL,
        created_at TEXT NOT NULL
    );
    CREATE TABLE subjects (
        id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        collection_id BIGINT NOT NULL REFERENCES collections(id) ON DELETE CASCADE,
        external_id TEXT NOT NULL,
        name TEXT,
        metadata TEXT NOT NULL DEFAULT '{}',
        created_at TEXT NOT NULL,
        UNIQUE (collection_id, external_id)
    );
    CREATE TABLE faces (
        id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        subject_id BIGINT NOT NULL REFERENCES subjects(id) ON DELETE CASCADE,
        collection_id BIGINT NOT NULL REFERENCES collections(id) ON DELETE CASCADE,
        model_id TEXT NOT NULL,
        embedding BYTEA NOT NULL,
        box TEXT,
        score DOUBLE PRECISION,
        image_sha256 TEXT,
        created_at TEXT NOT NULL,
        cohort_mean DOUBLE PRECISION,
        cohort_sd DOUBLE PRECISION
    );
    CREATE INDEX faces_by_collection ON faces (collection_id, id);
    CREATE INDEX faces_by_subject ON faces (subject_id);
    CREATE INDEX faces_by_photo ON faces (subject_id, image_sha256);
    CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE face_thumbnails (
        face_id BIGINT PRIMARY KEY REFERENCES faces(id) ON DELETE CASCADE,
        jpeg BYTEA NOT NULL
    );
    CREATE TABLE changes (
        seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        collection_id BIGINT NOT NULL,
        op TEXT NOT NULL,
        face_id BIGINT
    );
    """,
)
SCHEMA_VERSION = len(_MIGRATIONS)

_INSERT_FACE = (
    "INSERT INTO faces (subject_id, collection_id, model_id, embedding, box, score, image_sha256, created_at,"
    " cohort_mean, cohort_sd) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id"
)

# Errors that mean the server is away (down, restarting, unreachable), not that the request was wrong.
_AWAY = (psycopg.OperationalError, PoolTimeout)


@lru_cache(maxsize=512)
def _placeholders(sql: str) -> str:
    """The shared SQL's `?` placeholders as psycopg's `%s`."""
    return sql.replace("?", "%s")


class _Connection:
    """A psycopg connection that takes the shared SQL."""

    def __init__(self, connection: psycopg.Connection[Any]) -> None:
        self._connection = connection

    def execute(self, sql: str, params: Any = (), /) -> Any:
        return self._connection.execute(_placeholders(sql), params or None)

    def cursor(self) -> psycopg.Cursor[Any]:
        return self._connection.cursor()

    def executemany(self, sql: str, rows: Iterable[Any], /) -> Any:
        rows = list(rows)
        if rows:
            with self._connection.cursor() as cursor:
                cursor.executemany(_placeholders(sql), rows)


def redacted(url: str) -> str:
    """A database URL without its password, for messages and logs."""
    try:
        parts = conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "postgresql://(unparsable URL)"
    user = parts.get("user", "")
    return f"postgresql://{user}@{parts.get('host', '')}:{parts.get('port', 5432)}/{parts.get('dbname', '')}"


class PostgresStore(GalleryStore):
    """The gallery in a PostgreSQL database, shared by every replica."""

    FACE_ID_LIST = "string_agg(f.id::text, ',')"
    CHUNK = 5000

    def __init__(self, url: str, pool_size: int = 8, timeout_s: float = 5.0) -> None:
        self.url = url
        self._timeout = timeout_s
        self._pool = ConnectionPool(
            url,
            min_size=1,
            max_size=pool_size,
            kwargs={"autocommit": True, "connect_timeout": max(1, round(timeout_s))},
            check=ConnectionPool.check_connection,  # a connection the server dropped is not handed out
            open=False,
            name="faceverify",
        )
        try:
            self._pool.open(wait=True, timeout=timeout_s)
        except _AWAY as error:
            self._pool.close()
            raise StoreUnavailable(f"PostgreSQL at {self.where} cannot be reached: {error}") from None
        self._migrate()

    @property
    def where(self) -> str:
        """The server and database, without the password."""
        return redacted(self.url)

    def _migrate(self) -> None:
        """Bring the database up to SCHEMA_VERSION (one replica at a time); refuse a newer one."""
        with self._transaction(MIGRATION_LOCK) as db:
            db.execute("CREATE TABLE IF NOT EXISTS faceverify_schema (version INTEGER NOT NULL)")
            row = db.execute("SELECT version FROM faceverify_schema").fetchone()
            version = 0 if row is None else int(row[0])
            if version > SCHEMA_VERSION:
                raise GalleryError(
                    f"{self.where} has schema version {version}, newer than this service's {SCHEMA_VERSION}"
                )
            for step in range(version, SCHEMA_VERSION):
                for statement in filter(str.strip, _MIGRATIONS[step].split(";")):
                    db.execute(statement)
            if row is None:
                db.execute("INSERT INTO faceverify_schema (version) VALUES (?)", (SCHEMA_VERSION,))
            else:
                db.execute("UPDATE faceverify_schema SET version = ?", (SCHEMA_VERSION,))

    @contextmanager
    def _connection(self) -> Iterator[psycopg.Connection[Any]]:
        try:
            with self._pool.connection(timeout=self._timeout) as connection:
                yield connection
        except pg_errors.DiskFull as error:
            raise InsufficientStorage(
                f"the database's disk is full ({error}): nothing was written; free space or delete data"
            ) from None
        except _AWAY as error:
            raise StoreUnavailable(
                f"PostgreSQL at {self.where} is unavailable: {_first_line(error)}"
            ) from None

    @contextmanager
    def _read(self) -> Iterator[Db]:
        with self._connection() as connection:
            yield _Connection(connection)

    @contextmanager
    def _transaction(self, lock: int) -> Iterator[Db]:
        with self._connection() as connection, connection.transaction():
            connection.execute("SELECT pg_advisory_xact_lock(%s)", (lock,))
            yield _Connection(connection)

    def _write(self) -> Any:
        """One write transaction at a time across every replica: committed on success, rolled back
        on any error."""
        return self._transaction(WRITE_LOCK)

    def _record(self, db: Db, collection_id: int, op: Any, face_ids: Any) -> int:
        seq = super()._record(db, collection_id, op, face_ids)
        # Delivered at COMMIT, to the replicas listening: a wake-up only, the table is the truth.
        db.execute("SELECT pg_notify(?, ?)", (NOTIFY_CHANNEL, str(seq)))
        return seq

    def _insert_faces(self, db: Db, rows: list[tuple[Any, ...]]) -> list[int]:
        assert isinstance(db, _Connection)  # the only connection this store hands out
        ids = []
        # One pipelined round of inserts, each giving back its id, in the order of the rows.
        with db.cursor() as cursor:
            cursor.executemany(_placeholders(_INSERT_FACE), rows, returning=True)
            while True:
                row = cursor.fetchone()
                if row is None:
                    raise StoreUnavailable("PostgreSQL returned no id for an inserted face")
                ids.append(int(row[0]))
                if not cursor.nextset():
                    break
        return ids

    shared = True

    def listener(self) -> ChangeListener:
        """A wake-up for the changes every replica makes."""
        return ChangeListener(self.url)

    def close(self) -> None:
        """Close every pooled connection."""
        self._pool.close()


class ChangeListener:
    """LISTEN on the changes channel, on a connection of its own (reopened after a loss)."""

    def __init__(self, url: str) -> None:
        self._url = url
        self._connection: psycopg.Connection[Any] | None = None

    def _listening(self) -> psycopg.Connection[Any]:
        if self._connection is None or self._connection.closed:
            self._connection = psycopg.connect(self._url, autocommit=True, connect_timeout=5)
            self._connection.execute(f"LISTEN {NOTIFY_CHANNEL}")
        return self._connection

    def wait(self, timeout: float) -> bool:
        """Whether a change was announced within the timeout (False also when the server is away)."""
        started = time.monotonic()
        try:
            for _ in self._listening().notifies(timeout=timeout, stop_after=1):
                return True
            return False
        except psycopg.Error:
            self.close()
            time.sleep(max(0.0, timeout - (time.monotonic() - started)))
            return False

    def close(self) -> None:
        """Close the connection."""
        if self._connection is not None:
            self._connection.close()
            self._connection = None


def _first_line(error: BaseException) -> str:
    return re.split(r"\n", str(error).strip(), maxsplit=1)[0]
