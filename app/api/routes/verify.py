"""POST /verify: are two faces the same person?"""

from __future__ import annotations

import time
from typing import Annotated

import numpy as np
import numpy.typing as npt
from fastapi import APIRouter, File, Form, UploadFile

from app.api.deps import ApiKey, GalleryDep, GateDep, KeysDep, PipelineDep, SettingsDep, read_image
from app.api.errors import ApiError
from app.api.inference import timed
from app.api.schemas import FaceOut, ImageFaces, VerifyResponse
from app.face.pipeline import FaceResult

router = APIRouter(tags=["faces"])


@router.post("/verify", response_model=VerifyResponse)
async def verify(
    pipeline: PipelineDep,
    gallery: GalleryDep,
    gate: GateDep,
    keys: KeysDep,
    settings: SettingsDep,
    api_key: ApiKey = None,
    image_a: Annotated[UploadFile | None, File(description="first photo")] = None,
    image_b: Annotated[UploadFile | None, File(description="second photo")] = None,
    image: Annotated[
        UploadFile | None, File(description="photo to check against an enrolled subject")
    ] = None,
    subject_id: Annotated[str | None, Form(max_length=256)] = None,
    collection: Annotated[str, Form(min_length=1, max_length=128)] = "default",
) -> VerifyResponse:
    """Compare the largest face of two photos, or of one photo with an enrolled subject's faces."""
    started = time.perf_counter()
    threshold = pipeline.embedder.artifact.threshold
    assert threshold is not None
    if image_a is not None and image_b is not None:
        keys.check(api_key, None)
        payloads = [await read_image(image_a, settings), await read_image(image_b, settings)]
        results, pipeline_ms = await gate.run_timed(pipeline.largest_faces, payloads)
        first, second = results
        similarity = float(first.face.embedding @ second.face.embedding)
        other: ImageFaces | None = ImageFaces(
            face=FaceOut.of(second.face.detection), faces_found=second.faces_found
        )
    elif image is not None and subject_id is not None:
        keys.check(api_key, collection)
        payload = await read_image(image, settings)
        known = subject_id

        def compare() -> tuple[npt.NDArray[np.float32], FaceResult, float]:
            stored = gallery.subject_embeddings(collection, known)  # 404 before any inference
            (result,), pipeline_ms = timed(pipeline.largest_faces, [payload])
            return stored, result, pipeline_ms

        stored, first, pipeline_ms = await gate.run(compare)
        similarity = float((stored @ first.face.embedding).max()) if len(stored) else -1.0
        other = None
    else:
        raise ApiError(422, "invalid_field", "send image_a and image_b, or image with subject_id")
    similarity = float(np.clip(similarity, -1.0, 1.0))
    return VerifyResponse(
        match=similarity >= threshold.similarity,
        similarity=similarity,
        distance=2.0 - 2.0 * similarity,
        threshold=threshold.similarity,
        threshold_far=threshold.far,
        image_a=ImageFaces(face=FaceOut.of(first.face.detection), faces_found=first.faces_found),
        image_b=other,
        subject_id=subject_id if other is None else None,
        model_id=pipeline.model_id,
        timings_ms={
            "pipeline": round(pipeline_ms, 2),
            "total": round((time.perf_counter() - started) * 1000, 2),
        },
    )
