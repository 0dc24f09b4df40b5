"""POST /identify: who, of a collection's subjects, is this? An open-set decision at a stated FPIR."""

from __future__ import annotations

import time
from typing import Annotated, Literal

import numpy as np
from fastapi import APIRouter, File, Form, UploadFile

from app.api.deps import (
    AFTER_SEQ_HELP,
    FACE_CHOICE_HELP,
    EngineDep,
    FormCollection,
    GalleryDep,
    MetricsDep,
    ServiceDep,
    SettingsDep,
    ensure_seen,
    face_choice,
    read_image,
)
from app.api.responses import WITH_PHOTOS, errors
from app.api.schemas import (
    CandidateOut,
    FaceOut,
    IdentifiedFace,
    IdentifyResponse,
    ImageFaces,
    OperatingPointOut,
)
from app.api.state import ServedModel
from app.decision.points import Score
from app.face.pipeline import Face, FaceResult, Upload
from app.gallery.gallery import Ranking

router = APIRouter(tags=["faces"])


@router.post("/identify", response_model=IdentifyResponse, responses=errors(*WITH_PHOTOS, 404))
async def identify(
    service: ServiceDep,
    gallery: GalleryDep,
    engine: EngineDep,
    settings: SettingsDep,
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
    face: Annotated[str | None, Form(description=FACE_CHOICE_HELP)] = None,
    faces: Annotated[
        Literal["one", "all"],
        Form(description="all: also answer for every face of the photo (at most FV_MAX_IDENTIFY_FACES)"),
    ] = "one",
    after_seq: Annotated[int | None, Form(ge=0, description=AFTER_SEQ_HELP)] = None,
) -> IdentifyResponse:
    """Rank the collection's subjects against the photo's chosen face (and, with faces=all, against
    each of its faces), by the model the collection is bound to; match at the stated FPIR."""
    started = time.perf_counter()
    upload = Upload("image", await read_image(image, settings, "image"), face_choice(face, "face"))

    def find() -> tuple[ServedModel, Score, FaceResult, list[Face], list[Ranking], float]:
        # One trip to the worker thread: SQLite and the index stay off the event loop.
        ensure_seen(gallery, after_seq)
        served = service.models[gallery.collection(collection).model_id]  # 404 before any inference
        pipeline, decisions = served.pipeline, served.decisions
        score_kind = decisions.score_for(normalise, default=settings.score_normalisation)
        decisions.identify(1, fpir, threshold, score_kind)  # 422 before any inference
        started = time.perf_counter()
        if faces == "all":
            probe, every = pipeline.every_face(upload, settings.max_identify_faces)
        else:
            (probe,), every = pipeline.chosen_faces([upload]), []
        pipeline_ms = (time.perf_counter() - started) * 1000
        # Every face, or the chosen one alone; one search for all of them.
        probes = np.stack([f.embedding for f in every] or [probe.face.embedding])
        # One more than asked: the margin needs the second candidate.
        searching = time.perf_counter()
        rankings = gallery.rank(collection, probes, top_k + 1, score_kind == "snorm", served.model_id)
        metrics.observe_stage("search", time.perf_counter() - searching)
        return served, score_kind, probe, every, rankings, pipeline_ms

    served, score_kind, probe, every, rankings, pipeline_ms = await engine.run(find)
    decisions = served.decisions
    chosen = next((i for i, f in enumerate(every) if f.detection == probe.face.detection), 0)
    point = decisions.identify(rankings[0].faces_searched, fpir, threshold, score_kind)

    def decided(ranking: Ranking) -> tuple[bool, list[CandidateOut], float | None]:
        ranked = ranking.candidates
        shown = [c for c in ranked[:top_k] if include_misses or c.score >= point.threshold]
        candidates = [
            CandidateOut(
                subject_id=c.subject_id, name=c.name, similarity=c.similarity, score=c.score,
                match=c.score >= point.threshold, face_id=c.face_id,
            )
            for c in shown
        ]  # fmt: skip
        margin = ranked[0].score - ranked[1].score if len(ranked) >= 2 else None
        return bool(ranked) and ranked[0].score >= point.threshold, candidates, margin

    match, candidates, margin = decided(rankings[chosen])
    every_face = None
    if faces == "all":
        every_face = [
            IdentifiedFace(face=FaceOut.of(f.detection), match=m, candidates=c, margin=g)
            for f, (m, c, g) in zip(every, [decided(r) for r in rankings], strict=True)
        ]
    return IdentifyResponse(
        match=match,
        candidates=candidates,
        threshold=point.threshold,
        fpir=point.false_accept_rate,
        margin=margin,
        operating_point=OperatingPointOut.of(point),
        image=ImageFaces(face=FaceOut.of(probe.face.detection), faces_found=probe.faces_found),
        faces=every_face,
        collection=collection,
        model_id=served.model_id,
        timings_ms={
            "pipeline": round(pipeline_ms, 2),
            "total": round((time.perf_counter() - started) * 1000, 2),
        },
    )
