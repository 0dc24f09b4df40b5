"""Which store the settings name: the embedded SQLite file, or a shared PostgreSQL database."""

from __future__ import annotations

from pathlib import Path

from app.gallery.sqlite import SQLiteStore
from app.gallery.store import GalleryStore


def open_store(data_dir: Path, database_url: str | None, pool_size: int = 8) -> GalleryStore:
    """PostgreSQL where a database URL is given (psycopg, the `postgres` extra), else SQLite in data_dir."""
    if not database_url:
        return SQLiteStore(data_dir)
    from app.gallery.postgres import PostgresStore  # psycopg is needed only here

    return PostgresStore(database_url, pool_size)
