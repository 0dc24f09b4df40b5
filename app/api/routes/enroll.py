"""POST /enroll: add a subject's face(s) to a collection."""

from __future__ import annotations

import hashlib
from typing import Annotated

from fastapi import APIRouter, File, Form, UploadFile

from app.api.audit import audit
from app.api.deps import (
    CallerDep,
    EngineDep,
    FormCollection,
    GalleryDep,
    PipelineDep,
    SettingsDep,
    read_image,
)
from app.api.fields import checked_id, parse_metadata
from app.api.responses import WITH_PHOTOS, WRITES, errors
from app.api.schemas import EnrollResponse
from app.face.pipeline import FaceResult
from app.gallery.store import Enrollment, NewFace

router = APIRouter(tags=["gallery"])
MAX_IMAGES = 10


@router.post(
    "/enroll", response_model=EnrollResponse, status_code=201, responses=errors(*WITH_PHOTOS, *WRITES, 409)
)
async def enroll(
    pipeline: PipelineDep,
    gallery: GalleryDep,
    engine: EngineDep,
    caller: CallerDep,
    settings: SettingsDep,
    collection: FormCollection,
    subject_id: Annotated[str, Form(min_length=1, max_length=256)],
    images: Annotated[
        list[UploadFile],
        File(min_length=1, max_length=MAX_IMAGES, description=f"one to {MAX_IMAGES} photos of the subject"),
    ],
    name: Annotated[str | None, Form(max_length=256)] = None,
    metadata: Annotated[str | None, Form(description="a JSON object", max_length=65_536)] = None,
    allow_largest: Annotated[bool, Form(description="use the largest face of a photo with several")] = False,
) -> EnrollResponse:
    """Embed exactly one face per photo (or the largest, if asked) and store them for the subject."""
    checked_id(subject_id, "subject_id")
    checked_id(collection, "collection")
    extra = parse_metadata(metadata)
    payloads = [await read_image(upload, settings) for upload in images]

    def embed_all() -> list[FaceResult]:
        return [pipeline.single_face(data, allow_largest) for data in payloads]

    results = await engine.run(embed_all)
    faces = [
        NewFace(
            r.face.embedding, r.face.detection.box, r.face.detection.score, hashlib.sha256(data).hexdigest()
        )
        for r, data in zip(results, payloads, strict=True)
    ]
    (face_ids,) = await engine.run(gallery.enroll, collection, [Enrollment(subject_id, faces, name, extra)])
    audit("enroll", caller, collection=collection, subject=subject_id, face_ids=face_ids)
    return EnrollResponse(
        collection=collection,
        subject_id=subject_id,
        face_ids=face_ids,
        faces_found=[r.faces_found for r in results],
        model_id=pipeline.model_id,
    )
