"""Vector search in a Milvus server that every replica shares: a Milvus collection per faceverify collection.

The gallery's store (PostgreSQL, or SQLite for one process) stays the truth; Milvus holds each collection's
vectors under the face ids. A faceverify collection's vectors live in a Milvus collection reached through an
alias, `<prefix>_<collection id>`, so that a rebuild can fill a new generation while the old one serves and
then switch the alias in one step. pymilvus (the `milvus` extra) is imported only here.
"""

from __future__ import annotations

import logging
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
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
    # HNSW's search breadth: recall against time. At 1M random faces 128 found the nearest for 94% of
    # probes, 256 for 99.3%, 512 for all, at 1.6 ms more than 128 (benchmarks/results/scale.json).
    ef: int = 512
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
    """This process's client of one Milvus server or cluster, shared by every collection's index.

    Every call has the settings' deadline (pymilvus's own default is none), and every failure, Milvus's
    or gRPC's, is an IndexUnavailable (503) naming the server.
    """

    shared = True

    def __init__(self, settings: MilvusSettings) -> None:
        import grpc
        import pymilvus  # the `milvus` extra

        self.settings = settings
        self.where = f"the Milvus server at {_redacted(settings.uri)}"
        self._errors: tuple[type[BaseException], ...] = (
            pymilvus.MilvusException,
            grpc.RpcError,
            ConnectionError,
        )
        self._pymilvus = pymilvus
        self._generation = re.compile(rf"^{re.escape(settings.prefix)}_(\d+)_g(\d+)_[0-9a-f]+$")
        with self.errors():
            self.client = pymilvus.MilvusClient(
                settings.uri, token=settings.token or "", timeout=settings.timeout_s
            )

    @contextmanager
    def errors(self) -> Iterator[None]:
        """Milvus's and gRPC's failures as IndexUnavailable."""
        try:
            yield
        except self._errors as error:
            raise IndexUnavailable(f"{self.where} failed: {error}") from error

    def call(self, method: Callable[..., T], *args: Any, timeout: float | None = None, **kwargs: Any) -> T:
        """One call to the server within `timeout` (the settings' by default)."""
        with self.errors():
            return method(*args, timeout=timeout or self.settings.timeout_s, **kwargs)

    # Names

    def alias(self, collection_id: int) -> str:
        """The name a faceverify collection's vectors are reached by."""
        return f"{self.settings.prefix}_{collection_id}"

    def generation(self, collection_id: int) -> str:
        """A new generation's name: the alias, when it was made (ms), and a random part, so that two
        replicas making one at the same moment never take the same name."""
        return f"{self.alias(collection_id)}_g{time.time_ns() // 1_000_000}_{secrets.token_hex(4)}"

    def parse(self, name: str) -> tuple[int, int] | None:
        """(collection id, made at ms) of a generation's name; None for another name."""
        match = self._generation.match(name)
        return (int(match[1]), int(match[2])) if match else None

    def new(self, collection_id: int, dimension: int) -> MilvusIndex:
        """The index of one faceverify collection."""
        return MilvusIndex(self, collection_id, dimension)

    # The server's collections and aliases

    def names(self) -> list[str]:
        """Every generation of this gallery's prefix on the server."""
        return [name for name in self.call(self.client.list_collections) if self.parse(name) is not None]

    def target(self, alias: str) -> str | None:
        """The generation an alias points at (None when there is no such alias)."""
        if not self.call(self.client.has_collection, alias):
            return None
        return str(self.call(self.client.describe_collection, alias)["collection_name"])

    def dimension_of(self, name: str) -> int:
        """The vector size a Milvus collection (or alias) holds."""
        fields = self.call(self.client.describe_collection, name)["fields"]
        dims = [int(f["params"]["dim"]) for f in fields if f["name"] == _VECTOR]
        if not dims:
            raise IndexUnavailable(f"{self.where} holds {name!r} without a {_VECTOR!r} field")
        return dims[0]

    def create(self, name: str, dimension: int) -> None:
        """A loaded Milvus collection of face ids and unit vectors with the settings' index."""
        schema = self._pymilvus.MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field(_ID, self._pymilvus.DataType.INT64, is_primary=True)
        schema.add_field(_VECTOR, self._pymilvus.DataType.FLOAT_VECTOR, dim=dimension)
        index = self.client.prepare_index_params()
        kind = self.settings.index_type
        params = (
            {"M": self.settings.hnsw_m, "efConstruction": self.settings.hnsw_ef_construction}
            if kind == "HNSW"
            else {}
        )
        index.add_index(field_name=_VECTOR, index_type=kind, metric_type="IP", params=params)
        # With index parameters, Milvus builds the index and loads the collection before answering.
        self.call(self.client.create_collection, name, schema=schema, index_params=index)

    def drop(self, name: str) -> None:
        """Drop a Milvus collection (nothing when there is none)."""
        if self.call(self.client.has_collection, name):
            self.call(self.client.drop_collection, name)

    def create_alias(self, alias: str, name: str) -> None:
        """Make a new alias for a generation (fails where the alias exists)."""
        self.call(self.client.create_alias, name, alias)

    def switch(self, alias: str, name: str) -> None:
        """Point an alias at a generation, creating it where there is none."""
        if self.target(alias) is None:
            self.create_alias(alias, name)
        else:
            self.call(self.client.alter_alias, name, alias)

    def drop_alias(self, alias: str) -> None:
        """Drop an alias and the generation it names."""
        name = self.target(alias)
        if name is None:
            return
        self.call(self.client.drop_alias, alias)
        self.drop(name)

    # Rows

    def upsert(
        self, name: str, ids: IdArray, vectors: VectorArray, deadline: float, fresh: bool = False
    ) -> None:
        """Write vectors under their ids into a collection or alias, all by `deadline` (monotonic); into a
        `fresh` generation (no id in it twice) a plain insert does, without upsert's deletes."""
        method = self.client.insert if fresh else self.client.upsert
        for start in range(0, len(ids), _UPSERT_ROWS):
            chunk = slice(start, start + _UPSERT_ROWS)
            rows = [
                {_ID: face_id, _VECTOR: vector}
                for face_id, vector in zip(ids[chunk].tolist(), vectors[chunk], strict=True)
            ]
            left = deadline - time.monotonic()
            if left <= 0:
                raise IndexUnavailable(
                    f"{self.where} took longer than {self.settings.timeout_s:g} s to take {len(ids)} vectors"
                )
            self.call(method, name, rows, timeout=left)

    def delete(self, name: str, ids: IdArray) -> None:
        """Delete rows by id (absent ids are ignored)."""
        if len(ids):
            self.call(self.client.delete, name, ids=np.asarray(ids, dtype=np.int64).tolist())

    def ids_in(self, name: str, highest: int = 0) -> IdArray:
        """Every id a collection or alias holds, read strongly, in spans of ids up to `highest` and one
        for all above it. (Milvus 2.3's query iterator reads at its client's own last write, not strongly.)"""
        spans = [f"id >= {low} and id < {low + _ID_SPAN}" for low in range(0, highest + 1, _ID_SPAN)]
        spans.append(f"id >= {len(spans) * _ID_SPAN}")
        found: list[int] = []
        for span in spans:
            rows = self.call(
                self.client.query, name, filter=span, output_fields=[_ID], consistency_level="Strong"
            )
            found.extend(int(row[_ID]) for row in rows)
        return np.array(found, dtype=np.int64)

    def flush(self, name: str) -> None:
        """Seal what a collection holds (so that its index is built over it)."""
        self.call(self.client.flush, name)

    def close(self) -> None:
        """Close the connection (a server that is gone needs no goodbye)."""
        try:
            self.client.close()
        except self._errors as error:
            log.warning("closing the connection to %s: %s", self.where, error)


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
        self.collection_id = collection_id
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
            name = self.engine.generation(self.collection_id)
            self.engine.create(name, self.dimension)
            try:
                self.engine.create_alias(self.alias, name)
            except IndexUnavailable:
                # Another replica may have made the alias first: then its generation is the one.
                target = self.engine.target(self.alias)
                self.engine.drop(name)
                if target is None or target == name:
                    raise
            self._exists = True

    def _gone(self) -> bool:
        """After a failure: whether the alias has gone from the server (its volumes lost, say)."""
        try:
            gone = self.engine.target(self.alias) is None
        except IndexUnavailable:
            return False
        if gone:
            self._exists = False
            log.warning(
                "%s no longer has %r: the start-up check or rebuild-index fills it",
                self.engine.where,
                self.alias,
            )
        return gone

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
        if vectors.size != len(ids) * self.dimension:
            raise ValueError(f"expected ({len(ids)}, {self.dimension}) vectors, got {vectors.shape}")
        return np.ascontiguousarray(ids, dtype=np.int64), vectors.reshape(len(ids), self.dimension)

    def add(self, ids: IdArray, vectors: VectorArray) -> None:
        """Write vectors under their face ids (one held already is replaced: writing twice is harmless),
        creating the collection on the server first where needed, all within the settings' timeout."""
        if not len(ids):
            return
        ids, vectors = self._check(ids, vectors)
        deadline = time.monotonic() + self.engine.settings.timeout_s
        self._ensure()
        try:
            self.engine.upsert(self.alias, ids, vectors, deadline)
        except IndexUnavailable:
            if not self._gone():
                raise
            self._ensure()
            self.engine.upsert(self.alias, ids, vectors, deadline)
        self.track(ids, np.zeros(0, np.int64))

    def remove(self, ids: IdArray) -> None:
        """Delete vectors by face id (absent ids are ignored)."""
        ids = np.asarray(ids, dtype=np.int64)
        if not len(ids):
            return
        if self._present():
            self.engine.delete(self.alias, ids)
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
        try:
            hits = self.engine.call(
                self.engine.client.search,
                self.alias,
                data=queries.tolist(),
                limit=depth,
                search_params=params,
                consistency_level=self._level(),
            )
        except IndexUnavailable:
            if self._gone():
                return scores, ids
            raise
        for row, found in enumerate(hits):
            for place, hit in enumerate(found[:depth]):
                ids[row, place] = int(hit[_ID])
                scores[row, place] = float(hit["distance"])
        return scores, ids

    def held_by_server(self, highest: int = 0) -> IdArray:
        """Every face id the server holds for the collection, read strongly."""
        if self.engine.target(self.alias) is None:
            return np.zeros(0, np.int64)
        return self.engine.ids_in(self.alias, highest)

    def server_count(self) -> int:
        """How many vectors the server holds for the collection, read strongly."""
        if self.engine.target(self.alias) is None:
            return 0
        rows = self.engine.call(
            self.engine.client.query,
            self.alias,
            filter="",
            output_fields=["count(*)"],
            consistency_level="Strong",
        )
        return int(rows[0]["count(*)"])

    # Generations (rebuilds)

    def fill(self, ids: IdArray, vectors: VectorArray) -> str:
        """A new generation holding exactly these vectors, sealed, not yet in use; its name."""
        ids, vectors = self._check(ids, vectors)
        name = self.engine.generation(self.collection_id)
        self.engine.create(name, self.dimension)
        try:
            # A rebuild may take many vectors: each chunk gets the timeout, not the whole.
            for start in range(0, len(ids), _REBUILD_CHUNK):
                chunk = slice(start, start + _REBUILD_CHUNK)
                deadline = time.monotonic() + self.engine.settings.timeout_s
                self.engine.upsert(name, ids[chunk], vectors[chunk], deadline, fresh=True)
            self.engine.flush(name)
        except BaseException:
            self.engine.drop(name)
            raise
        return name

    def use(self, name: str) -> None:
        """Point the alias at a generation and drop the one it replaces."""
        old = self.engine.target(self.alias)
        self.engine.switch(self.alias, name)
        with self._lock:
            self._exists = True
        if old is not None and old != name:
            self.engine.drop(old)
        self._strong_until = time.monotonic() + self.engine.settings.fresh_s

    def drop_unused_generations(self) -> list[str]:
        """Drop this collection's generations the alias does not name (where it names one): those a
        rebuild replaced or left half-written. The names dropped."""
        target = self.engine.target(self.alias)
        if target is None:
            return []  # a first generation may be on its way to its alias
        dropped = []
        for name in self.engine.names():
            parsed = self.engine.parse(name)
            if parsed is not None and parsed[0] == self.collection_id and name != target:
                self.engine.drop(name)
                dropped.append(name)
        return dropped

    def rebuild(self, ids: IdArray, vectors: VectorArray) -> None:
        """Replace the contents with exactly these vectors: a new generation, then the switch to it."""
        self.use(self.fill(ids, vectors))
        self.reset(ids)

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
