"""Load on a real server over loopback: /verify and /identify at concurrency 1, 4 and 16.

Run: .venv/bin/python -m benchmarks.load [--seconds 30]
Starts `faceverify serve` on a free loopback port with a fresh data directory, enrolls LFW people,
then drives each endpoint for a bounded time at each concurrency (each run also stops after
--max-requests). Beside it, the same requests' pipeline work is timed in-process (no HTTP), so that the
service's own cost shows. Needs ../shared/data/lfw-dev (or FV_LFW_DIR).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from app.face.pipeline import FacePipeline
from app.gallery.gallery import Gallery
from benchmarks.pipeline import lfw_sample
from benchmarks.results_file import write_results
from tests.server import running_server

CONCURRENCY = (1, 4, 16)


def _files(kind: str, pair: tuple[bytes, bytes]) -> list[tuple[str, tuple[str, bytes, str]]]:
    if kind == "verify":
        return [("image_a", ("a.jpg", pair[0], "image/jpeg")), ("image_b", ("b.jpg", pair[1], "image/jpeg"))]
    return [("image", ("a.jpg", pair[0], "image/jpeg"))]


async def _drive(url: str, kind: str, pairs: list[tuple[bytes, bytes]], concurrency: int, seconds: float,
                 max_requests: int) -> dict[str, Any]:  # fmt: skip
    latencies: list[float] = []
    errors = 0
    issued = 0
    deadline = time.monotonic() + seconds

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal errors, issued
        while time.monotonic() < deadline and issued < max_requests:
            pair = pairs[issued % len(pairs)]
            issued += 1
            started = time.perf_counter()
            try:
                response = await client.post(f"{url}/{kind}", files=_files(kind, pair), timeout=60)
                ok = response.status_code == 200
            except httpx.HTTPError:
                ok = False
            latencies.append((time.perf_counter() - started) * 1000)
            errors += not ok

    started = time.perf_counter()
    async with httpx.AsyncClient(limits=httpx.Limits(max_connections=concurrency)) as client:
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    return {
        "requests": len(latencies),
        "errors": errors,
        "throughput_per_s": round(len(latencies) / elapsed, 2),
        "p50_ms": round(statistics.median(latencies), 2),
        "p99_ms": round(float(np.percentile(latencies, 99)), 2),
    }


def _in_process(
    pipeline: FacePipeline, gallery: Gallery, kind: str, pairs: list[tuple[bytes, bytes]]
) -> dict[str, Any]:
    """The pipeline (and gallery search) work of the same requests, without HTTP, one at a time."""
    times = []
    for a, b in pairs:
        started = time.perf_counter()
        if kind == "verify":
            pipeline.largest_faces([a, b])
        else:
            (face,) = pipeline.largest_faces([a])
            gallery.identify("default", face.face.embedding[None], top_k=5)
        times.append((time.perf_counter() - started) * 1000)
    median = statistics.median(times)
    return {"p50_ms": round(median, 2), "throughput_per_s": round(1000 / statistics.mean(times), 2)}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=30.0, help="duration of each run")
    parser.add_argument("--max-requests", type=int, default=20_000, help="cap on each run's requests")
    parser.add_argument("--models", type=Path, default=Path("models"))
    args = parser.parse_args()

    photos = lfw_sample(200)
    payloads = [p.read_bytes() for p in photos]
    pairs = list(zip(payloads[0::2], payloads[1::2], strict=False))
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp, running_server(args.models, Path(tmp) / "data") as url:
        for i, data in enumerate(payloads[:50]):
            httpx.post(
                f"{url}/enroll",
                data={"subject_id": f"p{i}", "allow_largest": "true"},
                files=[("images", ("e.jpg", data, "image/jpeg"))],
                timeout=60,
            )
        pipeline = FacePipeline.from_models(args.models)
        gallery = Gallery(Path(tmp) / "data", pipeline.model_id, pipeline.embedder.embedding_size)
        for kind in ("verify", "identify"):
            baseline = _in_process(pipeline, gallery, kind, pairs[:60])
            runs = {}
            for concurrency in CONCURRENCY:
                runs[str(concurrency)] = asyncio.run(
                    _drive(url, kind, pairs, concurrency, args.seconds, args.max_requests)
                )
                row = runs[str(concurrency)]
                print(
                    f"/{kind} c={concurrency:>2}: {row['throughput_per_s']:7.1f}/s  "
                    f"p50 {row['p50_ms']:7.1f} ms  p99 {row['p99_ms']:7.1f} ms  "
                    f"errors {row['errors']}/{row['requests']}"
                )
            overhead = runs["1"]["p50_ms"] - baseline["p50_ms"]
            share = runs["16"]["throughput_per_s"] / baseline["throughput_per_s"]
            print(
                f"/{kind} in-process: p50 {baseline['p50_ms']} ms, {baseline['throughput_per_s']}/s -> "
                f"service adds {overhead:.1f} ms at c=1; c=16 reaches {share:.0%} of in-process throughput"
            )
            results[kind] = {
                "in_process": baseline,
                "by_concurrency": runs,
                "service_overhead_ms_at_c1": round(overhead, 2),
                "throughput_share_at_c16": round(share, 3),
            }
    path = write_results("load", {"seconds_per_run": args.seconds, "photos": len(photos), **results})
    print(f"recorded in {path}")


if __name__ == "__main__":
    main()
