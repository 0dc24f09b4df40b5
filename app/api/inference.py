"""Runs the pipeline off the event loop on a bounded queue: past its depth, requests get 503."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import TypeVar

from app.api.errors import Overloaded

T = TypeVar("T")


def timed(work: Callable[..., T], *args: object) -> tuple[T, float]:
    """work(*args) and the milliseconds it took."""
    started = time.perf_counter()
    result = work(*args)
    return result, (time.perf_counter() - started) * 1000


class InferenceGate:
    """A thread pool for blocking work with a cap on the requests waiting for it."""

    def __init__(self, workers: int, max_pending: int) -> None:
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="inference")
        self._max_pending = max_pending
        self._pending = 0
        self._lock = threading.Lock()

    @property
    def pending(self) -> int:
        """Requests queued or running now."""
        return self._pending

    async def run(self, work: Callable[..., T], *args: object) -> T:
        """Run work(*args) in the pool; Overloaded (503) when the queue is full."""
        with self._lock:
            if self._pending >= self._max_pending:
                raise Overloaded()
            self._pending += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, partial(work, *args))
        finally:
            with self._lock:
                self._pending -= 1

    async def run_timed(self, work: Callable[..., T], *args: object) -> tuple[T, float]:
        """run(), also returning the milliseconds the work itself took (queueing and hand-off excluded)."""
        return await self.run(timed, work, *args)

    def close(self) -> None:
        """Stop the workers once queued work is done."""
        self._executor.shutdown(wait=True)
