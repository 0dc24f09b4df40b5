"""Online backups of the gallery: a consistent copy of its SQLite file while the service runs.

The FAISS snapshots are not backed up: they are caches, checked against SQLite at every start and
rebuilt from it when they do not match.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path

from app.gallery.sqlite import DATABASE_NAME


@dataclass(frozen=True)
class BackupReport:
    """What a backup holds."""

    path: Path
    collections: int
    faces: int
    bytes: int


def backup_gallery(data_dir: Path, out: Path) -> BackupReport:
    """Copy data_dir's gallery into `out` with SQLite's backup API (consistent even while the service
    writes), check the copy's integrity, and count what it holds. Refuses to overwrite `out`."""
    source_path = data_dir / DATABASE_NAME
    if not source_path.is_file():
        raise FileNotFoundError(f"no gallery at {source_path}")
    if out.exists():
        raise FileExistsError(f"{out} exists; choose a new file name")
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".partial")
    partial.unlink(missing_ok=True)
    # Read-only URI: a backup must never create, migrate or lock the live database for writing.
    source = sqlite3.connect(f"{source_path.resolve().as_uri()}?mode=ro", uri=True, timeout=30)
    target = sqlite3.connect(partial)
    try:
        source.backup(target)
        (verdict,) = target.execute("PRAGMA integrity_check").fetchone()
        if verdict != "ok":
            raise sqlite3.DatabaseError(f"the backup copy fails its integrity check: {verdict}")
        (collections,) = target.execute("SELECT count(*) FROM collections").fetchone()
        (faces,) = target.execute("SELECT count(*) FROM faces").fetchone()
    finally:
        target.close()
        source.close()
    partial.replace(out)  # only a whole, checked copy takes the final name
    return BackupReport(out, collections, faces, out.stat().st_size)
