"""POST /identify: who, of a collection's subjects, is this? An open-set decision at a stated FPIR."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, File, Form, UploadFile

from app.api.deps import (
    DecisionsDep,
    EngineDep,
    FormCollection,
    GalleryDep,
    MetricsDep,
    PipelineDep,
    SettingsDep,
    read_image,
)
from app.api.engine import timed
from app.api.responses import WITH_PHOTOS, errors
from app.api.schemas import CandidateOut, FaceOut, IdentifyResponse, ImageFaces, OperatingPointOut
from app.face.pipeline import FaceResult
from app.gallery.gallery import Ranking

router = APIRouter(tags=["faces"])


@router.post("/identify", response_model=IdentifyResponse, responses=errors(*WITH_PHOTOS, 404))
async def identify(
    pipeline: PipelineDep,
    gallery: GalleryDep,
    engine: EngineDep,
    settings: SettingsDep,
    decisions: DecisionsDep,
    metrics: MetricsDep,
    collection: FormCollection,
    image: Annotated[UploadFile, File(description="photo of the person to find")],
    top_k: Annotated[int, Form(ge=1, le=100)] = 5,
    fpir: Annotated[
        float | None,
        Form(ge=1e-6, lt=1.0, description="hold this false-positive identification rate (FV_IDENTIFY_FPIR)"),
    ] = None,
    threshold: Annotated[
        float | None, Form(allow_inf_nan=False, description="decide at this threshold on the score instead")
    ] = None,
    include_misses: Annotated[
        bool, Form(description="also list the nearest candidates below the threshold, with match false")
    ] = False,
    normalise: Annotated[
        bool | None,
        Form(description="decide on cohort-normalised scores (default: FV_SCORE_NORMALISATION)"),
    ] = None,
) -> IdentifyResponse:
    """Rank the collection's subjects against the photo's largest face; match at the stated FPIR."""
    started = time.perf_counter()
    score_kind = decisions.score_for(normalise, default=settings.score_normalisation)
    decisions.identify(1, fpir, threshold, score_kind)  # 422 before any inference
    payload = await read_image(image, settings)

    def find() -> tuple[FaceResult, Ranking, float]:
        # One trip to the worker thread: SQLite and the index stay off the event loop.
        gallery.collection(collection)  # 404 before any inference
        (probe,), pipeline_ms = timed(pipeline.largest_faces, [payload])
        # One more than asked: the margin needs the second candidate.
        searching = time.perf_counter()
        (ranking,) = gallery.rank(collection, probe.face.embedding[None], top_k + 1, score_kind == "snorm")
        metrics.observe_stage("search", time.perf_counter() - searching)
        return probe, ranking, pipeline_ms

    probe, ranking, pipeline_ms = await engine.run(find)
    point = decisions.identify(ranking.faces_searched, fpir, threshold, score_kind)
    ranked = ranking.candidates
    shown = [c for c in ranked[:top_k] if include_misses or c.score >= point.threshold]
    candidates = [
        CandidateOut(
            subject_id=c.subject_id, name=c.name, similarity=c.similarity, score=c.score,
            match=c.score >= point.threshold, face_id=c.face_id,
        )
        for c in shown
    ]  # fmt: skip
    return IdentifyResponse(
        match=bool(ranked) and ranked[0].score >= point.threshold,
        candidates=candidates,
        threshold=point.threshold,
        fpir=point.false_accept_rate,
        margin=ranked[0].score - ranked[1].score if len(ranked) >= 2 else None,
        operating_point=OperatingPointOut.of(point),
        image=ImageFaces(face=FaceOut.of(probe.face.detection), faces_found=probe.faces_found),
        collection=collection,
        model_id=pipeline.model_id,
        timings_ms={
            "pipeline": round(pipeline_ms, 2),
            "total": round((time.perf_counter() - started) * 1000, 2),
        },
    )
