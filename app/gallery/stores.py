"""Which store and index the settings name: the embedded SQLite file or a shared PostgreSQL database;
FAISS in the process or a shared Milvus server."""

from __future__ import annotations

from pathlib import Path

from app.gallery.index import FaissIndexes, IndexMaker, IndexSettings
from app.gallery.milvus import MilvusSettings
from app.gallery.sqlite import SQLiteStore
from app.gallery.store import GalleryStore


def open_store(data_dir: Path, database_url: str | None, pool_size: int = 8) -> GalleryStore:
    """PostgreSQL where a database URL is given (psycopg, the `postgres` extra), else SQLite in data_dir."""
    if not database_url:
        return SQLiteStore(data_dir)
    from app.gallery.postgres import PostgresStore  # psycopg is needed only here

    return PostgresStore(database_url, pool_size)


def open_indexes(kind: str, faiss: IndexSettings, milvus: MilvusSettings) -> IndexMaker:
    """FAISS indexes in this process, or a connection to the Milvus server (pymilvus, the `milvus` extra)."""
    if kind != "milvus":
        return FaissIndexes(faiss)
    from app.gallery.milvus import MilvusEngine  # pymilvus is needed only here

    return MilvusEngine(milvus)
