"""ONNX Runtime sessions: a lone request's runs spread over every core, overlapping ones keep to one."""

from __future__ import annotations

import threading

import numpy as np

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
