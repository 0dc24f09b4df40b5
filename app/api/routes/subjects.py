"""Enrolled subjects of a collection: list, get, change, delete; a subject's faces: list, move, delete."""

from __future__ import annotations

from functools import partial
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, Response
from starlette.concurrency import run_in_threadpool

from app.api.audit import audit
from app.api.deps import CallerDep, EngineDep, GalleryDep, QueryCollection
from app.api.fields import checked_id, json_body, json_body_schema
from app.api.responses import WRITES, errors
from app.api.schemas import (
    Deleted,
    FaceChange,
    FaceMove,
    FaceRecordOut,
    SubjectFaces,
    SubjectOut,
    SubjectPage,
    SubjectPatch,
)
from app.gallery.store import Subject

FaceId = Annotated[int, Path(ge=1, le=2**63 - 1)]
JPEG_SCHEMA = {"type": "string", "format": "binary"}

router = APIRouter(prefix="/subjects", tags=["gallery"])


def _out(subject: Subject) -> SubjectOut:
    return SubjectOut(
        subject_id=subject.external_id,
        name=subject.name,
        metadata=subject.metadata,
        created_at=subject.created_at,
        face_ids=list(subject.face_ids),
    )


@router.get("", response_model=SubjectPage, responses=errors(404))
async def list_subjects(
    gallery: GalleryDep,
    collection: QueryCollection,
    offset: Annotated[int, Query(ge=0, le=10**9)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    search: Annotated[
        str | None, Query(min_length=1, max_length=256, description="only those whose id or name holds this")
    ] = None,
) -> SubjectPage:
    """A page of a collection's subjects, oldest first (with search: those whose id or name holds it,
    ASCII letters in either case)."""
    # Off the event loop: a write holding the gallery's lock must not stall every other request.
    subjects, total = await run_in_threadpool(gallery.subjects, collection, offset, limit, search)
    return SubjectPage(
        collection=collection, subjects=[_out(s) for s in subjects], total=total, offset=offset, limit=limit
    )


@router.get("/{subject_id}", response_model=SubjectOut, responses=errors(404))
async def get_subject(
    subject_id: str,
    gallery: GalleryDep,
    collection: QueryCollection,
) -> SubjectOut:
    """One subject with its face ids."""
    return _out(await run_in_threadpool(gallery.subject, collection, subject_id))


@router.delete("/{subject_id}", response_model=Deleted, responses=errors(404, *WRITES))
async def delete_subject(
    subject_id: str,
    gallery: GalleryDep,
    engine: EngineDep,
    collection: QueryCollection,
    caller: CallerDep,
) -> Deleted:
    """Delete a subject and every face of it."""
    face_ids = await engine.run(gallery.delete_subject, collection, subject_id)
    audit("delete_subject", caller, collection=collection, subject=subject_id, face_ids=face_ids)
    return Deleted(deleted_faces=len(face_ids))


@router.delete("/{subject_id}/faces/{face_id}", response_model=FaceChange, responses=errors(404, *WRITES))
async def delete_face(
    subject_id: str,
    face_id: FaceId,
    gallery: GalleryDep,
    engine: EngineDep,
    collection: QueryCollection,
    caller: CallerDep,
) -> FaceChange:
    """Delete one face of a subject."""
    subject_deleted = await engine.run(gallery.delete_face, collection, subject_id, face_id)
    audit("delete_face", caller, collection=collection, subject=subject_id, face_ids=[face_id])
    return FaceChange(deleted_faces=1, subject_deleted=subject_deleted)


@router.patch(
    "/{subject_id}",
    response_model=SubjectOut,
    responses=errors(404, *WRITES),
    openapi_extra=json_body_schema(SubjectPatch),
)
async def update_subject(
    subject_id: str,
    request: Request,
    gallery: GalleryDep,
    engine: EngineDep,
    collection: QueryCollection,
    caller: CallerDep,
) -> SubjectOut:
    """Change a subject's name or metadata (merged key by key, or replaced with replace_metadata)."""
    patch = await json_body(request, SubjectPatch)
    changes = {
        "name": patch.name,
        "clear_name": "name" in patch.model_fields_set and patch.name is None,
        "metadata": patch.metadata,
        "replace_metadata": patch.replace_metadata,
    }
    updated = await engine.run(partial(gallery.update_subject, collection, subject_id, **changes))
    audit(
        "update_subject",
        caller,
        collection=collection,
        subject=subject_id,
        fields=sorted(patch.model_fields_set),
    )
    return _out(updated)


@router.get("/{subject_id}/faces", response_model=SubjectFaces, responses=errors(404))
async def subject_faces(subject_id: str, gallery: GalleryDep, collection: QueryCollection) -> SubjectFaces:
    """A subject's faces, oldest first: box, detector score, photo sha256, model, when stored."""
    records = await run_in_threadpool(gallery.faces, collection, subject_id)
    return SubjectFaces(
        subject_id=subject_id,
        faces=[
            FaceRecordOut(
                face_id=r.id,
                box=r.box,
                score=r.score,
                image_sha256=r.image_sha256,
                model_id=r.model_id,
                created_at=r.created_at,
            )
            for r in records
        ],
    )


@router.get(
    "/{subject_id}/faces/{face_id}/thumbnail",
    response_class=Response,
    responses={
        200: {"content": {"image/jpeg": {"schema": {"type": "string", "format": "binary"}}}},
        **errors(404),
    },
)
async def face_thumbnail(
    subject_id: str, face_id: FaceId, gallery: GalleryDep, collection: QueryCollection
) -> Response:
    """The JPEG kept of an enrolled face (aligned, with a margin), when FV_STORE_FACE_THUMBNAILS was on
    at its enrollment; 404 thumbnail_not_stored otherwise."""
    jpeg = await run_in_threadpool(gallery.thumbnail, collection, subject_id, face_id)
    return Response(jpeg, media_type="image/jpeg", headers={"Cache-Control": "private, no-store"})


@router.post(
    "/{subject_id}/faces/{face_id}/move",
    response_model=FaceChange,
    responses=errors(404, *WRITES),
    openapi_extra=json_body_schema(FaceMove),
)
async def move_face(
    subject_id: str,
    face_id: FaceId,
    request: Request,
    gallery: GalleryDep,
    engine: EngineDep,
    collection: QueryCollection,
    caller: CallerDep,
) -> FaceChange:
    """Give one face to another subject of the collection (created if new), e.g. one enrolled under the
    wrong person; the answer says whether the first subject went with its last face."""
    target = checked_id((await json_body(request, FaceMove)).subject_id, "subject_id")
    subject_deleted = await engine.run(gallery.move_face, collection, subject_id, face_id, target)
    audit("move_face", caller, collection=collection, subject=subject_id, to=target, face_ids=[face_id])
    return FaceChange(deleted_faces=0, subject_deleted=subject_deleted)
