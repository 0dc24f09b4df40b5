"""Collections: list, create, delete."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form
from starlette.concurrency import run_in_threadpool

from app.api.audit import audit
from app.api.deps import MODEL_HELP, CallerDep, EngineDep, GalleryDep, PathCollection, ServiceDep
from app.api.fields import checked_id
from app.api.responses import WRITES, errors
from app.api.schemas import CollectionOut, Deleted

router = APIRouter(prefix="/collections", tags=["gallery"])


@router.get("", response_model=list[CollectionOut])
async def list_collections(gallery: GalleryDep, caller: CallerDep) -> list[CollectionOut]:
    """The collections this key may use, with their sizes."""
    # Off the event loop: a write holding the gallery's lock must not stall every other request.
    found = await run_in_threadpool(gallery.collections)
    visible = set(caller.visible([c.name for c, _ in found]))
    return [
        CollectionOut(name=c.name, model_id=c.model_id, faces=n, created_at=c.created_at)
        for c, n in found
        if c.name in visible
    ]


@router.post("", response_model=CollectionOut, status_code=201, responses=errors(400, 404, 409, 507))
async def create_collection(
    gallery: GalleryDep,
    service: ServiceDep,
    caller: CallerDep,
    name: Annotated[str, Form(min_length=1, max_length=128)],
    model: Annotated[str | None, Form(min_length=1, max_length=200, description=MODEL_HELP)] = None,
) -> CollectionOut:
    """A new, empty collection, bound to a model for good (its faces are embedded by it alone)."""
    caller.check(name)
    model_id = service.models.named(model).model_id
    created = await run_in_threadpool(gallery.create_collection, checked_id(name, "name"), model_id)
    audit("create_collection", caller, collection=name)
    return CollectionOut(name=created.name, model_id=created.model_id, faces=0, created_at=created.created_at)


@router.delete("/{name}", response_model=Deleted, responses=errors(404, *WRITES))
async def delete_collection(
    name: PathCollection, gallery: GalleryDep, engine: EngineDep, caller: CallerDep
) -> Deleted:
    """Delete a collection with all its subjects and faces."""
    face_ids = await engine.run(gallery.delete_collection, name)
    audit("delete_collection", caller, collection=name, face_ids=face_ids)
    return Deleted(deleted_faces=len(face_ids))
