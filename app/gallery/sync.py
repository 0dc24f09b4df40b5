"""A replica's indexes following the shared store's changes feed: woken by the store's notifications
and polling as well, so that a lost wake-up delays a change by one poll at most, and a replica that
was cut off (the database restarting, the network) catches up from where it stopped."""

from __future__ import annotations

import logging
import threading
import time

from app.gallery.errors import GalleryError
from app.gallery.gallery import Gallery
from app.gallery.store import Wakeup

log = logging.getLogger("faceverify.sync")


class ChangeFollower:
    """A thread that applies the store's changes to the gallery's indexes as they come."""

    def __init__(self, gallery: Gallery, wakeup: Wakeup | None = None, poll_s: float = 0.5) -> None:
        self.gallery = gallery
        self._wakeup = wakeup
        self._poll_s = poll_s
        self._stop = threading.Event()
        self.failing_since: float | None = None  # monotonic time of the first failure in a row
        self._thread = threading.Thread(target=self._run, name="change-follower", daemon=True)

    def start(self) -> ChangeFollower:
        """Start following."""
        self._thread.start()
        return self

    def _run(self) -> None:
        backoff = self._poll_s
        while not self._stop.is_set():
            try:
                self.gallery.catch_up()
                self.gallery.retry_index_writes()  # a shared index server's failed writes, if any
            except GalleryError as error:
                if self.failing_since is None:
                    self.failing_since = time.monotonic()
                    log.warning("cannot follow the store's changes (%s): retrying", error)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            if self.failing_since is not None:
                log.info("following the store's changes again, at %d", self.gallery.applied_seq)
                self.failing_since = None
            backoff = self._poll_s
            if self._wakeup is None:
                self._stop.wait(self._poll_s)
            else:
                self._wakeup.wait(self._poll_s)

    def close(self) -> None:
        """Stop following (the thread ends within one poll)."""
        self._stop.set()
        self._thread.join(timeout=10)
        if self._wakeup is not None:
            self._wakeup.close()
