"""Micro-batching: concurrent callers share embedder calls and each gets exactly its own rows."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from app.face.batcher import EmbedBatcher
from app.face.embedder import Embedder
from app.face.pipeline import PipelineSettings, embed_directly
from app.face.runtime import WORKLOAD, configure_threads


def test_concurrent_chips_are_batched_and_returned_to_their_callers(
    embedder: Embedder, dlib_chips: np.ndarray
) -> None:
    chips = dlib_chips[:12]
    expected = embedder.embed(chips, flip_average=True)
    batches: list[int] = []
    batcher = EmbedBatcher(
        embed_directly(embedder, PipelineSettings(flip_average=True)),
        max_batch=16,
        max_wait_ms=50,
        in_flight=lambda: 12,
        on_batch=batches.append,
    )
    results: dict[int, np.ndarray] = {}
    start = threading.Barrier(12)

    def call(i: int) -> None:
        start.wait()
        results[i] = batcher.embed(chips[i : i + 1])

    threads = [threading.Thread(target=call, args=(i,)) for i in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    batcher.close()
    assert sum(batches) == 12
    assert max(batches) > 1, "no two requests shared an embedder call"
    for i in range(12):
        assert np.abs(results[i][0] - expected[i]).max() <= 1e-5


def test_a_lone_caller_does_not_wait(embedder: Embedder, dlib_chips: np.ndarray) -> None:
    batcher = EmbedBatcher(
        embed_directly(embedder, PipelineSettings(flip_average=False)), max_wait_ms=5_000, in_flight=lambda: 1
    )
    started = time.perf_counter()
    batcher.embed(dlib_chips[:1])
    assert time.perf_counter() - started < 1.0
    batcher.close()


def test_errors_reach_every_waiting_caller(embedder: Embedder) -> None:
    batcher = EmbedBatcher(embed_directly(embedder, PipelineSettings(flip_average=False)))
    with pytest.raises(ValueError, match="chips must be uint8"):
        batcher.embed(np.zeros((1, 10, 10, 3), np.uint8))
    batcher.close()


def test_a_batchs_callers_count_as_one_request_while_it_runs(embedder: Embedder) -> None:
    # One caller per core, all in one batch: while it runs they only wait on it, so the run may spread
    # over every core; before it and after it they count one each again.
    callers = max(configure_threads(), 2)
    seen: list[bool] = []

    def embed(chips: np.ndarray) -> np.ndarray:
        seen.append(WORKLOAD.shared)
        return embedder.embed(chips, flip_average=False)

    batcher = EmbedBatcher(embed, max_batch=16, max_wait_ms=5000, in_flight=lambda: callers)
    chips = np.random.default_rng(3).integers(0, 256, (callers, 150, 150, 3), dtype=np.uint8)
    arrived, results = threading.Barrier(callers), {}
    overlapped: list[bool] = []

    def call(i: int) -> None:
        with WORKLOAD.working():
            arrived.wait(10)
            overlapped.append(WORKLOAD.shared)
            results[i] = batcher.embed(chips[i : i + 1])

    threads = [threading.Thread(target=call, args=(i,)) for i in range(callers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    batcher.close()
    assert all(overlapped) and seen == [False]
    assert not WORKLOAD.shared
    expected = embedder.embed(chips, flip_average=False)
    for i in range(callers):
        np.testing.assert_allclose(results[i], expected[i : i + 1], atol=1e-5)
