"""ONNX Runtime sessions: a lone request's runs spread over every core, overlapping ones keep to one."""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import pytest

from app.face.pipeline import FacePipeline
from app.face.runtime import WORKLOAD, configure_threads


def test_overlapping_work_runs_on_the_serial_session_with_the_same_results(pipeline: FacePipeline) -> None:
    session = pipeline.embedder.session
    chips = np.random.default_rng(0).integers(0, 256, (3, 150, 150, 3), dtype=np.uint8)
    feeds = {"chips": chips}
    assert not WORKLOAD.shared
    assert session.current() is session.parallel
    alone = session.run(None, feeds)[0]
    others = max(configure_threads(), 2) - 1  # with this test's own work: one request per core
    started, release = threading.Semaphore(0), threading.Event()

    def other_request() -> None:
        with WORKLOAD.working():
            started.release()
            release.wait(10)

    threads = [threading.Thread(target=other_request) for _ in range(others)]
    for thread in threads:
        thread.start()
    for _ in threads:
        assert started.acquire(timeout=10)
    try:
        with WORKLOAD.working():
            assert WORKLOAD.shared
            if configure_threads() > 1:
                assert session.current() is session.serial is not session.parallel
            overlapping = session.run(None, feeds)[0]
        # The others alone are one request fewer than the cores: each run is spread over them again.
        assert not WORKLOAD.shared and session.current() is session.parallel
    finally:
        release.set()
        for thread in threads:
            thread.join()
    assert not WORKLOAD.shared
    np.testing.assert_allclose(overlapping, alone, atol=1e-5)


def test_small_work_runs_on_the_serial_session_even_alone(
    pipeline: FacePipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    session = pipeline.detector.pnet
    window = np.random.default_rng(1).uniform(0, 255, (1, 12, 12, 3)).astype(np.float32)
    used: list[str] = []
    for name in ("serial", "parallel"):
        chosen = getattr(session, name)
        monkeypatch.setattr(session, name, _Recording(chosen, name, used))
    assert not WORKLOAD.shared
    small = session.run(None, {"images": window}, small=True)
    whole = session.run(None, {"images": window})
    assert used[0] == "serial" and used[1] == ("serial" if configure_threads() == 1 else "parallel")
    for a, b in zip(small, whole, strict=True):
        np.testing.assert_array_equal(a, b)


class _Recording:
    """A session that notes its name each time it runs."""

    def __init__(self, session: Any, name: str, used: list[str]) -> None:
        self.session, self.name, self.used = session, name, used

    def run(self, outputs: Any, feeds: Any) -> Any:
        self.used.append(self.name)
        return self.session.run(outputs, feeds)
