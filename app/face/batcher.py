"""Micro-batching: chips from concurrent requests go through the embedder together."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future

import numpy as np
import numpy.typing as npt

from app.face.runtime import WORKLOAD

Chips = npt.NDArray[np.uint8]
Vectors = npt.NDArray[np.float32]
EmbedChips = Callable[[Chips], Vectors]


class EmbedBatcher:
    """One thread runs `embed`; callers hand it chips and wait for their rows.

    It gathers up to max_batch chips, waiting at most max_wait_ms for more, and only while more
    requests are in flight than it has gathered (in_flight), so a lone request never waits.
    """

    def __init__(
        self,
        embed: EmbedChips,
        max_batch: int = 16,
        max_wait_ms: float = 2.0,
        in_flight: Callable[[], int] | None = None,
        on_batch: Callable[[int], None] | None = None,
    ) -> None:
        self._embed_batch = embed
        self.max_batch = max_batch
        self.max_wait = max_wait_ms / 1000
        self.in_flight = in_flight or (lambda: 1)
        self.on_batch = on_batch
        self._queue: queue.Queue[tuple[Chips, Future[Vectors]] | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="embed-batcher", daemon=True)
        self._thread.start()

    def embed(self, chips: Chips) -> Vectors:
        """Embed chips with those of concurrent callers; blocks until this caller's rows are ready."""
        future: Future[Vectors] = Future()
        self._queue.put((chips, future))
        return future.result()

    def _gather(
        self, first: tuple[Chips, Future[Vectors]]
    ) -> tuple[list[tuple[Chips, Future[Vectors]]], bool]:
        items, count = [first], len(first[0])
        deadline = time.monotonic() + self.max_wait
        while count < self.max_batch:
            try:
                if len(items) < self.in_flight():
                    item = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
                else:
                    item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is None:
                return items, True
            items.append(item)
            count += len(item[0])
        return items, False

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            items, stopping = self._gather(first)
            try:
                # The callers of the batch wait on this one run: counted as one request while it runs,
                # it may spread over the cores that their waiting leaves idle.
                with WORKLOAD.standing_by(len(items) - 1):
                    vectors = self._embed_batch(np.concatenate([c for c, _ in items]))
            except Exception as exc:  # every waiting caller gets the error, none hangs
                for _, future in items:
                    future.set_exception(exc)
            else:
                start = 0
                for chips, future in items:
                    future.set_result(vectors[start : start + len(chips)])
                    start += len(chips)
                if self.on_batch is not None:
                    self.on_batch(len(vectors))
            if stopping:
                return

    def close(self) -> None:
        """Finish queued work and stop the thread."""
        self._queue.put(None)
        self._thread.join(timeout=30)
