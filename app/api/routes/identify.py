"""POST /identify: who, of a collection's subjects, is this?"""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, File, Form, UploadFile

from app.api.deps import ApiKey, GalleryDep, GateDep, KeysDep, PipelineDep, SettingsDep, read_image
from app.api.inference import timed
from app.api.schemas import CandidateOut, FaceOut, IdentifyResponse, ImageFaces
from app.face.pipeline import FaceResult
from app.gallery.gallery import Candidate

router = APIRouter(tags=["faces"])


@router.post("/identify", response_model=IdentifyResponse)
async def identify(
    pipeline: PipelineDep,
    gallery: GalleryDep,
    gate: GateDep,
    keys: KeysDep,
    settings: SettingsDep,
    image: Annotated[UploadFile, File(description="photo of the person to find")],
    api_key: ApiKey = None,
    collection: Annotated[str, Form(min_length=1, max_length=128)] = "default",
    top_k: Annotated[int, Form(ge=1, le=100)] = 5,
    threshold: Annotated[float | None, Form(ge=-1.0, le=1.0)] = None,
) -> IdentifyResponse:
    """Rank the collection's subjects by their best face's similarity to the photo's largest face."""
    started = time.perf_counter()
    keys.check(api_key, collection)
    shipped = pipeline.embedder.artifact.threshold
    assert shipped is not None
    cutoff = shipped.similarity if threshold is None else threshold
    payload = await read_image(image, settings)

    def find() -> tuple[FaceResult, list[Candidate], float]:
        # One trip to the worker thread: SQLite and the index stay off the event loop.
        gallery.collection(collection)  # 404 before any inference
        (probe,), pipeline_ms = timed(pipeline.largest_faces, [payload])
        (found,) = gallery.identify(collection, probe.face.embedding[None], top_k=top_k, threshold=cutoff)
        return probe, found, pipeline_ms

    probe, candidates, pipeline_ms = await gate.run(find)
    return IdentifyResponse(
        match=bool(candidates),
        candidates=[CandidateOut(**c.__dict__) for c in candidates],
        threshold=cutoff,
        image=ImageFaces(face=FaceOut.of(probe.face.detection), faces_found=probe.faces_found),
        collection=collection,
        model_id=pipeline.model_id,
        timings_ms={
            "pipeline": round(pipeline_ms, 2),
            "total": round((time.perf_counter() - started) * 1000, 2),
        },
    )
