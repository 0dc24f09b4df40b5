"""Vector search in a Milvus server that every replica shares: a Milvus collection per faceverify collection.

The gallery's store (PostgreSQL, or SQLite for one process) stays the truth; Milvus holds each collection's
vectors under the face ids. A faceverify collection's vectors live in a Milvus collection reached through an
alias, `<prefix>_<collection id>`, so that a rebuild can fill a new generation while the old one serves and
then switch the alias in one step. pymilvus (the `milvus` extra) is imported only here.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Literal, TypeVar

import numpy as np

from app.gallery.errors import GalleryModelMismatch, IndexUnavailable
from app.gallery.index import IdArray, VectorArray

log = logging.getLogger("faceverify.milvus")

Consistency = Literal["auto", "strong", "bounded"]
IndexType = Literal["HNSW", "FLAT"]
T = TypeVar("T")

_ID, _VECTOR = "id", "vector"
_UPSERT_ROWS = 2_000  # rows per upsert call: well inside gRPC's message limit at 512 floats a row
_ID_SPAN = 1 << 18  # face ids one query lists (a few MB of answer)
_MAX_TOP_K = 16_384
_REBUILD_CHUNK = 20_000  # rows a rebuild writes within one timeout


@dataclass(frozen=True)
class MilvusSettings:
    """Where the server is, the names faceverify's collections take there, and how searches read."""

    uri: str
    token: str | None = None
    # Several galleries may share one Milvus server: each needs a prefix of its own.
    prefix: str = "faceverify"
    # strong: every search waits for every acknowledged write (about one time tick, 200 ms by default);
    # bounded: searches read what the query nodes hold (a write shows within about a tick);
    # auto: strong for a collection while a write this replica knows of may not show yet, bounded after.
    consistency: Consistency = "auto"
    index_type: IndexType = "HNSW"
    hnsw_m: int = 16
    hnsw_ef_construction: int = 200
    ef: int = 128  # HNSW's search breadth: recall against time
    timeout_s: float = 10.0  # a call that takes longer fails; an index write, the whole of it
    # The server's common.gracefulTime: a bounded search sees every write older than this.
    graceful_s: float = 5.0

    @property
    def fresh_s(self) -> float:
        """How long after a replica learns of a write a bounded search might still miss it: the writer
        acknowledges within timeout_s of its commit, and bounded reads see what is graceful_s old."""
        return self.timeout_s + self.graceful_s + 1.0


def _redacted(uri: str) -> str:
    """The URI without a password, for messages."""
    scheme, _, rest = uri.rpartition("://")
    if "@" in rest:
        rest = "***@" + rest.split("@", 1)[1]
    return f"{scheme}://{rest}" if scheme else rest


class MilvusEngine:
    """This process's client of one Milvus server or cluster, shared by every collection's index."""

    shared = True

    def __init__(self, settings: MilvusSettings) -> None:
        import pymilvus  # the `milvus` extra

        self.settings = settings
        self.where = f"the Milvus server at {_redacted(settings.uri)}"
        self._errors: tuple[type[BaseException], ...] = (pymilvus.MilvusException, ConnectionError)
        self._pymilvus = pymilvus
        with self.errors():
            self.client = pymilvus.MilvusClient(
                settings.uri, token=settings.token or "", timeout=settings.timeout_s
            )

    @contextmanager
    def errors(self) -> Iterator[None]:
        """Milvus's failures as IndexUnavailable (503), naming the server."""
        try:
            yield
        except self._errors as error:
            raise IndexUnavailable(f"{self.where} failed: {error}") from error

    def call(self, action: Callable[[], T]) -> T:
        """One call to the server, its failure an IndexUnavailable."""
        with self.errors():
            return action()

    def alias(self, collection_id: int) -> str:
        """The name a faceverify collection's vectors are reached by."""
        return f"{self.settings.prefix}_{collection_id}"

    def new(self, collection_id: int, dimension: int) -> MilvusIndex:
        """The index of one faceverify collection."""
        return MilvusIndex(self, collection_id, dimension)

    def names(self) -> list[str]:
        """Every Milvus collection of this gallery's prefix (each generation of each collection)."""
        prefix = f"{self.settings.prefix}_"
        return [name for name in self.call(self.client.list_collections) if name.startswith(prefix)]

    def target(self, alias: str) -> str | None:
        """The generation an alias points at (None when there is no such alias)."""
        if not self.call(lambda: self.client.has_collection(alias)):
            return None
        described = self.call(lambda: self.client.describe_collection(alias))
        return str(described["collection_name"])

    def dimension_of(self, name: str) -> int:
        """The vector size a Milvus collection (or alias) holds."""
        described = self.call(lambda: self.client.describe_collection(name))
        field = next(f for f in described["fields"] if f["name"] == _VECTOR)
        return int(field["params"]["dim"])

    def create(self, name: str, dimension: int) -> None:
        """A loaded Milvus collection of face ids and unit vectors with the settings' index."""
        client, schema_type = self.client, self._pymilvus.MilvusClient
        schema = schema_type.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field(_ID, self._pymilvus.DataType.INT64, is_primary=True)
        schema.add_field(_VECTOR, self._pymilvus.DataType.FLOAT_VECTOR, dim=dimension)
        index = client.prepare_index_params()
        params = (
            {"M": self.settings.hnsw_m, "efConstruction": self.settings.hnsw_ef_construction}
            if self.settings.index_type == "HNSW"
            else {}
        )
        kind = self.settings.index_type
        index.add_index(field_name=_VECTOR, index_type=kind, metric_type="IP", params=params)
        # With index parameters, Milvus builds the index and loads the collection before answering.
        self.call(lambda: client.create_collection(name, schema=schema, index_params=index))

    def drop(self, name: str) -> None:
        """Drop a Milvus collection (nothing when there is none)."""
        if self.call(lambda: self.client.has_collection(name)):
            self.call(lambda: self.client.drop_collection(name))

    def point(self, alias: str, name: str) -> None:
        """Make the alias name this generation, creating the alias where there is none yet."""
        if self.target(alias) is None:
            self.call(lambda: self.client.create_alias(name, alias))
        else:
            self.call(lambda: self.client.alter_alias(name, alias))

    def drop_alias(self, alias: str) -> None:
        """Drop an alias and the generation it names."""
        name = self.target(alias)
        if name is None:
            return
        self.call(lambda: self.client.drop_alias(alias))
        self.drop(name)

    def close(self) -> None:
        """Close the connection."""
        self.client.close()


class MilvusIndex:
    """One faceverify collection's vectors in Milvus, keyed by face id.

    Writes go to the server, which every replica shares; each replica keeps the set of face ids the
    collection holds (its size is the number of faces searched, and followers update it from the
    changes feed with `track`, never writing the server themselves).
    """

    shared = True
    device = "milvus"

    def __init__(self, engine: MilvusEngine, collection_id: int, dimension: int) -> None:
        self.engine = engine
        self.dimension = dimension
        self.alias = engine.alias(collection_id)
        self._held: set[int] = set()
        self._exists = False  # whether the alias is on the server, once seen there
        self._lock = threading.Lock()
        # Until this monotonic time an "auto" search reads strongly: a write may not show yet.
        self._strong_until = time.monotonic() + engine.settings.fresh_s

    @property
    def kind(self) -> str:
        """The Milvus index type."""
        return f"milvus-{self.engine.settings.index_type.lower()}"

    def _present(self) -> bool:
        """Whether the alias is on the server. Only a yes is kept: another replica may create it."""
        if not self._exists:
            self._exists = self.engine.target(self.alias) is not None
        return self._exists

    def _ensure(self) -> None:
        """Create the collection's first generation and its alias, where they are not there yet."""
        with self._lock:
            if self._present():
                return
            name = f"{self.alias}_g{time.time_ns() // 1_000_000}"
            self.engine.create(name, self.dimension)
            try:
                self.engine.point(self.alias, name)
            except IndexUnavailable:
                if self.engine.target(self.alias) is None:
                    raise
                self.engine.drop(name)  # another replica made the alias first: use its generation
            self._exists = True

    def check_dimension(self) -> None:
        """Refuse a Milvus collection of other vectors (another gallery with the same prefix)."""
        if self.engine.target(self.alias) is None:
            return
        held = self.engine.dimension_of(self.alias)
        if held != self.dimension:
            raise GalleryModelMismatch(
                f"the Milvus collection {self.alias!r} holds {held}-d vectors, its collection's model "
                f"makes {self.dimension}-d ones: does another gallery use the prefix "
                f"{self.engine.settings.prefix!r} (FV_MILVUS_PREFIX) on this server?"
            )

    def _check(self, ids: IdArray, vectors: VectorArray) -> tuple[IdArray, VectorArray]:
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[1] != self.dimension or len(ids) != len(vectors):
            raise ValueError(f"expected ({len(ids)}, {self.dimension}) vectors, got {vectors.shape}")
        return np.ascontiguousarray(ids, dtype=np.int64), vectors

    def write(self, name: str, ids: IdArray, vectors: VectorArray, fresh: bool = False) -> None:
        """Upsert vectors into one Milvus collection (or alias), all within the settings' timeout; into a
        `fresh` one (a new generation, no id in it twice) a plain insert does, without upsert's deletes."""
        method = self.engine.client.insert if fresh else self.engine.client.upsert
        deadline = time.monotonic() + self.engine.settings.timeout_s
        for start in range(0, len(ids), _UPSERT_ROWS):
            chunk = slice(start, start + _UPSERT_ROWS)
            rows = [
                {_ID: face_id, _VECTOR: vector}
                for face_id, vector in zip(ids[chunk].tolist(), vectors[chunk], strict=True)
            ]
            left = deadline - time.monotonic()
            if left <= 0:
                raise IndexUnavailable(
                    f"{self.engine.where} took longer than "
                    f"{self.engine.settings.timeout_s:g} s to take {len(ids)} vectors"
                )
            self.engine.call(partial(method, name, rows, timeout=left))

    def add(self, ids: IdArray, vectors: VectorArray) -> None:
        """Write vectors under their face ids (one held already is replaced: writing twice is harmless)."""
        ids, vectors = self._check(ids, vectors)
        if not len(ids):
            return
        self._ensure()
        self.write(self.alias, ids, vectors)
        self.track(ids, np.zeros(0, np.int64))

    def remove(self, ids: IdArray) -> None:
        """Delete vectors by face id (absent ids are ignored)."""
        ids = np.asarray(ids, dtype=np.int64)
        if not len(ids):
            return
        if self._present():
            self.engine.call(lambda: self.engine.client.delete(self.alias, ids=ids.tolist()))
        self._held.difference_update(ids.tolist())

    def track(self, added: IdArray, removed: IdArray) -> None:
        """Note what a write (this replica's or another's) did, without writing the server."""
        self._held.difference_update(np.asarray(removed).tolist())
        if len(added):
            self._held.update(np.asarray(added).tolist())
            self._strong_until = time.monotonic() + self.engine.settings.fresh_s

    def reset(self, ids: IdArray) -> None:
        """Hold exactly these ids (the store's, once the server holds them too)."""
        self._held = set(np.asarray(ids).tolist())

    def _level(self) -> str:
        consistency = self.engine.settings.consistency
        if consistency == "strong" or (consistency == "auto" and time.monotonic() < self._strong_until):
            return "Strong"
        return "Bounded"

    def search(self, queries: VectorArray, k: int) -> tuple[VectorArray, IdArray]:
        """For each query, the k best (inner product, face id); missing places hold id -1."""
        queries = np.ascontiguousarray(queries, dtype=np.float32).reshape(-1, self.dimension)
        # Not bounded by the ids held here: the server may hold another replica's faces this one has
        # not heard of yet.
        depth = min(k, _MAX_TOP_K)
        scores = np.zeros((len(queries), max(depth, 0)), np.float32)
        ids = np.full((len(queries), max(depth, 0)), -1, np.int64)
        if depth <= 0 or not len(queries) or not self._present():
            return scores, ids
        params: dict[str, Any] = {"metric_type": "IP"}
        if self.engine.settings.index_type == "HNSW":
            params["params"] = {"ef": max(self.engine.settings.ef, depth)}
        hits = self.engine.call(
            lambda: self.engine.client.search(
                self.alias,
                data=queries.tolist(),
                limit=depth,
                search_params=params,
                consistency_level=self._level(),
            )
        )
        for row, found in enumerate(hits):
            for place, hit in enumerate(found[:depth]):
                ids[row, place] = int(hit[_ID])
                scores[row, place] = float(hit["distance"])
        return scores, ids

    def held_by_server(self, highest: int = 0) -> IdArray:
        """Every face id the server holds for the collection, read strongly, in spans of ids up to
        `highest` (the store's largest) and one for all above it. (Milvus 2.3's query iterator reads at
        its client's own last write, not strongly.)"""
        if self.engine.target(self.alias) is None:
            return np.zeros(0, np.int64)
        spans = [f"id >= {low} and id < {low + _ID_SPAN}" for low in range(0, highest + 1, _ID_SPAN)]
        spans.append(f"id >= {len(spans) * _ID_SPAN}")
        found: list[int] = []
        for span in spans:
            rows = self.engine.call(
                partial(
                    self.engine.client.query,
                    self.alias,
                    filter=span,
                    output_fields=[_ID],
                    consistency_level="Strong",
                )
            )
            found.extend(int(row[_ID]) for row in rows)
        return np.array(found, dtype=np.int64)

    def server_count(self) -> int:
        """How many vectors the server holds for the collection, read strongly."""
        if self.engine.target(self.alias) is None:
            return 0
        rows = self.engine.call(
            lambda: self.engine.client.query(
                self.alias, filter="", output_fields=["count(*)"], consistency_level="Strong"
            )
        )
        return int(rows[0]["count(*)"])

    def rebuild(self, ids: IdArray, vectors: VectorArray) -> None:
        """Fill a new generation with exactly these vectors, point the alias at it, drop the old one."""
        ids, vectors = self._check(ids, np.asarray(vectors, np.float32).reshape(len(ids), self.dimension))
        old = self.engine.target(self.alias)
        name = f"{self.alias}_g{time.time_ns() // 1_000_000}"
        self.engine.create(name, self.dimension)
        try:
            # A rebuild may take many vectors: each chunk gets the timeout, not the whole.
            for start in range(0, len(ids), _REBUILD_CHUNK):
                chunk = slice(start, start + _REBUILD_CHUNK)
                self.write(name, ids[chunk], vectors[chunk], fresh=True)
            self.engine.call(lambda: self.engine.client.flush(name))
            self.engine.point(self.alias, name)
        except BaseException:
            self.engine.drop(name)
            raise
        if old is not None and old != name:
            self.engine.drop(old)
        with self._lock:
            self._exists = True
        self.reset(ids)
        self._strong_until = time.monotonic() + self.engine.settings.fresh_s

    def drop(self) -> None:
        """Drop the collection's vectors from the server."""
        self.engine.drop_alias(self.alias)
        with self._lock:
            self._exists = False
        self._held = set()

    def needs_rebuild(self, extra: int) -> bool:
        """Never: Milvus builds its own index segments as they fill."""
        return False

    def ids(self) -> IdArray:
        """Every face id held."""
        return np.fromiter(self._held, dtype=np.int64, count=len(self._held))

    def save(self, path: Path) -> None:
        """Nothing: the server keeps the vectors."""

    def load(self, path: Path, expected_ids: IdArray) -> bool:
        """Never from a local snapshot: the server's vectors are checked against the store instead."""
        return False

    def __len__(self) -> int:
        return len(self._held)
