"""benchmarks/scale.py's Milvus section: identify through Milvus at 1M faces against in-process FAISS.

The faces are loaded into PostgreSQL (as the start-up section does), written into Milvus by the
`faceverify gallery rebuild-index` code, and searched through Gallery.rank (index search plus the store's
owner lookup, top 5) one probe at a time, as requests come: by a replica on Milvus (each consistency level,
HNSW's ef swept) and by a replica with its FAISS index in memory. Recall@1 is the share of probes whose
top face is the exact nearest (a flat inner-product search over the same vectors). Memory: the Milvus
server's resident size, and how much the FAISS replica's grew as it loaded its index.
"""

from __future__ import annotations

import gc
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from app.gallery.gallery import Gallery
from app.gallery.index import IndexSettings
from app.gallery.milvus import MilvusEngine, MilvusSettings
from app.gallery.postgres import PostgresStore
from app.gallery.reindex import rebuild
from tests.engines.milvus import MilvusServer
from tests.engines.postgres import PostgresServer

PROBES = 300
NOISE = 0.3  # as benchmarks/gallery.py: a probe is its face plus this much noise over sqrt(DIM)


def _rss_mb(pid: int | str = "self") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _ms(values_s: list[float]) -> dict[str, float]:
    ms = np.array(values_s) * 1000
    return {
        "p50_ms": round(float(np.percentile(ms, 50)), 2),
        "p99_ms": round(float(np.percentile(ms, 99)), 2),
    }


def _searches(gallery: Gallery, collection: str, probes: np.ndarray, exact: np.ndarray) -> dict[str, Any]:
    """Rank each probe on its own; latency and recall@1 against the exact nearest face ids."""
    times, tops = [], []
    for probe in probes:
        started = time.perf_counter()
        (ranking,) = gallery.rank(collection, probe[None], top_k=5)
        times.append(time.perf_counter() - started)
        tops.append(ranking.candidates[0].face_id if ranking.candidates else -1)
    return {**_ms(times), "recall_at_1": round(float(np.mean(np.array(tops) == exact)), 4)}


def _wait_indexed(engine: MilvusEngine, alias: str, timeout_s: float = 3_600) -> float:
    """Seconds until Milvus has built its index over every row (searches scan unindexed segments)."""
    started = time.perf_counter()
    name = engine.target(alias)
    while True:
        described = engine.client.describe_index(name, "vector")
        if described.get("pending_index_rows", 1) == 0 and described.get("indexed_rows") == described.get(
            "total_rows"
        ):
            return time.perf_counter() - started
        if time.perf_counter() - started > timeout_s:
            raise TimeoutError(f"Milvus did not index {alias} within {timeout_s} s: {described}")
        time.sleep(1)


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _wait_quiet(pid: int | None, timeout_s: float = 900) -> float:
    """Seconds until the Milvus server uses under a quarter of a core (its compaction and index building
    done), so that searches are timed on cores it does not take."""
    started = time.perf_counter()
    while pid is not None and time.perf_counter() - started < timeout_s:
        before = _cpu_seconds(pid)
        time.sleep(5)
        if (_cpu_seconds(pid) - before) / 5 < 0.25:
            break
    return time.perf_counter() - started


def milvus_section(
    server: PostgresServer,
    workdir: Path,
    faces: int,
    vectors_of: Callable[[int, int], np.ndarray],
    load: Callable[[str, np.ndarray], dict[str, Any]],
    collection: str,
    model: str,
    dim: int,
) -> dict[str, Any]:
    """Every figure of the Milvus section (see the module's docstring)."""
    vectors = vectors_of(faces, 7)
    url = server.create_database("milvus")
    figures: dict[str, Any] = {"faces": faces, "postgres_load": load(url, vectors)}
    milvus_base = Path(tempfile.mkdtemp(prefix="scale-milvus-"))
    milvus = MilvusServer(milvus_base).start()
    try:
        figures["milvus_start_s"] = round(milvus.start_seconds or 0.0, 1)
        settings = MilvusSettings(uri=milvus.uri, timeout_s=120.0)
        store = PostgresStore(url)
        engine = MilvusEngine(settings)
        started = time.perf_counter()
        report = rebuild(store, engine)
        figures["rebuild_index_s"] = round(time.perf_counter() - started, 1)
        assert report.faces.get(collection) == faces, report
        bench = store.collection(collection)
        figures["index_build_s"] = round(_wait_indexed(engine, engine.alias(bench.id)), 1)
        figures["milvus_rss_mb"] = round(_rss_mb(milvus.pid or "self"), 1)

        face_ids = np.sort(store.face_ids(bench))  # COPY gave them in the vectors' order
        rng = np.random.default_rng(11)
        picks = rng.choice(faces, PROBES, replace=False)
        noise = rng.standard_normal((PROBES, dim)).astype(np.float32) * NOISE / np.sqrt(dim)
        probes = vectors[picks] + noise
        probes /= np.linalg.norm(probes, axis=1, keepdims=True)
        flat = faiss.IndexFlatIP(dim)
        flat.add(vectors)
        exact = face_ids[flat.search(probes, 1)[1][:, 0]]
        del flat

        runs: dict[str, Any] = {}
        figures["quiet_wait_s"] = round(_wait_quiet(milvus.pid), 1)
        sweep = [("bounded", 64), ("bounded", 128), ("bounded", 256), ("bounded", 512), ("strong", 256)]
        for consistency, ef in sweep:
            started = time.perf_counter()
            gallery = Gallery(
                workdir / f"milvus-{consistency}-{ef}",
                model,
                dim,
                store=PostgresStore(url),
                indexes=MilvusEngine(replace(settings, consistency=consistency, ef=ef)),
            )
            start_s = time.perf_counter() - started
            assert gallery.startup.loaded.get(collection) == faces, gallery.startup
            key = f"{consistency}_ef{ef}"
            runs[key] = {
                **_searches(gallery, collection, probes, exact),
                "replica_start_s": round(start_s, 2),
            }
            print(f"  milvus {key}: {runs[key]}", flush=True)
            gallery.close()
        figures["milvus"] = runs

        gc.collect()
        rss = _rss_mb()
        started = time.perf_counter()
        gallery = Gallery(workdir / "faiss", model, dim, IndexSettings(), store=PostgresStore(url))
        start_s = time.perf_counter() - started
        index = gallery._indexes[bench.id]
        figures["faiss"] = {
            "index": index.kind,
            **_searches(gallery, collection, probes, exact),
            "replica_start_s": round(start_s, 2),
            "replica_rss_growth_mb": round(_rss_mb() - rss, 1),
        }
        print(f"  faiss {figures['faiss']}", flush=True)
        gallery.close()
        engine.close()
        store.close()
        figures["cores"] = os.cpu_count()
    finally:
        milvus.stop()
        shutil.rmtree(milvus_base, ignore_errors=True)
    return figures
