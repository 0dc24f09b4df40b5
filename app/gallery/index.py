"""Vector search over unit embeddings with FAISS: exact inner product, an IVF index past a size."""

from __future__ import annotations

import hashlib
import json
import math
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol, cast

import faiss
import numpy as np
import numpy.typing as npt

IdArray = npt.NDArray[np.int64]
VectorArray = npt.NDArray[np.float32]


def ids_checksum(ids: IdArray) -> str:
    """Order-free fingerprint of a set of face ids: equal sets give equal checksums."""
    return hashlib.sha256(np.sort(ids.astype("<i8")).tobytes()).hexdigest()


class VectorIndex(Protocol):
    """What the gallery needs from a vector index; a distributed engine can stand in for FAISS.

    A `shared` index lives in a server that every replica writes to (see SharedIndex)."""

    shared: bool

    def add(self, ids: IdArray, vectors: VectorArray) -> None: ...
    def remove(self, ids: IdArray) -> None: ...
    def search(self, queries: VectorArray, k: int) -> tuple[VectorArray, IdArray]: ...
    def rebuild(self, ids: IdArray, vectors: VectorArray) -> None: ...
    def needs_rebuild(self, extra: int) -> bool: ...
    def ids(self) -> IdArray: ...
    def save(self, path: Path) -> None: ...
    def load(self, path: Path, expected_ids: IdArray) -> bool: ...
    def __len__(self) -> int: ...


class SharedIndex(VectorIndex, Protocol):
    """An index on a server every replica shares: the writer writes it; followers only `track` the
    feed's changes, and a start checks the server against the store."""

    dimension: int

    def track(self, added: IdArray, removed: IdArray) -> None: ...
    def reset(self, ids: IdArray) -> None: ...
    def server_count(self) -> int: ...
    def held_by_server(self, highest: int = 0) -> IdArray: ...
    def check_dimension(self) -> None: ...
    def drop(self) -> None: ...


class IndexMaker(Protocol):
    """Makes each collection's index: FAISS in this process, or a server's."""

    shared: bool
    where: str  # for messages

    def new(self, collection_id: int, dimension: int) -> VectorIndex: ...
    def close(self) -> None: ...


@dataclass(frozen=True)
class IndexSettings:
    """Exact search up to exact_limit vectors, then IVF; storage trades memory for precision."""

    exact_limit: int = 50_000
    storage: Literal["float32", "float16", "int8"] = "float32"
    nprobe: int = 48
    use_gpu: bool = True  # where faiss sees a GPU (the `gpu` extra); the CPU otherwise


def gpu_count() -> int:
    """GPUs that this faiss build can use (0 for faiss-cpu)."""
    counter = getattr(faiss, "get_num_gpus", None)
    return int(counter()) if counter is not None else 0


_UNIT_COMPONENT_RANGE = 0.5
# IVF cells are trained for the size at the last rebuild; past this growth factor they are retrained.
_IVF_GROWTH = 4
_QUANTISERS = {"float16": faiss.ScalarQuantizer.QT_fp16, "int8": faiss.ScalarQuantizer.QT_8bit}


class FaissIndexes:
    """A FAISS index in this process for each collection."""

    shared = False
    where = "this process"

    def __init__(self, settings: IndexSettings | None = None) -> None:
        self.settings = settings or IndexSettings()

    def new(self, collection_id: int, dimension: int) -> FaissIndex:
        """An empty index for one collection."""
        return FaissIndex(dimension, self.settings)

    def close(self) -> None:
        """Nothing to close: the indexes live in this process."""


class FaissIndex:
    """One collection's vectors in FAISS on the CPU, keyed by face id.

    Small collections use an exact flat index; past exact_limit the index is rebuilt as IVF over
    sqrt-sized cells (recall is set by nprobe). Both support removal by id.
    """

    shared = False

    def __init__(self, dimension: int, settings: IndexSettings | None = None) -> None:
        self.dimension = dimension
        self.settings = settings or IndexSettings()
        self.index: faiss.Index = self._exact()
        self._built_for = 0
        # The CPU index stays the one that is written; a GPU copy serves searches where there is a GPU.
        self._gpu = faiss.StandardGpuResources() if self.settings.use_gpu and gpu_count() else None
        self._replica: faiss.Index | None = None
        self._replica_lock = threading.Lock()

    @property
    def device(self) -> str:
        """Where searches run: 'gpu' or 'cpu'."""
        return "gpu" if self._gpu is not None else "cpu"

    def _searchable(self) -> faiss.Index:
        if self._gpu is None:
            return self.index
        with self._replica_lock:
            if self._replica is None:
                self._replica = faiss.index_cpu_to_gpu(self._gpu, 0, self.index)
            return self._replica

    @property
    def kind(self) -> str:
        """'exact' or 'ivf<cells>'."""
        ivf = faiss.try_extract_index_ivf(self.index)
        return "exact" if ivf is None else f"ivf{ivf.nlist}"

    def _exact(self) -> faiss.Index:
        inner: faiss.Index
        if self.settings.storage == "float32":
            inner = faiss.IndexFlatIP(self.dimension)
        else:
            inner = faiss.IndexScalarQuantizer(
                self.dimension, _QUANTISERS[self.settings.storage], faiss.METRIC_INNER_PRODUCT
            )
            # The codes need a value range; a unit vector's components all but never leave +-0.5
            # in 128 dimensions, and fixing it up front keeps codes comparable as the index grows.
            bounds = np.full((2, self.dimension), _UNIT_COMPONENT_RANGE, dtype=np.float32)
            bounds[0] *= -1
            inner.train(bounds)
        return faiss.IndexIDMap2(inner)

    def _ivf(self, vectors: VectorArray) -> faiss.Index:
        cells = int(min(65_536, max(64, math.sqrt(len(vectors)))))
        quantiser = faiss.IndexFlatIP(self.dimension)
        index: faiss.IndexIVF
        if self.settings.storage == "float32":
            index = faiss.IndexIVFFlat(quantiser, self.dimension, cells, faiss.METRIC_INNER_PRODUCT)
        else:
            index = faiss.IndexIVFScalarQuantizer(
                quantiser,
                self.dimension,
                cells,
                _QUANTISERS[self.settings.storage],
                faiss.METRIC_INNER_PRODUCT,
            )
        # k-means needs some tens of points per cell; more only costs start-up time.
        if len(vectors) > cells * 64:
            vectors = vectors[np.random.default_rng(0).choice(len(vectors), cells * 64, replace=False)]
        index.train(np.ascontiguousarray(vectors))
        index.nprobe = min(cells, self.settings.nprobe)
        return index

    def _check(self, ids: IdArray, vectors: VectorArray) -> tuple[IdArray, VectorArray]:
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[1] != self.dimension or len(ids) != len(vectors):
            raise ValueError(f"expected ({len(ids)}, {self.dimension}) vectors, got {vectors.shape}")
        return np.ascontiguousarray(ids, dtype=np.int64), vectors

    def rebuild(self, ids: IdArray, vectors: VectorArray) -> None:
        """Replace the contents with exactly these vectors, choosing exact or IVF by their number."""
        ids, vectors = self._check(ids, np.asarray(vectors, np.float32).reshape(len(ids), self.dimension))
        index = self._exact() if len(ids) <= self.settings.exact_limit else self._ivf(vectors)
        if len(ids):
            index.add_with_ids(vectors, ids)
        self.index = index
        self._built_for = len(ids)
        self._replica = None

    def needs_rebuild(self, extra: int) -> bool:
        """Whether adding `extra` vectors calls for a rebuild from all of them: an exact index that
        outgrows exact_limit, or IVF cells trained for a quarter of the size or less."""
        after = self.index.ntotal + extra
        if self.kind == "exact":
            return after > self.settings.exact_limit
        return after > _IVF_GROWTH * max(1, self._built_for)

    def add(self, ids: IdArray, vectors: VectorArray) -> None:
        """Add vectors under their face ids (callers rebuild instead when needs_rebuild says so)."""
        ids, vectors = self._check(ids, vectors)
        self.index.add_with_ids(vectors, ids)
        if self._replica is not None:
            try:
                self._replica.add_with_ids(vectors, ids)
            except RuntimeError:
                self._replica = None  # copied afresh at the next search

    def remove(self, ids: IdArray) -> None:
        """Remove vectors by face id (absent ids are ignored)."""
        if len(ids):
            # faiss's Python layer takes an id array here; its stubs only know the C++ IDSelector form.
            self.index.remove_ids(np.ascontiguousarray(ids, dtype=np.int64))  # type: ignore[arg-type]
            self._replica = None  # GPU indexes cannot remove by id: copied afresh at the next search

    def search(self, queries: VectorArray, k: int) -> tuple[VectorArray, IdArray]:
        """For each query, the k best (inner product, face id); missing places hold id -1."""
        queries = np.ascontiguousarray(queries, dtype=np.float32).reshape(-1, self.dimension)
        if self.index.ntotal == 0 or k <= 0:
            return np.zeros((len(queries), 0), np.float32), np.zeros((len(queries), 0), np.int64)
        # A few queries gain nothing from OpenMP's team (faiss splits the work by query), and waking
        # it costs more than the search of a small gallery. The setting is this thread's own.
        threads = faiss.omp_get_max_threads()
        if len(queries) < threads:
            faiss.omp_set_num_threads(1)
        try:
            scores, ids = self._searchable().search(queries, min(k, self.index.ntotal))
        finally:
            faiss.omp_set_num_threads(threads)
        return scores, ids

    def ids(self) -> IdArray:
        """Every face id held."""
        ivf = faiss.try_extract_index_ivf(self.index)
        if ivf is None:
            return faiss.vector_to_array(cast(faiss.IndexIDMap2, self.index).id_map).astype(np.int64)
        lists = ivf.invlists
        if lists is None:
            raise RuntimeError("faiss returned an IVF index without inverted lists")
        parts = [
            faiss.rev_swig_ptr(lists.get_ids(n), lists.list_size(n)).copy()
            for n in range(ivf.nlist)
            if lists.list_size(n)
        ]
        return np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, np.int64)

    def __len__(self) -> int:
        return int(self.index.ntotal)

    def save(self, path: Path) -> None:
        """Write a snapshot (index file plus count and id checksum), atomically."""
        partial = path.with_suffix(".partial")
        faiss.write_index(self.index, str(partial))
        meta = {"count": len(self), "checksum": ids_checksum(self.ids()), "dimension": self.dimension}
        meta_path = path.with_suffix(".json")
        meta_partial = meta_path.with_suffix(".json.partial")
        meta_partial.write_text(json.dumps(meta))
        os.replace(partial, path)
        os.replace(meta_partial, meta_path)

    def load(self, path: Path, expected_ids: IdArray) -> bool:
        """Take a snapshot if it holds exactly expected_ids; False (and nothing changed) otherwise."""
        meta_path = path.with_suffix(".json")
        if not path.is_file() or not meta_path.is_file():
            return False
        try:
            meta = json.loads(meta_path.read_text())
            if meta.get("count") != len(expected_ids) or meta.get("dimension") != self.dimension:
                return False
            if meta.get("checksum") != ids_checksum(expected_ids):
                return False
            index = faiss.read_index(str(path))
        except (OSError, ValueError, RuntimeError):
            return False
        if index.ntotal != len(expected_ids):
            return False
        previous = self.index
        self.index = index
        if ids_checksum(self.ids()) != ids_checksum(expected_ids):
            self.index = previous
            return False
        self._built_for = len(expected_ids)
        self._replica = None
        return True
