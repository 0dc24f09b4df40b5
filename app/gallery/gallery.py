"""The identity gallery: enroll, identify and delete, with SQLite first and the index after it."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, cast

import numpy as np
import numpy.typing as npt

from app.decision.cohort import Cohort
from app.gallery.errors import (
    CollectionExists,
    CollectionNotFound,
    GalleryModelMismatch,
    IndexUnavailable,
    InvalidEmbedding,
    ModelNotServed,
    SubjectHasNoFaces,
)
from app.gallery.index import FaissIndexes, IndexMaker, IndexSettings, SharedIndex, VectorIndex
from app.gallery.sqlite import SQLiteStore
from app.gallery.store import Change, Collection, Enrollment, FaceRecord, GalleryStore, StoredIds, Subject

DEFAULT_COLLECTION = "default"
log = logging.getLogger("faceverify.gallery")

SNAPSHOT_DIR = "index"


class ReadWriteLock:
    """Many readers or one writer; a waiting writer holds new readers back, so writes are not starved."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._readers = 0
        self._writer = False
        self._writers_waiting = 0

    @contextmanager
    def read(self) -> Iterator[None]:
        with self._cond:
            while self._writer or self._writers_waiting:
                self._cond.wait()
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                if not self._readers:
                    self._cond.notify_all()

    @contextmanager
    def write(self) -> Iterator[None]:
        with self._cond:
            self._writers_waiting += 1
            while self._writer or self._readers:
                self._cond.wait()
            self._writers_waiting -= 1
            self._writer = True
        try:
            yield
        finally:
            with self._cond:
                self._writer = False
                self._cond.notify_all()


@dataclass(frozen=True)
class Candidate:
    """A subject that resembles a probe: its best face, that face's cosine similarity and the score
    decisions are made on (the similarity itself, or its cohort-normalised value)."""

    subject_id: str
    name: str | None
    face_id: int
    similarity: float
    score: float


@dataclass(frozen=True)
class Ranking:
    """A probe's nearest subjects, best score first, and how many faces the search compared it with."""

    candidates: list[Candidate]
    faces_searched: int


# Normalised scores can reorder the nearest faces: rank at least this many raw neighbours.
_MIN_DEPTH = 32
_STATS_CHUNK = 10_000
_REPAIR_CHUNK = 20_000


@dataclass(frozen=True)
class EmbeddingSpace:
    """One model's vectors as the gallery keeps them: their size, and the cohort that normalises them."""

    dimension: int
    cohort: Cohort | None = None


@dataclass(frozen=True)
class StartupReport:
    """How each collection's index came to be at start-up."""

    loaded: dict[str, int]
    rebuilt: dict[str, int]
    seconds: float


class Gallery:
    """Collections of subjects and their faces: SQLite is the truth, each collection's index follows it.

    Writes commit to SQLite before they touch the index, so a crash between the two loses nothing:
    start-up rebuilds (or checks a snapshot of) every index from SQLite. Searches run concurrently;
    writes wait for them and run one at a time, so a search never sees half an enrollment.

    Each collection is bound to the model that embeds its faces: `model_id` (the default, for new
    collections) or one of `other_models`; a collection of a model not given is never opened.
    """

    def __init__(
        self,
        data_dir: Path,
        model_id: str,
        dimension: int,
        index_settings: IndexSettings | None = None,
        cohort: Cohort | None = None,
        other_models: Mapping[str, EmbeddingSpace] | None = None,
        store: GalleryStore | None = None,
        indexes: IndexMaker | None = None,
    ) -> None:
        self.model_id = model_id
        self.spaces: dict[str, EmbeddingSpace] = {
            model_id: EmbeddingSpace(dimension, cohort),
            **(other_models or {}),
        }
        self.index_settings = index_settings or IndexSettings()
        self.store: GalleryStore = store or SQLiteStore(data_dir)
        self.snapshots = data_dir / SNAPSHOT_DIR
        self.indexes: IndexMaker = indexes or FaissIndexes(self.index_settings)
        self._indexes: dict[int, VectorIndex] = {}
        self._lock = ReadWriteLock()
        self.applied_seq = 0  # the changes feed's number the indexes reflect
        # Whether something follows the feed: other replicas' writes, or a shared index's retries.
        self.follows = self.store.shared or self.indexes.shared
        self._applied_here: set[int] = set()  # feed numbers of this process's own enrollments
        # Faces a shared index server failed to take or drop after the store committed: retried.
        self._unindexed: dict[int, set[int]] = {}
        self._undeleted: dict[int, set[int]] = {}
        self.startup = self._open()

    @property
    def dimension(self) -> int:
        """The size of the default model's vectors."""
        return self.spaces[self.model_id].dimension

    @property
    def cohort(self) -> Cohort | None:
        """The default model's cohort."""
        return self.spaces[self.model_id].cohort

    def _new_index(self, collection: Collection) -> VectorIndex:
        return self.indexes.new(collection.id, self.spaces[collection.model_id].dimension)

    def space(self, model_id: str) -> EmbeddingSpace:
        """The vectors of a served model (ModelNotServed for another)."""
        try:
            return self.spaces[model_id]
        except KeyError:
            raise ModelNotServed(
                f"no model {model_id!r} is served here; the models: {', '.join(sorted(self.spaces))}"
            ) from None

    # Start-up

    def _check_models(self) -> None:
        stored = self.store.model_ids()
        problems = {}
        for collection in self.store.collections():
            models = stored.get(collection.name, set()) | {collection.model_id}
            if len(models) > 1 or collection.model_id not in self.spaces:
                problems[collection.name] = models
        if problems:
            detail = "; ".join(
                f"{name!r} by {', '.join(sorted(ids))}" for name, ids in sorted(problems.items())
            )
            raise GalleryModelMismatch(
                f"the gallery holds faces embedded by models not served here "
                f"({', '.join(sorted(self.spaces))}): {detail}. Serve with the models that made them "
                "(in the models folder), or move those collections to a served model (`faceverify "
                "gallery reembed`, from their kept thumbnails), or delete them and enroll their subjects "
                "again from the source photos."
            )

    def _snapshot_path(self, collection: Collection) -> Path:
        return self.snapshots / f"collection-{collection.id}.faiss"

    def _refresh_cohort_stats(self) -> None:
        """Compute every face's cohort statistics where they are missing or belong to another cohort."""
        for model_id, space in self.spaces.items():
            if space.cohort is not None:
                self._refresh_model_cohort_stats(model_id, space.cohort)

    def _refresh_model_cohort_stats(self, model_id: str, cohort: Cohort) -> None:
        key = f"cohort:{model_id}"
        stored = self.store.setting(key)
        if stored is None and model_id == self.model_id:
            stored = self.store.setting("cohort")  # a gallery of one model kept it under this key
        stale = stored != cohort.identity
        collections = [c for c in self.store.collections() if c.model_id == model_id]
        started, chunks = time.perf_counter(), []
        for collection in collections:
            ids, vectors = self.store.embeddings(collection, missing_cohort_stats=not stale)
            for start in range(0, len(ids), _STATS_CHUNK):
                chunk = slice(start, start + _STATS_CHUNK)
                chunks.append((ids[chunk], *cohort.stats(vectors[chunk])))
        if not stale and not chunks:
            return
        self.store.set_cohort_stats(cohort.identity, chunks, key)
        log.info(
            "cohort statistics of %d faces of %s computed in %.2f s",
            sum(len(c[0]) for c in chunks),
            model_id,
            time.perf_counter() - started,
        )

    def _open(self) -> StartupReport:
        started = time.perf_counter()
        self._remove_partials()
        self._check_models()
        self._refresh_cohort_stats()
        # Read first: whatever commits while the indexes load is in the feed after it, and applying
        # a change twice does no harm.
        self.applied_seq = self.store.last_seq()
        loaded: dict[str, int] = {}
        rebuilt: dict[str, int] = {}
        for collection in self.store.collections():
            index, from_snapshot = self._loaded_index(collection)
            (loaded if from_snapshot else rebuilt)[collection.name] = len(index)
            self._indexes[collection.id] = index
        self._ensure_default()
        report = StartupReport(loaded, rebuilt, time.perf_counter() - started)
        log.info("gallery ready in %.2f s: loaded %s, rebuilt %s", report.seconds, loaded, rebuilt)
        return report

    def _loaded_index(self, collection: Collection) -> tuple[VectorIndex, bool]:
        """A collection's index from its snapshot where that matches the store, else from the store;
        and whether the snapshot was taken. A shared index is checked against the store instead."""
        index = self._new_index(collection)
        if index.shared:
            return index, self._attach(cast(SharedIndex, index), collection)
        if index.load(self._snapshot_path(collection), self.store.face_ids(collection)):
            return index, True
        index.rebuild(*self.store.embeddings(collection))
        return index, False

    def _attach(self, index: SharedIndex, collection: Collection) -> bool:
        """Make the server hold what the store holds: write the faces it lacks (an index write that
        failed after its commit) and delete those the store no longer has; whether they matched."""
        index.check_dimension()
        # The ids, not their counts: one failed write and one failed delete leave the counts equal.
        # The server's first: a face is committed before it is written there, so one the server has
        # beyond the store's (read after) was deleted since.
        on_server = index.held_by_server(self.store.highest_face_id())
        ids = self.store.face_ids(collection)
        missing, extra = np.setdiff1d(ids, on_server), np.setdiff1d(on_server, ids)
        if not len(missing) and not len(extra):
            index.reset(ids)
            return True
        for start in range(0, len(missing), _REPAIR_CHUNK):
            index.add(*self.store.embeddings_of(missing[start : start + _REPAIR_CHUNK].tolist()))
        index.remove(extra)
        index.reset(ids)
        log.warning(
            "the index server held %d faces of collection %r, the store %d: wrote %d, deleted %d",
            len(on_server), collection.name, len(ids), len(missing), len(extra),
        )  # fmt: skip
        return False

    def _ensure_default(self) -> None:
        """The default collection always exists (created empty at start and after it is deleted)."""
        try:
            self.store.collection(DEFAULT_COLLECTION)
        except CollectionNotFound:
            try:
                collection = self.store.create_collection(DEFAULT_COLLECTION, self.model_id)
            except CollectionExists:  # another replica made it meanwhile: the feed brings its index
                return
            self._indexes[collection.id] = self._new_index(collection)

    def close(self) -> None:
        """Close the store and the index server's connection."""
        try:
            self.store.close()
        finally:
            self.indexes.close()

    def save_snapshots(self) -> None:
        """Write every collection's index, so the next start need not rebuild it; a snapshot that cannot
        be written (a full disk) is skipped: SQLite holds the truth and the next start rebuilds."""
        try:
            self.snapshots.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            log.warning("index snapshots not written (%s): the next start rebuilds them", error)
            return
        with self._lock.read():
            for collection in self.store.collections():
                index = self._indexes.get(collection.id)
                if index is None:
                    continue
                try:
                    index.save(self._snapshot_path(collection))
                except (OSError, RuntimeError) as error:  # faiss reports a failed write as RuntimeError
                    log.warning(
                        "snapshot of %r not written (%s): the next start rebuilds it", collection.name, error
                    )
                    self._remove_partials()

    def _remove_partials(self) -> None:
        """Snapshot files a failed or cut-short write left behind."""
        if self.snapshots.is_dir():
            for leftover in self.snapshots.glob("*.partial"):
                leftover.unlink(missing_ok=True)

    # Following the store's changes (replicas of one shared database)

    def catch_up(self, limit: int = 10_000) -> int:
        """Apply the store's changes after those the indexes reflect (the writes of other replicas;
        this one's own are applied as they are made, and applying one twice does no harm); the
        feed's number the indexes reflect now."""
        while True:
            if self.store.pruned_before() > self.applied_seq + 1:
                self._reload()  # fell behind what the feed keeps: start again from the faces
                continue
            changes = self.store.changes_since(self.applied_seq, limit)
            if not changes:
                return self.applied_seq
            with self._lock.write():
                others = [c for c in changes if c.seq not in self._applied_here]
                self._applied_here.difference_update(c.seq for c in changes)
                for op, collection_id, face_ids in _runs(others):
                    self._apply(op, collection_id, face_ids)
                self.applied_seq = max(self.applied_seq, changes[-1].seq)

    def retry_index_writes(self) -> bool:
        """Write again what a shared index server failed to take or drop after the store committed
        (the follower's loop calls this); whether nothing is left to write."""
        if not (self._unindexed or self._undeleted):
            return True
        with self._lock.write():
            try:
                for pending, write in ((self._undeleted, False), (self._unindexed, True)):
                    for collection_id, face_ids in list(pending.items()):
                        index = self._indexes.get(collection_id)
                        if index is not None:
                            if write:  # faces deleted since are not written
                                index.add(*self.store.embeddings_of(sorted(face_ids)))
                            else:
                                index.remove(np.array(sorted(face_ids), dtype=np.int64))
                        del pending[collection_id]
            except IndexUnavailable as error:
                log.debug("index writes still pending: %s", error)
                return False
        log.info("the index server took the writes it had failed")
        return True

    def index_writes_pending(self) -> int:
        """Faces the shared index server has yet to take or drop (after it failed to)."""
        # Copies taken at once (the follower may change them meanwhile).
        return sum(len(ids) for ids in [*self._unindexed.values(), *self._undeleted.values()])

    def _apply(self, op: str, collection_id: int, face_ids: list[int]) -> None:
        if op == "collection":
            self._sync_collections()
            return
        index = self._indexes.get(collection_id)
        if index is None:  # created by a change not applied yet, or deleted since
            self._sync_collections()
            index = self._indexes.get(collection_id)
            if index is None:
                return
        ids = np.array(face_ids, dtype=np.int64)
        if index.shared:  # the replica that made the change wrote the server
            none = np.zeros(0, np.int64)
            cast(SharedIndex, index).track(ids if op == "add" else none, ids if op != "add" else none)
            return
        index.remove(ids)  # an add applied before (by this replica's own write) is not held twice
        if op != "add":
            return
        found, vectors = self.store.embeddings_of(face_ids)  # faces deleted since are gone
        if not len(found):
            return
        if index.needs_rebuild(len(found)):
            collection = next(c for c in self.store.collections() if c.id == collection_id)
            index.rebuild(*self.store.embeddings(collection))
        else:
            index.add(found, vectors)

    def _sync_collections(self) -> None:
        """Indexes for the collections the store has now: new ones loaded, deleted ones dropped."""
        current = {c.id: c for c in self.store.collections()}
        # Loaded in full before any is put in place: a failure leaves the indexes as they were.
        loaded = {
            collection_id: self._loaded_index(collection)[0]
            for collection_id, collection in current.items()
            if collection_id not in self._indexes and collection.model_id in self.spaces
        }
        for collection_id in set(self._indexes) - set(current):
            del self._indexes[collection_id]
        self._indexes.update(loaded)

    def _reload(self) -> None:
        """Every index from the store again."""
        with self._lock.write():
            seq = self.store.last_seq()
            current = self._indexes
            self._indexes = {}
            try:
                self._sync_collections()
            except BaseException:
                self._indexes = current  # as they were, to be reloaded at the next try
                raise
            self.applied_seq = seq
        log.warning("the changes feed no longer holds what this replica missed: indexes reloaded")

    def seen(self, seq: int) -> bool:
        """Whether every change up to `seq` is in the indexes (catching up first where it is not)."""
        return seq <= self.applied_seq or seq <= self.catch_up()

    # Collections

    def collection(self, name: str) -> Collection:
        """The collection of that name (CollectionNotFound otherwise)."""
        return self.store.collection(name)

    def collections(self) -> list[tuple[Collection, int]]:
        """Every collection with its number of faces."""
        with self._lock.read():
            return [(c, len(self._indexes.get(c.id, ()))) for c in self.store.collections()]

    def create_collection(self, name: str, model_id: str | None = None) -> Collection:
        """A new empty collection bound to a served model (the default one unless named)."""
        model_id = model_id or self.model_id
        self.space(model_id)
        with self._lock.write():
            collection = self.store.create_collection(name, model_id)
            self._indexes[collection.id] = self._new_index(collection)
            return collection

    def rename_collections(self, renames: Mapping[str, str]) -> None:
        """Give collections new names, all at once (a swap is two renames); indexes follow their ids."""
        with self._lock.write():
            self.store.rename_collections(renames)

    def model_of(self, collection_name: str) -> str:
        """The model a collection is bound to; for a collection that does not exist, the default one."""
        try:
            return self.store.collection(collection_name).model_id
        except CollectionNotFound:
            return self.model_id

    def delete_collection(self, name: str) -> list[int]:
        """Delete a collection, its subjects and faces; the ids of the faces deleted."""
        with self._lock.write():
            collection = self.store.collection(name)
            face_ids = self.store.delete_collection(name)
            index = self._indexes.pop(collection.id, None)
            if index is not None and index.shared:
                try:
                    cast(SharedIndex, index).drop()
                except IndexUnavailable as error:  # left on the server: `rebuild-index` removes it
                    log.warning("the vectors of collection %r stay on the index server: %s", name, error)
            for suffix in (".faiss", ".json"):
                self._snapshot_path(collection).with_suffix(suffix).unlink(missing_ok=True)
            if name == DEFAULT_COLLECTION:
                self._ensure_default()
            return face_ids

    # Faces

    def _valid(
        self, vectors: npt.NDArray[np.float32], model_id: str | None = None
    ) -> npt.NDArray[np.float32]:
        dimension = self.space(model_id or self.model_id).dimension
        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.size % dimension or (vectors.ndim > 1 and vectors.shape[-1] != dimension):
            raise InvalidEmbedding(f"embeddings of {model_id or self.model_id} have {dimension} values each")
        vectors = vectors.reshape(-1, dimension)
        norms = np.linalg.norm(vectors, axis=1)
        if not np.isfinite(vectors).all() or np.abs(norms - 1.0).max(initial=0.0) > 1e-3:
            raise InvalidEmbedding("embeddings must be finite unit vectors (L2 over the feature axis)")
        return vectors

    def enroll(
        self,
        collection_name: str,
        enrollments: Sequence[Enrollment],
        create: bool = True,
        model_id: str | None = None,
    ) -> list[StoredIds]:
        """Store the faces (one SQLite transaction), then index them; the face ids per enrollment (a
        photo the subject has already keeps its face: see StoredIds.repeated). `model_id` is the model
        that embedded the faces (default: the default model); a collection of another refuses them."""
        model_id = model_id or self.model_id
        for item in enrollments:
            for face in item.faces:
                self._valid(face.embedding, model_id)
        enrollments = self._with_cohort_stats(enrollments, self.space(model_id).cohort)
        with self._lock.write():
            try:
                collection = self.store.collection(collection_name)
            except CollectionNotFound:
                if not create:
                    raise
                collection = self.store.create_collection(collection_name, model_id)
                self._indexes[collection.id] = self._new_index(collection)
            if collection.model_id != model_id:
                raise GalleryModelMismatch(
                    f"collection {collection.name!r} holds {collection.model_id} embeddings, not {model_id}"
                )
            added = self.store.enroll(collection, enrollments)  # committed: from here it is never lost
            # Only faces stored now: a repeated photo (or one sent twice) is in the index already.
            new: dict[int, npt.NDArray[np.float32]] = {}
            repeated_ids: list[int] = []
            for group, item in zip(added, enrollments, strict=True):
                for face_id, face, repeated in zip(group, item.faces, group.repeated, strict=True):
                    if not repeated:
                        new[face_id] = face.embedding
                    else:
                        repeated_ids.append(face_id)
            index = self._indexes[collection.id]
            new_ids = np.fromiter(new, dtype=np.int64, count=len(new))
            if index.shared:
                self._write_shared(cast(SharedIndex, index), collection, new_ids, new, repeated_ids)
            elif index.needs_rebuild(len(new)):
                index.rebuild(*self.store.embeddings(collection))
            elif new:
                index.add(new_ids, np.vstack(list(new.values())))
            if new and self.follows:
                # The feed numbers this transaction's changes consecutively (writes are serialised),
                # ending at its seq: applied here already, the follower passes over them.
                seq = added[0].seq
                self._applied_here.update(range(seq - len(new) + 1, seq + 1))
            return added

    def _write_shared(
        self,
        index: SharedIndex,
        collection: Collection,
        new_ids: npt.NDArray[np.int64],
        new: Mapping[int, npt.NDArray[np.float32]],
        repeated_ids: list[int],
    ) -> None:
        """Write an enrollment's faces to a shared index server, the repeated ones too: a retry after a
        failed write (its faces committed, not yet searchable) completes it. Where the server fails,
        the faces are counted, kept to write again, and the enrollment answered IndexUnavailable."""
        dimension = index.dimension
        ids = new_ids
        vectors = np.vstack(list(new.values())) if new else np.zeros((0, dimension), np.float32)
        if repeated_ids:  # faces deleted meanwhile are not found, and not written
            old_ids, old_vectors = self.store.embeddings_of(repeated_ids)
            ids = np.concatenate([new_ids, old_ids])
            vectors = np.vstack([vectors, old_vectors.reshape(len(old_ids), dimension)])
        if not len(ids):
            return
        try:
            index.add(ids, vectors)
        except IndexUnavailable:
            index.track(ids, np.zeros(0, np.int64))
            self._unindexed.setdefault(collection.id, set()).update(ids.tolist())
            raise
        pending = self._unindexed.get(collection.id)
        if pending:
            pending.difference_update(ids.tolist())
            if not pending:
                del self._unindexed[collection.id]

    def _with_cohort_stats(
        self, enrollments: Sequence[Enrollment], cohort: Cohort | None
    ) -> Sequence[Enrollment]:
        """The enrollments with each face's cohort statistics, all faces in one product."""
        faces = [face for item in enrollments for face in item.faces]
        if cohort is None or not faces:
            return enrollments
        means, sds = cohort.stats(np.vstack([face.embedding for face in faces]))
        stats = iter(zip(means.tolist(), sds.tolist(), strict=True))
        # One iterator over every face's statistics: each enrollment takes as many as it has faces.
        return [
            Enrollment(
                item.external_id,
                [
                    replace(face, cohort_mean=m, cohort_sd=sd)
                    for face, (m, sd) in zip(item.faces, stats, strict=False)
                ],
                item.name,
                item.metadata,
            )
            for item in enrollments
        ]

    def rank(
        self,
        collection_name: str,
        probes: npt.NDArray[np.float32],
        top_k: int = 5,
        normalise: bool = False,
        model_id: str | None = None,
    ) -> list[Ranking]:
        """For each probe, its top_k subjects by their best face's score, and the faces searched.

        With normalise, scores are S-norm against the cohort (probe statistics: one matrix product;
        face statistics: stored at enrollment); otherwise the cosine similarity. `model_id`, where
        given, is the model that embedded the probes: a collection of another refuses them.
        """
        collection = self.store.collection(collection_name)
        if model_id is not None and collection.model_id != model_id:
            raise GalleryModelMismatch(
                f"collection {collection.name!r} holds {collection.model_id} embeddings, not {model_id}"
            )
        probes = self._valid(probes, collection.model_id)
        cohort = self.space(collection.model_id).cohort if normalise else None
        if normalise and cohort is None:
            raise ValueError("normalised scores need a cohort")
        with self._lock.read():
            index = self._indexes.get(collection.id)
            searched = len(index) if index is not None else 0
            if index is None or (searched == 0 and not index.shared):
                return [Ranking([], 0) for _ in probes]
            # Several faces may belong to one subject, and normalising may reorder the nearest:
            # look deeper than top_k, then merge by subject.
            depth = max(top_k * 4, top_k + 10, _MIN_DEPTH if normalise else 0)
            similarities, ids = index.search(probes, depth)
            # Under the same lock as the search: no write lands between the two.
            owners = self.store.owners(sorted({int(i) for i in ids.ravel() if i >= 0}))
        if cohort is not None:
            probe_mean, probe_sd = cohort.stats(probes)
        results = []
        for row, (row_sims, row_ids) in enumerate(zip(similarities, ids, strict=True)):
            found = [(float(sim), int(i), owners[int(i)]) for sim, i in zip(row_sims, row_ids, strict=True)
                     if int(i) in owners]  # fmt: skip
            # A face deleted since the search has no owner any more.
            sims = np.array([sim for sim, _, _ in found], np.float32)
            if cohort is not None and found:
                # Start-up fills in every face's statistics; were one missing, its side would take
                # the probe's rather than turn the score into NaN.
                mean, sd = float(probe_mean[row]), float(probe_sd[row])
                face_mean = np.array(
                    [mean if o.cohort_mean is None else o.cohort_mean for _, _, o in found], np.float32
                )
                face_sd = np.array(
                    [sd if o.cohort_sd is None else o.cohort_sd for _, _, o in found], np.float32
                )
                scores = cohort.normalise(sims, probe_mean[row], probe_sd[row], face_mean, face_sd)
            else:
                scores = sims
            best: dict[str, Candidate] = {}
            for (sim, face_id, owner), score in zip(found, scores.tolist(), strict=True):
                if owner.subject_id not in best or score > best[owner.subject_id].score:
                    best[owner.subject_id] = Candidate(owner.subject_id, owner.name, face_id, sim, score)
            ranked = sorted(best.values(), key=lambda c: c.score, reverse=True)[:top_k]
            results.append(Ranking(ranked, searched))
        return results

    def identify(
        self,
        collection_name: str,
        probes: npt.NDArray[np.float32],
        top_k: int = 5,
        threshold: float | None = None,
    ) -> list[list[Candidate]]:
        """For each probe, up to top_k subjects by their best face's similarity (at least threshold)."""
        return [
            [c for c in ranking.candidates if threshold is None or c.score >= threshold]
            for ranking in self.rank(collection_name, probes, top_k)
        ]

    def delete_subject(self, collection_name: str, subject_id: str) -> list[int]:
        """Delete a subject and its faces from both stores; the ids of the faces deleted."""
        with self._lock.write():
            collection = self.store.collection(collection_name)
            face_ids = self.store.delete_subject(collection, subject_id)
            self._remove(collection, face_ids)
            return face_ids

    def delete_face(self, collection_name: str, subject_id: str, face_id: int) -> bool:
        """Delete one face of a subject from both stores (the subject too, with its last face); whether
        the subject went."""
        with self._lock.write():
            collection = self.store.collection(collection_name)
            subject_deleted = self.store.delete_face(collection, subject_id, face_id)
            self._remove(collection, [face_id])
            return subject_deleted

    def _remove(self, collection: Collection, face_ids: list[int]) -> None:
        """Take deleted faces out of the index. The store committed the delete, so a shared server's
        failure is not the caller's: the faces are dropped again later (searches pass over them now,
        having no owner)."""
        index = self._indexes[collection.id]
        try:
            index.remove(np.array(face_ids, dtype=np.int64))
        except IndexUnavailable as error:
            cast(SharedIndex, index).track(np.zeros(0, np.int64), np.array(face_ids, dtype=np.int64))
            self._undeleted.setdefault(collection.id, set()).update(face_ids)
            log.warning("%d deleted faces stay on the index server for now: %s", len(face_ids), error)

    def move_face(self, collection_name: str, subject_id: str, face_id: int, to_subject_id: str) -> bool:
        """Give a face to another subject (the index is untouched: owners are read from SQLite at each
        search); whether the first subject went with its last face."""
        with self._lock.write():
            return self.store.move_face(
                self.store.collection(collection_name), subject_id, face_id, to_subject_id
            )

    def update_subject(self, collection_name: str, subject_id: str, **changes: Any) -> Subject:
        """Change a subject's name or metadata (see GalleryStore.update_subject)."""
        with self._lock.write():
            return self.store.update_subject(self.store.collection(collection_name), subject_id, **changes)

    def thumbnail(self, collection_name: str, subject_id: str, face_id: int) -> bytes:
        """The JPEG kept for a face (see GalleryStore.thumbnail)."""
        return self.store.thumbnail(self.store.collection(collection_name), subject_id, face_id)

    def faces(self, collection_name: str, subject_id: str) -> list[FaceRecord]:
        """A subject's faces, oldest first."""
        return self.store.faces(self.store.collection(collection_name), subject_id)

    def subject(self, collection_name: str, subject_id: str) -> Subject:
        """One subject with its face ids."""
        return self.store.subject(self.store.collection(collection_name), subject_id)

    def subject_embeddings(
        self, collection_name: str, subject_id: str, model_id: str | None = None
    ) -> npt.NDArray[np.float32]:
        """The stored embeddings of one subject (for verifying a probe against it); SubjectHasNoFaces
        should it have none (a subject goes with its last face, so only a damaged file could), and
        GalleryModelMismatch when `model_id`, the probe's model, is not the collection's."""
        collection = self.store.collection(collection_name)
        if model_id is not None and collection.model_id != model_id:
            raise GalleryModelMismatch(
                f"collection {collection.name!r} holds {collection.model_id} embeddings, not {model_id}"
            )
        stored = self.store.subject_embeddings(collection, subject_id)
        if len(stored) == 0:
            raise SubjectHasNoFaces(f"subject {subject_id!r} has no enrolled face to compare with")
        return stored

    def subjects(
        self, collection_name: str, offset: int = 0, limit: int = 100, search: str | None = None
    ) -> tuple[list[Subject], int]:
        """A page of subjects and the total (of those whose id or name holds `search`, where given)."""
        return self.store.subjects(self.store.collection(collection_name), offset, limit, search)

    def index_size(self, collection_name: str) -> int:
        """How many vectors the collection's index holds."""
        with self._lock.read():
            index = self._indexes.get(self.store.collection(collection_name).id)
            return len(index) if index is not None else 0

    def index_ids(self, collection_name: str) -> npt.NDArray[np.int64]:
        """The face ids the collection's index holds (for consistency checks)."""
        with self._lock.read():
            index = self._indexes.get(self.store.collection(collection_name).id)
            return index.ids() if index is not None else np.zeros(0, np.int64)


def _runs(changes: Sequence[Change]) -> Iterator[tuple[str, int, list[int]]]:
    """Consecutive changes of one kind to one collection, as (op, collection id, face ids), in order."""
    run: list[Change] = []
    for change in changes:
        if run and (change.op != run[0].op or change.collection_id != run[0].collection_id):
            yield run[0].op, run[0].collection_id, [c.face_id for c in run if c.face_id is not None]
            run = []
        run.append(change)
    if run:
        yield run[0].op, run[0].collection_id, [c.face_id for c in run if c.face_id is not None]
