"""The serving engine counts each request's work, so that overlapping requests run on one core each."""

from __future__ import annotations

import asyncio
import threading

from app.api.engine import EngineSettings, ServingEngine
from app.face.pipeline import FacePipeline, PipelineSettings
from app.face.runtime import WORKLOAD, configure_threads


def test_overlapping_requests_are_counted_and_a_lone_one_is_not_shared(pipeline: FacePipeline) -> None:
    overlapping_requests = max(configure_threads(), 2)  # one per core: then each runs on one core
    engine = ServingEngine(
        pipeline.detector,
        [pipeline.embedder],
        PipelineSettings(),
        EngineSettings(workers=overlapping_requests),
    )
    all_running = threading.Barrier(overlapping_requests, timeout=10)
    seen: list[bool] = []

    def overlapping() -> None:
        all_running.wait()
        seen.append(WORKLOAD.shared)
        all_running.wait()  # none ends before all have looked

    async def requests() -> bool:
        await asyncio.gather(*(engine.run(overlapping) for _ in range(overlapping_requests)))
        return await engine.run(lambda: WORKLOAD.shared)

    try:
        alone = asyncio.run(requests())
    finally:
        engine.close()
    assert seen == [True] * overlapping_requests
    assert alone is False and not WORKLOAD.shared
