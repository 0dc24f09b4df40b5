"""Rebuild a shared Milvus index from the store, the truth, while replicas go on serving.

Each collection is written into a new Milvus generation from the store's faces; its alias then switches
to it in one step, and the changes committed since the faces were read are applied to it, so that a write
that went to the old generation meanwhile is not lost. Old generations, and those of collections the store
no longer has, are dropped.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from app.gallery.milvus import MilvusEngine, MilvusIndex
from app.gallery.store import Collection, GalleryStore

log = logging.getLogger("faceverify.reindex")

_REPLAY_BATCH = 10_000


@dataclass
class RebuildReport:
    """What a rebuild wrote: faces per collection, the changes applied after the switch, what it dropped."""

    faces: dict[str, int] = field(default_factory=dict)
    replayed: int = 0
    dropped: list[str] = field(default_factory=list)


def rebuild_collection(store: GalleryStore, engine: MilvusEngine, collection: Collection) -> tuple[int, int]:
    """Write one collection's faces into a new generation and switch to it; (faces, changes replayed)."""
    seq = store.last_seq()  # before the faces are read: whatever commits later is replayed
    ids, vectors = store.embeddings(collection)
    if not len(ids):
        engine.drop_alias(engine.alias(collection.id))  # made again by the first enrollment
        return 0, 0
    index = engine.new(collection.id, vectors.shape[1])
    index.rebuild(ids, vectors)
    return len(ids), _replay(store, index, collection.id, seq)


def _replay(store: GalleryStore, index: MilvusIndex, collection_id: int, seq: int) -> int:
    """Apply the collection's changes after `seq` to the index (idempotent: an add writes the face's
    stored vector, or nothing if it is gone; a removal deletes); how many were applied."""
    applied = 0
    while changes := store.changes_since(seq, _REPLAY_BATCH):
        seq = changes[-1].seq
        mine = [c for c in changes if c.collection_id == collection_id and c.face_id is not None]
        added = [c.face_id for c in mine if c.op == "add" and c.face_id is not None]
        removed = [c.face_id for c in mine if c.op == "remove" and c.face_id is not None]
        if removed:
            index.remove(np.array(removed, dtype=np.int64))
        if added:
            found, vectors = store.embeddings_of(added)
            if len(found):
                index.add(found, vectors)
        applied += len(mine)
    return applied


def drop_stale_generations(store: GalleryStore, engine: MilvusEngine) -> list[str]:
    """Drop Milvus collections of this prefix that no alias names: generations a rebuild replaced or
    left half-written, and those of deleted collections; the names dropped."""
    live = {c.id for c in store.collections()}
    pattern = re.compile(rf"^{re.escape(engine.settings.prefix)}_(\d+)_g(\d+)$")
    targets = {collection_id: engine.target(engine.alias(collection_id)) for collection_id in live}
    dropped = []
    for name in engine.names():
        match = pattern.match(name)
        if match is None:
            continue
        collection_id, made = int(match[1]), int(match[2])
        target = targets.get(collection_id)
        if collection_id in live:
            # A collection's first generation exists briefly before its alias; and only a generation
            # older than the one in use can be one a rebuild replaced.
            current = pattern.match(target) if target else None
            if target is None or name == target or current is None or made > int(current[2]):
                continue
        else:
            engine.drop_alias(engine.alias(collection_id))
        engine.drop(name)
        dropped.append(name)
    return dropped


def rebuild(
    store: GalleryStore,
    engine: MilvusEngine,
    names: list[str] | None = None,
    progress: Callable[[str, int], None] | None = None,
) -> RebuildReport:
    """Rebuild the named collections (all of them by default) from the store; with all of them, also
    drop what no collection uses any more."""
    report = RebuildReport()
    chosen = [store.collection(name) for name in names] if names else store.collections()
    for collection in chosen:
        faces, replayed = rebuild_collection(store, engine, collection)
        report.faces[collection.name] = faces
        report.replayed += replayed
        if progress is not None:
            progress(collection.name, faces)
    if not names:
        report.dropped = drop_stale_generations(store, engine)
    return report
