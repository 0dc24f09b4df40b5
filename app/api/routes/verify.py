"""POST /verify: are two faces the same person?"""

from __future__ import annotations

import time
from typing import Annotated, Literal

import numpy as np
import numpy.typing as npt
from fastapi import APIRouter, File, Form, UploadFile
from starlette.concurrency import run_in_threadpool

from app.api.deps import (
    FACE_CHOICE_HELP,
    MODEL_HELP,
    CallerDep,
    EngineDep,
    GalleryDep,
    ServiceDep,
    SettingsDep,
    face_choice,
    read_image,
)
from app.api.engine import timed
from app.api.errors import ApiError
from app.api.responses import WITH_PHOTOS, errors
from app.api.schemas import FaceOut, ImageFaces, OperatingPointOut, VerifyResponse
from app.decision.errors import OperatingPointUnsupported
from app.decision.points import Decisions, Score
from app.face.pipeline import FaceResult, Upload

router = APIRouter(tags=["faces"])


def _score(
    decisions: Decisions, score: Score, probe: npt.NDArray[np.float32], stored: npt.NDArray[np.float32]
) -> tuple[float, float]:
    """The score decided on (cosine, or its S-norm) of the stored face that scores best against the
    probe, and that face's cosine similarity."""
    sims = np.clip(stored @ probe, -1.0, 1.0).astype(np.float32)
    scores = sims
    if score == "snorm":
        if decisions.cohort is None:  # score_for never picks snorm without one; say so if it did
            raise OperatingPointUnsupported("normalised scores need the model's cohort")
        probe_mean, probe_sd = decisions.cohort.stats(probe[None])
        face_mean, face_sd = decisions.cohort.stats(stored)
        scores = decisions.cohort.normalise(sims, probe_mean, probe_sd, face_mean, face_sd)
    best = int(np.argmax(scores))
    return float(sims[best]), float(scores[best])


@router.post("/verify", response_model=VerifyResponse, responses=errors(*WITH_PHOTOS, 404))
async def verify(
    service: ServiceDep,
    gallery: GalleryDep,
    engine: EngineDep,
    caller: CallerDep,
    settings: SettingsDep,
    image_a: Annotated[UploadFile | None, File(description="first photo")] = None,
    image_b: Annotated[UploadFile | None, File(description="second photo")] = None,
    image: Annotated[
        UploadFile | None, File(description="photo to check against an enrolled subject")
    ] = None,
    subject_id: Annotated[str | None, Form(max_length=256)] = None,
    face_a: Annotated[str | None, Form(description=f"image_a's face: {FACE_CHOICE_HELP}")] = None,
    face_b: Annotated[str | None, Form(description=f"image_b's face: {FACE_CHOICE_HELP}")] = None,
    face: Annotated[str | None, Form(description=f"image's face: {FACE_CHOICE_HELP}")] = None,
    collection: Annotated[str, Form(min_length=1, max_length=128)] = "default",
    far: Annotated[
        float | None, Form(gt=0.0, lt=1.0, description="decide at this false-accept rate (calibrated)")
    ] = None,
    threshold: Annotated[
        float | None, Form(allow_inf_nan=False, description="decide at this threshold on the score")
    ] = None,
    operating_point: Annotated[
        Literal["default", "max_accuracy"] | None,
        Form(description="a named point: default (FV_VERIFY_FAR) or max_accuracy (balanced accuracy)"),
    ] = None,
    normalise: Annotated[
        bool, Form(description="decide on cohort-normalised scores (S-norm) instead of cosine")
    ] = False,
    model: Annotated[
        str | None, Form(min_length=1, max_length=200, description=f"for two photos: {MODEL_HELP}")
    ] = None,
) -> VerifyResponse:
    """Compare the largest face of two photos, or of one photo with an enrolled subject's faces (by the
    model of the subject's collection)."""
    started = time.perf_counter()
    if image_a is not None and image_b is not None:
        served = service.models.named(model)
    elif image is not None and subject_id is not None:
        caller.check(collection)  # only here: two photos use no collection; before anything is told of it
        bound = await run_in_threadpool(gallery.collection, collection)  # 404; SQLite off the event loop
        served = service.models[bound.model_id]
        if model is not None and service.models.named(model).model_id != served.model_id:
            raise ApiError(
                422,
                "invalid_field",
                f"collection {collection!r} is bound to {served.model_id}: a subject is compared by its "
                "collection's model (leave model out)",
                field="model",
            )
    else:
        raise ApiError(422, "invalid_field", "send image_a and image_b, or image with subject_id")
    pipeline, decisions = served.pipeline, served.decisions
    score_kind = decisions.score_for(normalise, default=False)
    if image_a is not None and image_b is not None:
        point = decisions.verify(far, threshold, operating_point, score_kind)  # 422 before any inference
        uploads = [
            Upload("image_a", await read_image(image_a, settings, "image_a"), face_choice(face_a, "face_a")),
            Upload("image_b", await read_image(image_b, settings, "image_b"), face_choice(face_b, "face_b")),
        ]
        results, pipeline_ms = await engine.run_timed(pipeline.chosen_faces, uploads)
        first, second = results
        similarity, score = _score(decisions, score_kind, first.face.embedding, second.face.embedding[None])
        other: ImageFaces | None = ImageFaces(
            face=FaceOut.of(second.face.detection), faces_found=second.faces_found
        )
    else:
        assert image is not None and subject_id is not None  # the only other way in, checked above
        decisions.verify(far, threshold, operating_point, score_kind)  # 422 before any inference
        probe = Upload("image", await read_image(image, settings, "image"), face_choice(face, "face"))
        known = subject_id

        def compare() -> tuple[npt.NDArray[np.float32], FaceResult, float]:
            # 404 before any inference; 409 should the collection now be another model's.
            stored = gallery.subject_embeddings(collection, known, served.model_id)
            (result,), pipeline_ms = timed(pipeline.chosen_faces, [probe])
            return stored, result, pipeline_ms

        stored, first, pipeline_ms = await engine.run(compare)
        # Each of the subject's faces is a chance for a stranger to pass: the FAR holds over all of them.
        point = decisions.verify(far, threshold, operating_point, score_kind, comparisons=len(stored))
        similarity, score = _score(decisions, score_kind, first.face.embedding, stored)
        other = None
    return VerifyResponse(
        match=score >= point.threshold,
        similarity=similarity,
        distance=2.0 - 2.0 * similarity,
        score=score,
        threshold=point.threshold,
        threshold_far=point.false_accept_rate,
        operating_point=OperatingPointOut.of(point),
        image_a=ImageFaces(face=FaceOut.of(first.face.detection), faces_found=first.faces_found),
        image_b=other,
        subject_id=subject_id if other is None else None,
        model_id=pipeline.model_id,
        timings_ms={
            "pipeline": round(pipeline_ms, 2),
            "total": round((time.perf_counter() - started) * 1000, 2),
        },
    )
