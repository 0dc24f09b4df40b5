"""Load on a real server over loopback: /verify and /identify at concurrency 1, 4 and 16.

Run: .venv/bin/python -m benchmarks.load [--seconds 30]
Starts `faceverify serve` on a free loopback port with a fresh data directory, enrolls LFW people,
then drives each endpoint for a bounded time at each concurrency (each run also stops after
--max-requests). The server reports the pipeline's own time in every answer (timings_ms.pipeline), so
the service's cost is the client's latency minus it. Needs ../shared/data/lfw-dev (or FV_LFW_DIR).
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

from benchmarks.pipeline import lfw_sample
from benchmarks.results_file import write_results
from tests.server import rss_mb, running_server

CONCURRENCY = (1, 4, 16)


def _files(kind: str, pair: tuple[bytes, bytes]) -> list[tuple[str, tuple[str, bytes, str]]]:
    if kind == "verify":
        return [("image_a", ("a.jpg", pair[0], "image/jpeg")), ("image_b", ("b.jpg", pair[1], "image/jpeg"))]
    return [("image", ("a.jpg", pair[0], "image/jpeg"))]


async def _drive(url: str, kind: str, pairs: list[tuple[bytes, bytes]], concurrency: int, seconds: float,
                 max_requests: int) -> dict[str, Any]:  # fmt: skip
    latencies: list[float] = []
    pipeline_ms: list[float] = []
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
            if ok:
                pipeline_ms.append(float(response.json()["timings_ms"]["pipeline"]))

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
        "pipeline_p50_ms": round(statistics.median(pipeline_ms), 2) if pipeline_ms else None,
        "pipeline_mean_ms": round(statistics.mean(pipeline_ms), 2) if pipeline_ms else None,
    }


def _rss_growth(
    url: str, kind: str, pairs: list[tuple[bytes, bytes]], pid: int, requests: int
) -> dict[str, Any]:
    """Server RSS after a warm-up and after `requests` more requests (concurrency 4)."""
    asyncio.run(_drive(url, kind, pairs, 4, 600, 500))
    before = rss_mb(pid)
    run = asyncio.run(_drive(url, kind, pairs, 4, 3_600, requests))
    after = rss_mb(pid)
    return {
        "requests": run["requests"],
        "errors": run["errors"],
        "rss_mb_after_warmup": round(before, 1),
        "rss_mb_after_requests": round(after, 1),
        "growth_percent": round(100 * (after - before) / before, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=30.0, help="duration of each run")
    parser.add_argument("--max-requests", type=int, default=20_000, help="cap on each run's requests")
    parser.add_argument("--models", type=Path, default=Path("models"))
    parser.add_argument(
        "--rss-requests", type=int, default=10_000, help="requests of the memory run (0: skip)"
    )
    args = parser.parse_args()

    photos = lfw_sample(200)
    payloads = [p.read_bytes() for p in photos]
    pairs = list(zip(payloads[0::2], payloads[1::2], strict=False))
    results: dict[str, Any] = {}
    pids: list[int] = []
    with tempfile.TemporaryDirectory() as tmp, running_server(args.models, Path(tmp) / "data", pids) as url:
        for i, data in enumerate(payloads[:50]):
            httpx.post(
                f"{url}/enroll",
                data={"subject_id": f"p{i}", "allow_largest": "true"},
                files=[("images", ("e.jpg", data, "image/jpeg"))],
                timeout=60,
            )
        for kind in ("verify", "identify"):
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
            # The server times the pipeline inside each request (decode to embedding): at c=1 that is the
            # in-process cost of the very same requests, measured without a second process on the cores.
            single = runs["1"]
            in_process_per_s = 1000 / single["pipeline_mean_ms"]
            overhead = single["p50_ms"] - single["pipeline_p50_ms"]
            share = runs["16"]["throughput_per_s"] / in_process_per_s
            print(
                f"/{kind} pipeline inside the server at c=1: p50 {single['pipeline_p50_ms']} ms "
                f"({in_process_per_s:.1f}/s in-process); the service adds {overhead:.2f} ms at c=1; "
                f"c=16 reaches {share:.0%} of in-process throughput"
            )
            results[kind] = {
                "by_concurrency": runs,
                "in_process_throughput_per_s": round(in_process_per_s, 2),
                "service_overhead_ms_at_c1": round(overhead, 2),
                "throughput_share_at_c16": round(share, 3),
            }
        if args.rss_requests:
            memory = _rss_growth(url, "identify", pairs, pids[0], args.rss_requests)
            results["rss"] = memory
            print(
                f"RSS over {memory['requests']} /identify requests after warm-up: "
                f"{memory['rss_mb_after_warmup']} -> {memory['rss_mb_after_requests']} MB "
                f"({memory['growth_percent']:+.2f}%), errors {memory['errors']}"
            )
    path = write_results("load", {"seconds_per_run": args.seconds, "photos": len(photos), **results})
    print(f"recorded in {path}")


if __name__ == "__main__":
    main()
