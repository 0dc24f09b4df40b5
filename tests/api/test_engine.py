"""The serving engine counts each request's work, so that overlapping requests run on one core each."""

from __future__ import annotations

import asyncio
import threading

from app.api.engine import EngineSettings, ServingEngine
from app.face.pipeline import FacePipeline, PipelineSettings
from app.face.runtime import WORKLOAD


def test_overlapping_requests_are_counted_and_a_lone_one_is_not_shared(pipeline: FacePipeline) -> None:
    engine = ServingEngine(
        pipeline.detector, [pipeline.embedder], PipelineSettings(), EngineSettings(workers=2)
    )
    both_running = threading.Barrier(2, timeout=10)
    seen: list[bool] = []

    def overlapping() -> None:
        both_running.wait()
        seen.append(WORKLOAD.shared)
        both_running.wait()  # neither ends before both have looked

    async def requests() -> bool:
        await asyncio.gather(engine.run(overlapping), engine.run(overlapping))
        return await engine.run(lambda: WORKLOAD.shared)

    try:
        alone = asyncio.run(requests())
    finally:
        engine.close()
    assert seen == [True, True]
    assert alone is False and not WORKLOAD.shared
