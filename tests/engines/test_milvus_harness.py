"""The Milvus harness on a real standalone server: exact search, deletes, consistency, crashes, restarts.

The timings measured go to the terminal, one `milvus:` line each.
"""

from __future__ import annotations

import os
import socket
import statistics
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.engines.milvus import (
    DEFAULT_PORTS,
    LOOPBACK,
    MilvusError,
    MilvusServer,
    apply_settings,
    listening_addresses,
    network_interfaces,
    render_template,
)

pymilvus = pytest.importorskip("pymilvus", reason="pymilvus (the `milvus` extra) talks to Milvus")

DIM = 128
COUNT = 1000
COLLECTION = "faces"


def _unit_vectors(count: int, seed: int) -> np.ndarray:
    vectors = np.random.default_rng(seed).standard_normal((count, DIM)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors


def _near(vector: np.ndarray, seed: int, noise: float = 0.05) -> np.ndarray:
    """A unit vector close to `vector`, as a second photo of the same face would be."""
    moved = vector + noise * np.random.default_rng(seed).standard_normal(DIM).astype(np.float32)
    return (moved / np.linalg.norm(moved)).astype(np.float32)


def _report(capsys: pytest.CaptureFixture[str], text: str) -> None:
    with capsys.disabled():
        print(f"\nmilvus: {text}")


@pytest.fixture
def client(milvus_uri: str) -> Iterator[Any]:
    """A client of the test's own database."""
    connection = pymilvus.MilvusClient(milvus_uri, timeout=60)
    try:
        yield connection
    finally:
        connection.close()


def _create_faces(client: Any, name: str = COLLECTION) -> None:
    """A collection of int64 ids and 128-d vectors with an exact (FLAT) inner-product index, loaded."""
    schema = pymilvus.MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
    schema.add_field("id", pymilvus.DataType.INT64, is_primary=True)
    schema.add_field("vector", pymilvus.DataType.FLOAT_VECTOR, dim=DIM)
    index = client.prepare_index_params()
    index.add_index(field_name="vector", index_type="FLAT", metric_type="IP")
    # With index parameters, create_collection builds the index and loads the collection before it returns.
    client.create_collection(name, schema=schema, index_params=index)


def _insert(client: Any, vectors: np.ndarray, first_id: int = 0, name: str = COLLECTION) -> None:
    rows = [{"id": first_id + n, "vector": vector.tolist()} for n, vector in enumerate(vectors)]
    assert client.insert(name, rows)["insert_count"] == len(rows)


def _search(client: Any, query: np.ndarray, level: str, limit: int = 10) -> list[dict[str, Any]]:
    hits = client.search(COLLECTION, [query.tolist()], limit=limit, consistency_level=level)
    # pymilvus names the key of each hit `id`, whatever the primary key field is called.
    return [{"id": hit["id"], "distance": hit["distance"]} for hit in hits[0]]


def _wait_searchable(client: Any, timeout: float = 180.0) -> float:
    """Seconds until the collection is loaded again and answers a Strong search, after a start."""
    started = time.monotonic()
    probe = np.ones(DIM, dtype=np.float32) / np.sqrt(DIM)
    while True:
        try:
            if client.get_load_state(COLLECTION)["state"].name == "Loaded":
                _search(client, probe, "Strong", limit=1)
                return time.monotonic() - started
        except pymilvus.MilvusException:
            pass
        if time.monotonic() - started > timeout:
            raise AssertionError(f"{COLLECTION} not searchable {timeout:.0f} s after the start")
        time.sleep(0.2)


def _count(client: Any) -> int:
    rows = client.query(COLLECTION, filter="", output_fields=["count(*)"], consistency_level="Strong")
    return int(rows[0]["count(*)"])


# -- the server itself


@pytest.mark.slow
def test_nothing_listens_beyond_loopback(
    milvus_server: MilvusServer, capsys: pytest.CaptureFixture[str]
) -> None:
    pid, launcher = milvus_server.pid, milvus_server.launcher_pid
    assert pid is not None and launcher is not None
    inside = listening_addresses(pid)
    _report(capsys, f"started in {milvus_server.start_seconds:.1f} s ({milvus_server.network} network)")
    if milvus_server.network == "namespace":
        # The server's own namespace has no interface but its loopback, so its wildcard listeners reach no
        # further; this machine sees only the launcher's two forwarded loopback ports.
        assert network_interfaces(pid) == ["lo"]
        assert {port for _, port in inside} == {
            port for key, port in DEFAULT_PORTS.items() if key != "index_coord_port"
        }
        outside = listening_addresses(launcher, seen_from=os.getpid())
        assert outside == {(LOOPBACK, milvus_server.port), (LOOPBACK, milvus_server.metrics_port)}
        return
    # In the host network only the embedded etcd takes an address; Milvus 2.3's gRPC and metrics servers
    # listen on every interface, with no setting to change that.
    wildcard = sorted(port for address, port in inside if address not in (LOOPBACK, "::1"))
    _report(capsys, f"host network: listening on every interface: {wildcard}")
    assert len(wildcard) == 9
    assert milvus_server.port in wildcard


@pytest.mark.slow
@pytest.mark.parametrize("turn", ["first", "second"])
def test_each_test_gets_an_empty_database(
    milvus_server: MilvusServer, milvus_uri: str, client: Any, turn: str
) -> None:
    assert client.list_collections() == []
    assert milvus_uri.startswith(milvus_server.uri + "/")
    # Left behind on purpose: the other turn must not see it, and the fixture must drop it.
    _create_faces(client, name=f"leftover_{turn}")


# -- search, deletes and consistency


@pytest.mark.slow
def test_strong_search_finds_the_exact_neighbours(client: Any, capsys: pytest.CaptureFixture[str]) -> None:
    vectors = _unit_vectors(COUNT, seed=1)
    _create_faces(client)
    started = time.monotonic()
    _insert(client, vectors)
    inserted = time.monotonic()
    client.flush(COLLECTION)
    flushed = time.monotonic()
    _report(capsys, f"insert {COUNT} x {DIM}-d {inserted - started:.2f} s, flush {flushed - inserted:.2f} s")

    for target in (0, 7, 499, 998):
        query = _near(vectors[target], seed=target)
        hits = _search(client, query, "Strong")
        scores = vectors @ query
        expected = np.argsort(-scores)[:10]
        assert hits[0]["id"] == target
        assert [hit["id"] for hit in hits] == expected.tolist()
        np.testing.assert_allclose([hit["distance"] for hit in hits], scores[expected], rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_a_deleted_id_is_gone_for_strong_reads(client: Any) -> None:
    vectors = _unit_vectors(COUNT, seed=2)
    _create_faces(client)
    _insert(client, vectors)
    client.flush(COLLECTION)
    target = 123
    assert _search(client, vectors[target], "Strong", limit=1)[0]["id"] == target

    assert client.delete(COLLECTION, ids=[target])["delete_count"] == 1

    hits = _search(client, vectors[target], "Strong")
    assert target not in [hit["id"] for hit in hits]
    runner_up = int(np.argsort(-(vectors @ vectors[target]))[1])
    assert hits[0]["id"] == runner_up
    assert client.get(COLLECTION, ids=[target], consistency_level="Strong") == []
    assert _count(client) == COUNT - 1


@pytest.mark.slow
def test_strong_and_bounded_reads(client: Any, capsys: pytest.CaptureFixture[str]) -> None:
    vectors = _unit_vectors(COUNT, seed=3)
    _create_faces(client)
    _insert(client, vectors)
    client.flush(COLLECTION)
    latencies: dict[str, list[float]] = {"Strong": [], "Bounded": []}
    for n in range(20):
        for level, spent in latencies.items():
            started = time.monotonic()
            assert _search(client, vectors[n], level, limit=1)[0]["id"] == n
            spent.append(time.monotonic() - started)
    strong, bounded = (statistics.median(latencies[level]) * 1000 for level in ("Strong", "Bounded"))
    _report(capsys, f"search p50: Strong {strong:.0f} ms, Bounded {bounded:.1f} ms")

    # A Strong search waits until the query node has everything acknowledged before it was sent.
    fresh = _unit_vectors(10, seed=4)
    _insert(client, fresh[:1], first_id=COUNT)
    assert _search(client, fresh[0], "Strong", limit=1)[0]["id"] == COUNT

    # A Bounded one answers from what the query node has now: how long until a new insert shows.
    visible_after = []
    for n in range(1, len(fresh)):
        new_id = COUNT + n
        _insert(client, fresh[n : n + 1], first_id=new_id)
        inserted = time.monotonic()
        misses = 0
        while _search(client, fresh[n], "Bounded", limit=1)[0]["id"] != new_id:
            misses += 1
            assert time.monotonic() - inserted < 30, "an insert stayed invisible to Bounded searches for 30 s"
        visible_after.append((time.monotonic() - inserted, misses))
    waits = sorted(seconds * 1000 for seconds, _ in visible_after)
    immediately = sum(1 for _, misses in visible_after if misses == 0)
    _report(
        capsys,
        f"insert visible to Bounded after p50 {statistics.median(waits):.0f} ms, max {waits[-1]:.0f} ms "
        f"(at the first search: {immediately}/{len(visible_after)})",
    )


# -- crashes and restarts


@pytest.mark.slow
def test_sigkill_keeps_the_flushed_data(
    milvus_server: MilvusServer, client: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    vectors = _unit_vectors(COUNT, seed=5)
    _create_faces(client)
    _insert(client, vectors[:-10])
    client.flush(COLLECTION)
    # Acknowledged but not flushed: only in the message log (rocksmq) when the server dies.
    _insert(client, vectors[-10:], first_id=COUNT - 10)
    uri = milvus_server.uri

    milvus_server.kill()
    assert not milvus_server.running
    started = time.monotonic()
    milvus_server.start()
    healthy = time.monotonic() - started
    searchable = _wait_searchable(client)
    _report(capsys, f"start after SIGKILL: healthy in {healthy:.1f} s, searchable {searchable:.1f} s later")

    assert milvus_server.uri == uri
    assert _count(client) == COUNT
    for target in (3, COUNT - 1):
        assert _search(client, _near(vectors[target], seed=target), "Strong", limit=1)[0]["id"] == target


@pytest.mark.slow
def test_stop_and_start_keep_the_data_and_the_uri(
    milvus_server: MilvusServer, client: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    vectors = _unit_vectors(100, seed=6)
    _create_faces(client)
    _insert(client, vectors)
    client.flush(COLLECTION)
    uri = milvus_server.uri

    started = time.monotonic()
    milvus_server.stop()
    stopped = time.monotonic() - started
    assert not milvus_server.running
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((LOOPBACK, milvus_server.port), timeout=5).close()
    started = time.monotonic()
    milvus_server.start()
    healthy = time.monotonic() - started
    searchable = _wait_searchable(client)
    _report(
        capsys,
        f"stop (SIGTERM): {stopped:.1f} s; start again: healthy in {healthy:.1f} s, "
        f"searchable {searchable:.1f} s later",
    )
    # The server's own graceful stop ends it, not the SIGKILL that stop() falls back on after 30 s.
    assert stopped < 30
    assert milvus_server.uri == uri
    assert _count(client) == 100


# -- the harness's pieces, without a server


def test_settings_land_in_their_sections() -> None:
    text = "etcd:\n  endpoints: localhost:2379 # where\n  data:\n    dir: /x\nproxy:\n  ip:\n  port: 1\n"
    changed = apply_settings(
        text,
        {"proxy.ip": "127.0.0.1", "etcd.data.dir": "/y", "etcd.config.path": "/e.yaml", "common.a.b": "1"},
    )
    assert changed.splitlines() == [
        "etcd:",
        "  config:",
        "    path: /e.yaml",
        "  endpoints: localhost:2379 # where",
        "  data:",
        "    dir: /y",
        "proxy:",
        "  ip: 127.0.0.1",
        "  port: 1",
        "common:",
        "  a:",
        "    b: 1",
    ]
    with pytest.raises(MilvusError, match="holds a value"):
        apply_settings(text, {"proxy.port.inner": "2"})


def test_the_template_needs_every_value() -> None:
    assert render_template("a: {{ x(int): 5 }}\nb: {{ y }}", {"y": "/data"}) == "a: 5\nb: /data"
    with pytest.raises(MilvusError, match="'y'"):
        render_template("b: {{ y }}", {})


def test_an_unknown_network_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="bridge"):
        MilvusServer(tmp_path, network="bridge")
