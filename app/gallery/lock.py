"""One server per data directory: an exclusive lock on a file beside the gallery, held while serving."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from app.gallery.errors import DataDirLocked

LOCK_NAME = "server.lock"


class DataDirLock:
    """flock on data_dir/server.lock: the kernel drops it when the holder exits, however it exits."""

    def __init__(self, data_dir: Path) -> None:
        data_dir.mkdir(parents=True, exist_ok=True)
        self.path = data_dir / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock, or DataDirLocked naming the process that holds it."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise DataDirLocked(
                f"{self.path.parent} is in use by another faceverify server (pid {holder}): the embedded "
                "gallery serves one process; give each server its own FV_DATA_DIR, or use a shared "
                "database for several"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        """Let the next server in."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> DataDirLock:
        self.acquire()
        return self

    def __exit__(self, *_: object) -> None:
        self.release()
