"""Rebuild a shared Milvus index from the store, the truth, while replicas go on serving.

Each collection is written into a new Milvus generation from the store's faces; its alias then switches
to it in one step, and the changes committed since the faces were read are applied to it, so that a write
that went to the old generation meanwhile is not lost. Old generations, and those of collections the store
no longer has, are dropped.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from app.gallery.milvus import MilvusEngine
from app.gallery.store import Collection, GalleryStore

log = logging.getLogger("faceverify.reindex")

_REPLAY_BATCH = 10_000


@dataclass
class RebuildReport:
    """What a rebuild wrote: faces per collection, the changes applied after the switch, what it dropped."""

    faces: dict[str, int] = field(default_factory=dict)
    replayed: int = 0
    dropped: list[str] = field(default_factory=list)


def rebuild_collection(
    store: GalleryStore, engine: MilvusEngine, collection: Collection
) -> tuple[int, int, list[str]]:
    """Write one collection's faces into a new generation and switch to it; (faces, changes replayed,
    the generations dropped: the one replaced, and any an earlier rebuild left half-written)."""
    alias = engine.alias(collection.id)
    seq = store.last_seq()  # before the faces are read: whatever commits later is replayed
    ids, vectors = store.embeddings(collection)
    if len(ids):
        dimension = vectors.shape[1]
    elif engine.target(alias) is not None:
        dimension = engine.dimension_of(alias)  # emptied: an empty generation keeps the alias valid
    else:
        return 0, 0, []  # nothing on the server, nothing in the store
    index = engine.new(collection.id, dimension)
    dropped = index.drop_unused_generations()  # what an earlier rebuild left half-written
    replaced = engine.target(alias)
    name = index.fill(ids, vectors.reshape(len(ids), dimension))
    try:
        # Writes meanwhile went to the old generation: into the new one before the switch, so that
        # searches never miss them, and once more after it for those that came in between.
        before, seq = _replay(store, engine, name, collection.id, seq)
        index.use(name)
    except BaseException:
        engine.drop(name)
        raise
    after, _ = _replay(store, engine, alias, collection.id, seq)
    return len(ids), before + after, dropped + ([replaced] if replaced else [])


def _replay(
    store: GalleryStore, engine: MilvusEngine, name: str, collection_id: int, seq: int
) -> tuple[int, int]:
    """Apply the collection's changes after `seq` to a generation or alias (idempotent: an add writes the
    face's stored vector, or nothing if it is gone; a removal deletes); (changes applied, last seq)."""
    applied = 0
    while changes := store.changes_since(seq, _REPLAY_BATCH):
        seq = changes[-1].seq
        mine = [c for c in changes if c.collection_id == collection_id and c.face_id is not None]
        added = [c.face_id for c in mine if c.op == "add" and c.face_id is not None]
        removed = [c.face_id for c in mine if c.op == "remove" and c.face_id is not None]
        engine.delete(name, np.array(removed, dtype=np.int64))
        if added:
            found, vectors = store.embeddings_of(added)
            if len(found):
                engine.upsert(name, found, vectors, time.monotonic() + engine.settings.timeout_s)
        applied += len(mine)
    return applied, seq


def drop_stale_generations(store: GalleryStore, engine: MilvusEngine) -> list[str]:
    """Drop generations of this prefix no collection uses: those of deleted collections, and of live
    ones those older than the one in use (a rebuild replaced them); the names dropped."""
    names = engine.names()  # before the store: a collection made after this has no generation listed
    live = {c.id for c in store.collections()}
    targets: dict[int, str | None] = {}
    dropped = []
    for name in names:
        parsed = engine.parse(name)
        if parsed is None:
            continue
        collection_id, made = parsed
        if collection_id in live:
            if collection_id not in targets:
                targets[collection_id] = engine.target(engine.alias(collection_id))
            target = targets[collection_id]
            current = engine.parse(target) if target else None
            # A first generation exists briefly before its alias, and a newer one may be a rebuild's.
            if current is None or name == target or made > current[1]:
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
        faces, replayed, dropped = rebuild_collection(store, engine, collection)
        report.faces[collection.name] = faces
        report.replayed += replayed
        report.dropped += dropped
        if progress is not None:
            progress(collection.name, faces)
    if not names:
        report.dropped += drop_stale_generations(store, engine)
    return report
