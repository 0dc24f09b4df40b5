"""The FAISS index: exact search equals brute force, IVF keeps recall, removal and snapshots hold."""

from __future__ import annotations

from pathlib import Path

import faiss
import numpy as np
import pytest

from app.gallery.index import FaissIndex, IndexSettings, ids_checksum
from tests.gallery.vectors import DIM, faces_of, identities


def test_exact_search_equals_brute_force() -> None:
    vectors = identities(500, seed=3)
    ids = np.arange(1000, 1500)
    index = FaissIndex(DIM)
    index.add(ids, vectors)
    probes = faces_of(vectors[:50], spread=2.0, seed=4)
    scores, found = index.search(probes, 5)
    expected = np.argsort(-(probes @ vectors.T), axis=1)[:, :5]
    assert np.array_equal(found, ids[expected])
    assert np.allclose(scores, np.take_along_axis(probes @ vectors.T, expected, axis=1), atol=1e-5)
    assert index.kind == "exact"


def test_growing_past_the_limit_switches_to_ivf_and_keeps_recall() -> None:
    centres = identities(12_000, seed=5)
    ids = np.arange(1, 12_001)
    index = FaissIndex(DIM, IndexSettings(exact_limit=5_000))
    rebuilds = 0
    for end in range(3_000, 12_001, 3_000):
        if index.needs_rebuild(3_000):
            index.rebuild(ids[:end], centres[:end])  # the gallery rebuilds from SQLite
            rebuilds += 1
        else:
            index.add(ids[end - 3_000 : end], centres[end - 3_000 : end])
    assert rebuilds == 1
    assert index.kind.startswith("ivf") and len(index) == 12_000
    # Trained on 6,000: retrained once it would pass 4x that.
    assert not index.needs_rebuild(12_000) and index.needs_rebuild(12_001)
    assert ids_checksum(index.ids()) == ids_checksum(ids)
    probes = faces_of(centres[:1_000], seed=6)
    _, found = index.search(probes, 1)
    recall = float(np.mean(found[:, 0] == ids[:1_000]))
    assert recall >= 0.99, recall


@pytest.mark.parametrize("storage", ["float16", "int8"])
def test_compact_storage_still_finds_the_nearest(storage: str) -> None:
    centres = identities(2_000, seed=7)
    index = FaissIndex(DIM, IndexSettings(storage=storage))  # type: ignore[arg-type]
    index.add(np.arange(2_000), centres)
    _, found = index.search(faces_of(centres[:200], seed=8), 1)
    assert np.mean(found[:, 0] == np.arange(200)) >= 0.99


@pytest.mark.parametrize("limit", [10_000, 1_000])
def test_removed_ids_are_never_found(limit: int) -> None:
    vectors = identities(3_000, seed=9)
    index = FaissIndex(DIM, IndexSettings(exact_limit=limit))
    index.rebuild(np.arange(3_000), vectors)
    index.remove(np.arange(0, 3_000, 2))
    assert len(index) == 1_500
    _, found = index.search(vectors[:100], 3)
    assert not np.isin(found, np.arange(0, 3_000, 2)).any()


def test_a_snapshot_is_taken_only_when_its_ids_match(tmp_path: Path) -> None:
    vectors = identities(300, seed=10)
    index = FaissIndex(DIM)
    index.add(np.arange(300), vectors)
    path = tmp_path / "c.faiss"
    index.save(path)
    fresh = FaissIndex(DIM)
    assert not fresh.load(path, np.arange(301)), "a snapshot missing a face was accepted"
    assert not fresh.load(path, np.arange(1, 301)), "a snapshot with other ids was accepted"
    assert len(fresh) == 0
    assert fresh.load(path, np.arange(300))
    assert len(fresh) == 300
    path.write_bytes(b"garbage")
    assert not FaissIndex(DIM).load(path, np.arange(300))


def test_wrong_shapes_are_refused() -> None:
    with pytest.raises(ValueError, match="expected"):
        FaissIndex(DIM).add(np.arange(2), np.zeros((2, 64), np.float32))


def test_a_single_query_search_leaves_the_threads_openmp_setting_as_it_was() -> None:
    vectors = identities(500, seed=11)
    index = FaissIndex(DIM)
    index.add(np.arange(len(vectors), dtype=np.int64), vectors)
    before = faiss.omp_get_max_threads()
    scores, ids = index.search(vectors[7:8], 1)
    assert ids[0, 0] == 7 and scores[0, 0] == pytest.approx(1.0, abs=1e-5)
    assert faiss.omp_get_max_threads() == before
    _, batch_ids = index.search(vectors[:64], 1)
    assert (batch_ids[:, 0] == np.arange(64)).all()
    assert faiss.omp_get_max_threads() == before
