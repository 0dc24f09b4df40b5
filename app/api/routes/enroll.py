"""POST /enroll: add a subject's face(s) to a collection."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Form, UploadFile
from starlette.concurrency import run_in_threadpool

from app.api.audit import audit
from app.api.deps import (
    FACE_CHOICE_HELP,
    CallerDep,
    EngineDep,
    FormCollection,
    GalleryDep,
    ServiceDep,
    SettingsDep,
    face_choice,
    read_image,
)
from app.api.fields import checked_id, parse_metadata
from app.api.responses import WITH_PHOTOS, WRITES, errors
from app.api.schemas import EnrolledFace, EnrollResponse
from app.face.pipeline import Upload
from app.gallery.store import Enrollment, NewFace

router = APIRouter(tags=["gallery"])
MAX_IMAGES = 10


@router.post(
    "/enroll",
    response_model=EnrollResponse,
    status_code=201,
    responses=errors(*WITH_PHOTOS, *WRITES, 404, 409),
)
async def enroll(
    service: ServiceDep,
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
    allow_largest: Annotated[
        bool,
        Form(description="take the largest face of a photo with several, even when it does not dominate"),
    ] = False,
    face: Annotated[str | None, Form(description=f"each photo's face: {FACE_CHOICE_HELP}")] = None,
    create_collection: Annotated[
        bool, Form(description="create the collection if it does not exist (else 404 collection_not_found)")
    ] = False,
) -> EnrollResponse:
    """Store one face per photo for the subject: a photo's only face, the one `face` names, or its
    largest when that is at least twice the area of the next (or allow_largest is set)."""
    checked_id(subject_id, "subject_id")
    checked_id(collection, "collection")
    extra = parse_metadata(metadata)
    choice = face_choice(face, "face")
    uploads = [
        Upload(f"images[{i}]", await read_image(image, settings, f"images[{i}]"), choice)
        for i, image in enumerate(images)
    ]
    if not create_collection:
        await run_in_threadpool(gallery.collection, collection)  # 404 before any inference
    # The collection's model (the default one for a collection this request creates).
    served = await run_in_threadpool(service.model_of, collection)
    pipeline = served.pipeline
    results = await engine.run(
        pipeline.enrollment_faces, uploads, allow_largest, settings.store_face_thumbnails
    )
    faces = [
        NewFace.from_photo(
            r.face.embedding, r.face.detection.box, r.face.detection.score, upload.data, r.thumbnail
        )
        for r, upload in zip(results, uploads, strict=True)
    ]  # fmt: skip
    enrollment = Enrollment(subject_id, faces, name, extra)
    # Refused (409) should the collection have been replaced by one of another model meanwhile.
    (face_ids,) = await engine.run(
        gallery.enroll, collection, [enrollment], create_collection, served.model_id
    )
    stored = [i for i, repeated in zip(face_ids, face_ids.repeated, strict=True) if not repeated]
    audit("enroll", caller, collection=collection, subject=subject_id, face_ids=stored)
    return EnrollResponse(
        collection=collection,
        subject_id=subject_id,
        face_ids=face_ids,
        faces_found=[r.faces_found for r in results],
        faces=[
            EnrolledFace(
                face_id=face_id,
                field=upload.field_name,
                box=r.face.detection.box,
                score=r.face.detection.score,
                faces_found=r.faces_found,
                duplicate=repeated,
            )
            for face_id, repeated, r, upload in zip(
                face_ids, face_ids.repeated, results, uploads, strict=True
            )
        ],
        model_id=pipeline.model_id,
        seq=face_ids.seq,
    )
