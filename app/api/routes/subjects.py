"""Enrolled subjects of a collection: list, get, delete, delete one face."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query
from starlette.concurrency import run_in_threadpool

from app.api.audit import audit
from app.api.deps import CallerDep, EngineDep, GalleryDep, QueryCollection
from app.api.responses import WRITES, errors
from app.api.schemas import Deleted, SubjectOut, SubjectPage
from app.gallery.store import Subject

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
) -> SubjectPage:
    """A page of a collection's subjects, oldest first."""
    # Off the event loop: a write holding the gallery's lock must not stall every other request.
    subjects, total = await run_in_threadpool(gallery.subjects, collection, offset, limit)
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


@router.delete("/{subject_id}/faces/{face_id}", response_model=Deleted, responses=errors(404, *WRITES))
async def delete_face(
    subject_id: str,
    face_id: Annotated[int, Path(ge=1, le=2**63 - 1)],
    gallery: GalleryDep,
    engine: EngineDep,
    collection: QueryCollection,
    caller: CallerDep,
) -> Deleted:
    """Delete one face of a subject."""
    await engine.run(gallery.delete_face, collection, subject_id, face_id)
    audit("delete_face", caller, collection=collection, subject=subject_id, face_ids=[face_id])
    return Deleted(deleted_faces=1)
