"""The identity gallery at 10k, 100k and 1M faces: bulk enroll, identify latency, ANN recall, RSS, start-up.

Run: .venv/bin/python -m benchmarks.gallery [--sizes 10000 100000 1000000]
Faces are synthetic 128-d unit vectors (one subject each); probes are enrolled faces plus noise, as a
new photo of an enrolled person would be (cosine about 0.95 to the enrolled face). Exact search is a
flat inner-product index over the same vectors; recall@1 is the share of probes whose top face under
the gallery's index equals exact search's.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from app.gallery.gallery import Gallery
from app.gallery.index import IndexSettings
from app.gallery.store import Enrollment, NewFace
from benchmarks.results_file import write_results

DIM = 128
BATCH = 10_000
PROBES = 1_000
MODEL = "benchmark-model"


def _unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _percentiles(values: list[float]) -> dict[str, float]:
    return {
        "p50": round(statistics.median(values), 3),
        "p99": round(float(np.percentile(values, 99)), 3),
    }


def _one_by_one(search: Any, probes: np.ndarray) -> tuple[list[float], np.ndarray]:
    """Latency of single-probe searches (as requests arrive) and the top ids."""
    times, tops = [], []
    for probe in probes:
        started = time.perf_counter()
        top = search(probe[None])
        times.append((time.perf_counter() - started) * 1000)
        tops.append(top)
    return times, np.array(tops)


def bench_size(size: int, workdir: Path, settings: IndexSettings) -> dict[str, Any]:
    """Every figure for one gallery size, in a fresh data directory."""
    rng = np.random.default_rng(size)
    vectors = _unit(rng.standard_normal((size, DIM)).astype(np.float32))
    gallery = Gallery(workdir, MODEL, DIM, settings)

    started = time.perf_counter()
    for start in range(0, size, BATCH):
        chunk = vectors[start : start + BATCH]
        gallery.enroll("bench", [Enrollment(f"s{start + i}", [NewFace(v)]) for i, v in enumerate(chunk)])
    enroll_s = time.perf_counter() - started
    gallery.store.close()
    del gallery

    rss_before = _rss_mb()
    started = time.perf_counter()
    gallery = Gallery(workdir, MODEL, DIM, settings)
    rebuild_s = time.perf_counter() - started
    rss_mb = _rss_mb()
    gallery.save_snapshots()
    gallery.store.close()
    del gallery
    started = time.perf_counter()
    gallery = Gallery(workdir, MODEL, DIM, settings)
    snapshot_s = time.perf_counter() - started
    assert gallery.startup.loaded.get("bench") == size, gallery.startup  # and the empty default

    picks = rng.choice(size, PROBES, replace=False)
    probes = _unit(
        vectors[picks] + rng.standard_normal((PROBES, DIM)).astype(np.float32) * 0.3 / np.sqrt(DIM)
    )
    index = gallery._indexes[gallery.collection("bench").id]
    ann_times, ann_top = _one_by_one(lambda q: index.search(q, 1)[1][0, 0], probes)
    identify_times, _ = _one_by_one(lambda q: gallery.identify("bench", q, top_k=5)[0][0].face_id, probes)
    flat = faiss.IndexFlatIP(DIM)
    flat.add(vectors)
    exact_times, exact_top = _one_by_one(
        lambda q: flat.search(q, 1)[1][0, 0] + 1, probes
    )  # face ids start at 1
    recall = float(np.mean(ann_top == exact_top))
    figures = {
        "faces": size,
        "index": index.kind,
        "bulk_enroll_per_s": round(size / enroll_s),
        "startup_s": round(rebuild_s, 2),
        "startup_from_snapshot_s": round(snapshot_s, 2),
        "rss_mb": round(rss_mb, 1),
        "rss_mb_before_start": round(rss_before, 1),
        "exact_p50_ms": _percentiles(exact_times)["p50"],
        "exact_p99_ms": _percentiles(exact_times)["p99"],
        "ann_p50_ms": _percentiles(ann_times)["p50"],
        "ann_p99_ms": _percentiles(ann_times)["p99"],
        "identify_p50_ms": _percentiles(identify_times)["p50"],
        "identify_p99_ms": _percentiles(identify_times)["p99"],
        "ann_recall_at_1": recall,
        "nprobe": settings.nprobe,
        "database_mb": round((workdir / "gallery.sqlite3").stat().st_size / 2**20, 1),
    }
    gallery.store.close()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--nprobe", type=int, default=IndexSettings().nprobe)
    args = parser.parse_args()
    settings = IndexSettings(nprobe=args.nprobe)
    results = {}
    for size in args.sizes:
        workdir = Path(tempfile.mkdtemp(prefix=f"gallery-{size}-"))
        try:
            figures = bench_size(size, workdir, settings)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        results[str(size)] = figures
        print(
            f"{size:>9,} faces ({figures['index']}): enroll {figures['bulk_enroll_per_s']:,}/s, "
            f"start {figures['startup_s']} s (snapshot {figures['startup_from_snapshot_s']} s), "
            f"RSS {figures['rss_mb']:.0f} MB, exact p50 {figures['exact_p50_ms']} ms, "
            f"ANN p50 {figures['ann_p50_ms']} / p99 {figures['ann_p99_ms']} ms, "
            f"identify p50 {figures['identify_p50_ms']} ms, recall@1 {figures['ann_recall_at_1']:.4f}"
        )
    path = write_results("gallery", {"dimension": DIM, "probes": PROBES, "sizes": results})
    print(f"recorded in {path}")


if __name__ == "__main__":
    main()
