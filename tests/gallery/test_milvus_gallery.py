"""The gallery with its vectors in a real Milvus 2.3.5 standalone server (FV_VECTOR_INDEX=milvus): searches,
replicas on one PostgreSQL database sharing the server, start-up repair, outages, and rebuilding from the
store. Each test has a Milvus database and a PostgreSQL database of its own."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from app.gallery.errors import GalleryModelMismatch, IndexUnavailable
from app.gallery.gallery import Gallery
from app.gallery.store import Enrollment, NewFace
from tests.engines.milvus import MilvusServer
from tests.gallery.vectors import DIM, faces_of, identities, unit

pytest.importorskip("pymilvus", reason="pymilvus (the `milvus` extra) talks to Milvus")

from app.gallery.milvus import MilvusEngine, MilvusIndex, MilvusSettings
from app.gallery.reindex import drop_stale_generations, rebuild

pytestmark = pytest.mark.slow
MODEL = "model-a"
Engines = Callable[..., MilvusEngine]


@pytest.fixture
def engines(milvus_uri: str) -> Iterator[Engines]:
    """Clients of the test's Milvus database (one per replica, as separate processes have)."""
    made: list[MilvusEngine] = []

    def connect(**overrides: Any) -> MilvusEngine:
        made.append(MilvusEngine(replace(MilvusSettings(uri=milvus_uri, timeout_s=30.0), **overrides)))
        return made[-1]

    yield connect
    for engine in made:
        engine.close()


@pytest.fixture
def replicas(postgres_url: str, tmp_path: Path, engines: Engines) -> Callable[..., Gallery]:
    """Galleries on the test's PostgreSQL database, each with its own Milvus client."""
    from app.gallery.postgres import PostgresStore

    def replica(**overrides: Any) -> Gallery:
        number = len(list(tmp_path.iterdir()))
        store = PostgresStore(postgres_url)
        return Gallery(tmp_path / f"r{number}", MODEL, DIM, store=store, indexes=engines(**overrides))

    return replica


def _enroll(gallery: Gallery, subject: str, vectors: np.ndarray, collection: str = "default") -> int:
    (ids,) = gallery.enroll(collection, [Enrollment(subject, [NewFace(v) for v in vectors])])
    return ids.seq


def _server_ids(engine: MilvusEngine, gallery: Gallery, collection: str = "default") -> list[int]:
    index = engine.new(gallery.collection(collection).id, DIM)
    return sorted(index.held_by_server(10_000).tolist())


def test_an_exact_index_finds_what_numpy_finds_and_forgets_what_is_removed(engines: Engines) -> None:
    engine = engines(index_type="FLAT", consistency="strong")
    vectors = unit(np.random.default_rng(3).standard_normal((500, DIM)))
    index = engine.new(7, DIM)
    assert len(index) == 0 and index.search(vectors[:1], 5)[1].shape == (1, 5)
    index.add(np.arange(500, dtype=np.int64) + 1000, vectors)
    assert len(index) == 500 and index.server_count() == 500

    queries = faces_of(vectors[[0, 42, 499]], seed=4)
    scores, ids = index.search(queries, 10)
    expected = np.argsort(-(queries @ vectors.T), axis=1)[:, :10] + 1000
    np.testing.assert_array_equal(ids, expected)
    np.testing.assert_allclose(scores, np.take_along_axis(queries @ vectors.T, expected - 1000, 1), atol=1e-5)

    index.add(np.array([1000], dtype=np.int64), vectors[1:2])  # written again: replaced, not doubled
    index.remove(np.array([1042, 5], dtype=np.int64))
    assert len(index) == 499 and index.server_count() == 499
    _, ids = index.search(queries, 3)
    assert 1042 not in ids and ids[0, 0] != 1000  # 1000 now holds vector 1's values
    assert sorted(index.held_by_server().tolist()) == sorted(index.ids().tolist())


def test_hnsw_finds_each_faces_nearest(engines: Engines) -> None:
    index = engines(consistency="strong").new(1, DIM)
    people = identities(300, seed=5)
    index.add(np.arange(300, dtype=np.int64), faces_of(people, seed=6))
    _, ids = index.search(faces_of(people, seed=7), 1)
    assert (ids[:, 0] == np.arange(300)).mean() >= 0.99


def test_identify_on_another_replica_sees_each_acknowledged_enrollment_at_once(
    replicas: Callable[..., Gallery],
) -> None:
    writer, reader = replicas(), replicas(consistency="strong")
    people = identities(15, seed=8)
    for number, person in enumerate(people):
        _enroll(writer, f"p{number}", person[None])
        # No catching up: the reader has heard nothing of the write, yet its search reads it.
        (ranking,) = reader.rank("default", faces_of(person[None], seed=number), top_k=1)
        assert [c.subject_id for c in ranking.candidates] == [f"p{number}"]
    reader.catch_up()
    assert reader.index_size("default") == writer.index_size("default") == 15


def test_auto_reads_strongly_while_a_known_write_may_not_show_and_bounded_after(
    replicas: Callable[..., Gallery],
) -> None:
    # A window of 1.5 s (timeout 0.5 s, grace 0 s, 1 s of margin), for the test's sake.
    writer, reader = replicas(), replicas(timeout_s=0.5, graceful_s=0.0)
    reader_index = reader._indexes[reader.collection("default").id]
    assert isinstance(reader_index, MilvusIndex)
    assert reader_index._level() == "Strong"  # just started: writes before it may not show yet
    time.sleep(1.6)
    assert reader_index._level() == "Bounded"

    person = identities(1, seed=9)
    seq = _enroll(writer, "ann", person)
    assert reader.seen(seq)  # as /identify?after_seq= does
    assert reader_index._level() == "Strong"
    (ranking,) = reader.rank("default", faces_of(person, seed=1), top_k=1)
    assert [c.subject_id for c in ranking.candidates] == ["ann"]
    assert reader.index_size("default") == 1


def test_deletions_and_new_collections_reach_the_other_replica(replicas: Callable[..., Gallery]) -> None:
    first, second = replicas(consistency="strong"), replicas(consistency="strong")
    people = identities(4, seed=10)
    for number, person in enumerate(people):
        _enroll(first, f"p{number}", person[None])
    first.delete_subject("default", "p1")
    (ranking,) = second.rank("default", faces_of(people[1:2], seed=2), top_k=4)
    assert "p1" not in [c.subject_id for c in ranking.candidates]
    assert second.catch_up() and second.index_size("default") == 3

    first.create_collection("staff")
    _enroll(first, "bo", people[:1], collection="staff")
    second.catch_up()
    (ranking,) = second.rank("staff", faces_of(people[:1], seed=3), top_k=1)
    assert [c.subject_id for c in ranking.candidates] == ["bo"]
    alias = second.indexes.new(first.collection("staff").id, DIM).alias  # type: ignore[attr-defined]
    first.delete_collection("staff")
    engine = second.indexes
    assert isinstance(engine, MilvusEngine) and engine.target(alias) is None


def test_a_start_writes_what_the_server_lacks_and_deletes_what_the_store_has_not(
    replicas: Callable[..., Gallery], engines: Engines
) -> None:
    first = replicas(consistency="strong")
    people = identities(20, seed=11)
    for number, person in enumerate(people):
        _enroll(first, f"p{number}", person[None])
    stored = sorted(first.store.face_ids(first.collection("default")).tolist())
    # The server loses three faces (a write that failed after its commit) and keeps one the store has not.
    admin = engines()
    alias = admin.alias(first.collection("default").id)
    admin.client.delete(alias, ids=stored[:3])
    admin.client.upsert(alias, [{"id": 999_999, "vector": people[0].tolist()}])

    second = replicas(consistency="strong")
    assert second.startup.rebuilt == {"default": 20}
    assert _server_ids(admin, second) == stored
    (ranking,) = second.rank("default", faces_of(people[:1], seed=4), top_k=1)
    assert ranking.candidates[0].subject_id == "p0" and ranking.faces_searched == 20
    third = replicas(consistency="strong")
    assert third.startup.loaded == {"default": 20}  # nothing to mend now


def test_a_collection_of_other_vectors_under_the_prefix_is_refused(
    replicas: Callable[..., Gallery], engines: Engines
) -> None:
    first = replicas()
    admin = engines()
    other = admin.new(first.collection("default").id, 64)
    other.add(np.array([1], dtype=np.int64), unit(np.ones((1, 64))))
    with pytest.raises(GalleryModelMismatch, match="FV_MILVUS_PREFIX"):
        replicas()
    assert replicas(prefix="other").index_size("default") == 0  # a prefix of its own


def test_rebuild_index_writes_a_new_generation_and_drops_what_nothing_uses(
    replicas: Callable[..., Gallery], engines: Engines
) -> None:
    gallery = replicas(consistency="strong")
    people = identities(30, seed=12)
    for number, person in enumerate(people):
        _enroll(gallery, f"p{number}", person[None])
    gallery.create_collection("gone")
    _enroll(gallery, "x", people[:1], collection="gone")
    gone = gallery.collection("gone").id
    admin = engines()
    gone_generation = admin.target(admin.alias(gone))
    gallery.store.delete_collection("gone")  # as a replica cut off before it dropped the vectors
    default_id = gallery.collection("default").id
    before = admin.target(admin.alias(default_id))
    cut_short = f"{admin.settings.prefix}_{default_id}_g1_00000000"
    admin.create(cut_short, DIM)  # a rebuild cut short long ago

    report = rebuild(gallery.store, admin)
    assert report.faces == {"default": 30}
    after = admin.target(admin.alias(default_id))
    assert after != before
    assert sorted(report.dropped) == sorted([cut_short, before, gone_generation])
    assert set(admin.names()) == {after}
    assert _server_ids(admin, gallery) == sorted(
        gallery.store.face_ids(gallery.collection("default")).tolist()
    )
    # The serving gallery goes on through the alias, and writes land in the new generation.
    _enroll(gallery, "late", identities(1, seed=13))
    (ranking,) = gallery.rank("default", faces_of(people[5:6], seed=5), top_k=1)
    assert ranking.candidates[0].subject_id == "p5"
    assert admin.new(default_id, DIM).server_count() == 31
    assert drop_stale_generations(gallery.store, admin) == []


def test_writes_while_the_server_is_down_are_refused_or_kept_and_finished_later(
    replicas: Callable[..., Gallery], milvus_server: MilvusServer
) -> None:
    gallery = replicas(consistency="strong", timeout_s=5.0)
    people = identities(3, seed=14)
    _enroll(gallery, "p0", people[:1])
    _enroll(gallery, "p1", people[1:2])
    milvus_server.kill()
    try:
        with pytest.raises(IndexUnavailable):
            _enroll(gallery, "p2", people[2:3])
        # Committed though not acknowledged: listed, counted, and to be written once the server is back.
        assert gallery.subject("default", "p2").face_ids
        gallery.delete_subject("default", "p0")  # committed: the server's copy goes later
        with pytest.raises(IndexUnavailable):
            gallery.rank("default", people[1:2], top_k=1)
    finally:
        milvus_server.start()
    stored = sorted(gallery.store.face_ids(gallery.collection("default")).tolist())
    deadline = time.monotonic() + 120
    while True:
        done = gallery.retry_index_writes()  # as the follower's loop does
        try:
            # Searchable once the restarted server has loaded the collection again.
            if done and _server_ids(gallery.indexes, gallery) == stored:  # type: ignore[arg-type]
                break
        except IndexUnavailable:
            pass
        assert time.monotonic() < deadline, "not written and searchable within 120 s of the restart"
        time.sleep(1)
    (ranking,) = gallery.rank("default", faces_of(people[2:3], seed=6), top_k=3)
    assert [c.subject_id for c in ranking.candidates][:1] == ["p2"]
    assert "p0" not in [c.subject_id for c in ranking.candidates]


def test_two_replicas_making_a_collections_first_generation_at_once_share_one(engines: Engines) -> None:
    first, second = engines(consistency="strong").new(3, DIM), engines(consistency="strong").new(3, DIM)
    vectors = unit(np.random.default_rng(15).standard_normal((2, DIM)))
    barrier, failures = threading.Barrier(2), []

    def enroll(index: MilvusIndex, face_id: int) -> None:
        barrier.wait()
        try:
            index.add(np.array([face_id], dtype=np.int64), vectors[face_id : face_id + 1])
        except Exception as error:
            failures.append(error)

    threads = [threading.Thread(target=enroll, args=(index, n)) for n, index in enumerate((first, second))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures
    engine = first.engine
    assert [name for name in engine.names() if engine.parse(name)[0] == 3] == [engine.target(first.alias)]  # type: ignore[index]
    assert sorted(first.held_by_server(10).tolist()) == [0, 1]


def test_rebuilding_an_emptied_collection_keeps_it_usable(
    replicas: Callable[..., Gallery], engines: Engines
) -> None:
    gallery = replicas(consistency="strong")
    person = identities(1, seed=16)
    _enroll(gallery, "ann", person)
    gallery.delete_subject("default", "ann")
    admin = engines()
    report = rebuild(gallery.store, admin, ["default"])
    assert report.faces == {"default": 0}
    assert admin.new(gallery.collection("default").id, DIM).server_count() == 0
    _enroll(gallery, "bo", person)  # the serving replica writes through the alias it knew
    (ranking,) = gallery.rank("default", faces_of(person, seed=2), top_k=1)
    assert [c.subject_id for c in ranking.candidates] == ["bo"]
