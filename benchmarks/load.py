"""Load on a real server over loopback: /verify and /identify at concurrency 1, 4 and 16.

Run: .venv/bin/python -m benchmarks.load [--seconds 30]
Starts `faceverify serve` on a free loopback port with a fresh data directory, enrolls LFW people,
then drives each endpoint for a bounded time at each concurrency (each run also stops after
--max-requests) with a lean keep-alive client (benchmarks/rawhttp.py). Beside it, in this process,
the same pipeline runs on the same images without HTTP, from 1, 2 and 4 threads: the reference
throughput. The server reports the pipeline's own time in every answer (timings_ms.pipeline), so the
service's cost at concurrency 1 is the client's latency minus it. Needs ../shared/data/lfw-dev.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from app.face.pipeline import FacePipeline
from app.face.runtime import WORKLOAD
from benchmarks.pipeline import lfw_sample
from benchmarks.rawhttp import Run, drive, multipart_request
from benchmarks.results_file import write_results
from tests.server import rss_mb, running_server

CONCURRENCY = (1, 4, 16)
IN_PROCESS_THREADS = (1, 2, 4)


def requests_for(url: str, kind: str, pairs: list[tuple[bytes, bytes]]) -> list[bytes]:
    if kind == "verify":
        return [multipart_request(url, "/verify", [("image_a", a), ("image_b", b)]) for a, b in pairs]
    return [multipart_request(url, "/identify", [("image", a)]) for a, _ in pairs]


def summary(run: Run) -> dict[str, Any]:
    latencies, pipeline = run.latencies_ms, run.pipeline_ms
    return {
        "requests": len(latencies) + run.dropped,
        "errors": run.errors,
        "statuses": {str(k): v for k, v in sorted(run.statuses.items())},
        "throughput_per_s": round(len(pipeline) / run.seconds, 2),
        "p50_ms": round(statistics.median(latencies), 2),
        "p99_ms": round(float(np.percentile(latencies, 99)), 2),
        "pipeline_p50_ms": round(statistics.median(pipeline), 2) if pipeline else None,
        "pipeline_mean_ms": round(statistics.mean(pipeline), 2) if pipeline else None,
    }


def _in_process(work: Callable[[int], object], threads: int, seconds: float) -> float:
    """Calls per second of work(i) from `threads` threads."""
    done = [0] * threads
    deadline = time.monotonic() + seconds

    def loop(slot: int) -> None:
        i = slot
        while time.monotonic() < deadline:
            with WORKLOAD.working():  # counted as the service counts a request's work
                work(i)
            done[slot] += 1
            i += threads

    workers = [threading.Thread(target=loop, args=(slot,)) for slot in range(threads)]
    started = time.perf_counter()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return sum(done) / (time.perf_counter() - started)


def _rss_growth(url: str, requests: list[bytes], pid: int, count: int) -> dict[str, Any]:
    """Server RSS after a warm-up and after `count` more requests (concurrency 4)."""
    asyncio.run(drive(url, requests, 4, 600, 500))
    before = rss_mb(pid)
    run = asyncio.run(drive(url, requests, 4, 3_600, count))
    after = rss_mb(pid)
    return {
        "requests": len(run.latencies_ms),
        "errors": run.errors,
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
    pipeline = FacePipeline.from_models(args.models)
    in_process_work: dict[str, Callable[[int], object]] = {
        "verify": lambda i: pipeline.largest_faces(pairs[i % len(pairs)]),
        "identify": lambda i: pipeline.largest_faces([pairs[i % len(pairs)][0]]),
    }
    results: dict[str, Any] = {}
    pids: list[int] = []
    with tempfile.TemporaryDirectory() as tmp, running_server(args.models, Path(tmp) / "data", pids) as url:
        for i, data in enumerate(payloads[:50]):
            httpx.post(
                f"{url}/enroll",
                data={"subject_id": f"p{i}", "allow_largest": "true"},
                files=[("images", ("e.jpg", data, "image/jpeg"))],
                timeout=60,
            ).raise_for_status()
        for kind in ("verify", "identify"):
            requests = requests_for(url, kind, pairs)
            asyncio.run(drive(url, requests, 4, 5, 100))  # warm-up of both sides
            runs = {}
            for concurrency in CONCURRENCY:
                run = asyncio.run(drive(url, requests, concurrency, args.seconds, args.max_requests))
                row = summary(run)
                runs[str(concurrency)] = row
                print(
                    f"/{kind} c={concurrency:>2}: {row['throughput_per_s']:7.1f}/s  "
                    f"p50 {row['p50_ms']:7.1f} ms  p99 {row['p99_ms']:7.1f} ms  "
                    f"errors {row['errors']}/{row['requests']}"
                )
            # The same pipeline on the same images without HTTP, while the server idles.
            in_process = {
                str(threads): round(_in_process(in_process_work[kind], threads, args.seconds / 2), 2)
                for threads in IN_PROCESS_THREADS
            }
            best = max(in_process.values())
            single = runs["1"]
            overhead = single["p50_ms"] - single["pipeline_p50_ms"]
            share = runs["16"]["throughput_per_s"] / best
            print(
                f"/{kind} in-process by threads: {in_process} per s; at c=1 the service adds "
                f"{overhead:.2f} ms to its pipeline's {single['pipeline_p50_ms']} ms (p50); c=16 reaches "
                f"{share:.0%} of the best in-process throughput"
            )
            results[kind] = {
                "by_concurrency": runs,
                "in_process_throughput_per_s_by_threads": in_process,
                "in_process_best_per_s": best,
                "service_overhead_ms_at_c1": round(overhead, 2),
                "throughput_share_at_c16": round(share, 3),
                "throughput_share_at_c16_vs_single_stream": round(
                    runs["16"]["throughput_per_s"] / in_process["1"], 3
                ),
            }
        if args.rss_requests:
            memory = _rss_growth(url, requests_for(url, "identify", pairs), pids[0], args.rss_requests)
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
