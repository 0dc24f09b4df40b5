"""The whole face pipeline, per stage, against the face_recognition package in the same run, and
/verify's throughput through the service at concurrency 1, 4 and 16, beside a baseline commit's.

Run: .venv/bin/python -m benchmarks.pipeline [--images 300] [--baseline REF] [--seconds 20]
Needs LFW's development images (../shared/data/lfw-dev or FV_LFW_DIR) and the peer packages in
benchmarks/requirements-peers.txt (`make bench` installs them). Each image goes through our pipeline with
each built embedder (the default float one, and its int8 form where the build made it) and through
face_recognition (HOG detection with one upsample, then its encoding) one after the other, the order
rotating, at 250x250 and upscaled to 1280x960. Then `faceverify serve` runs from this
checkout and, with --baseline, from a worktree of REF with the models its own code builds, one after
the other in rounds on the same photos (pairs of LFW photos, 200 of them, sent by a lean keep-alive
client), both servers up all along.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.metadata
import io
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from app.face.catalog import ModelCatalog
from app.face.pipeline import FacePipeline, PipelineSettings
from app.face.runtime import configure_threads
from benchmarks.rawhttp import Run, drive
from benchmarks.results_file import machine, write_results
from tests.assets import LFW_DEV, REPO
from tests.server import rss_mb, running_server

STAGES = ("decode", "detect", "align", "embed")
CONCURRENCY = (1, 4, 16)
SIZES = {"lfw_250x250": None, "upscaled_1280x960": (1280, 960)}


def lfw_sample(count: int) -> list[Path]:
    """The first image of each person, in name order, then second images, until `count`."""
    people = sorted(p for p in (LFW_DEV / "images").iterdir() if p.is_dir())
    ordered: list[Path] = []
    depth = 0
    while len(ordered) < count and depth < 50:
        ordered += [imgs[depth] for p in people if len(imgs := sorted(p.glob("*.jpg"))) > depth]
        depth += 1
    return ordered[:count]


def encoded(path: Path, size: tuple[int, int] | None) -> bytes:
    """The file's bytes, or the image resized and re-encoded as JPEG (quality 95)."""
    if size is None:
        return path.read_bytes()
    buffer = io.BytesIO()
    with Image.open(path) as image:
        image.convert("RGB").resize(size, Image.Resampling.BICUBIC).save(buffer, "JPEG", quality=95)
    return buffer.getvalue()


def ours(pipeline: FacePipeline, data: bytes) -> dict[str, float]:
    """Per-stage milliseconds for one image through our pipeline (largest face)."""
    t0 = time.perf_counter()
    photo = pipeline.decode_photo(data)
    t1 = time.perf_counter()
    detections = pipeline.detect_photo(photo)
    t2 = time.perf_counter()
    chips = np.stack([pipeline.photo_chip(photo, detections[0])]) if detections else None
    t3 = time.perf_counter()
    if chips is not None:
        pipeline.embedder.embed(chips, flip_average=pipeline.settings.flip_average)
    t4 = time.perf_counter()
    return {
        "decode": t1 - t0,
        "detect": t2 - t1,
        "align": t3 - t2,
        "embed": t4 - t3,
        "found": bool(detections),
    }


def peer(face_recognition: Any, data: bytes) -> dict[str, float]:
    """Milliseconds for one image through face_recognition: load, HOG (1 upsample), encoding."""
    t0 = time.perf_counter()
    image = face_recognition.load_image_file(io.BytesIO(data))
    t1 = time.perf_counter()
    boxes = face_recognition.face_locations(image, number_of_times_to_upsample=1, model="hog")
    t2 = time.perf_counter()
    face_recognition.face_encodings(image, known_face_locations=boxes[:1])
    t3 = time.perf_counter()
    return {"decode": t1 - t0, "detect": t2 - t1, "encode": t3 - t2, "found": bool(boxes)}


def _summary(samples: list[dict[str, float]], keys: tuple[str, ...]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in (*keys, "total"):
        values = [1000 * (s[key] if key != "total" else sum(s[k] for k in keys)) for s in samples]
        out[key] = {
            "median": round(statistics.median(values), 3),
            "p90": round(float(np.percentile(values, 90)), 3),
        }
    out["faces_found"] = sum(bool(s["found"]) for s in samples)
    return out


@contextmanager
def baseline_checkout(ref: str) -> Iterator[Path]:
    """A worktree of `ref` with the models its own code builds, removed afterwards."""
    with tempfile.TemporaryDirectory() as tmp:
        tree = Path(tmp) / "baseline"
        subprocess.run(["git", "worktree", "add", "--detach", str(tree), ref], cwd=REPO, check=True)
        try:
            build = [sys.executable, "-m", "faceverify.cli", "models", "build", "--out", str(tree / "models")]
            subprocess.run(build, cwd=tree, check=True)
            where = [sys.executable, "-c", "import app; print(app.__file__)"]
            imported = subprocess.run(where, cwd=tree, check=True, capture_output=True, text=True).stdout
            if not Path(imported.strip()).is_relative_to(tree):
                raise RuntimeError(f"the baseline's server would import {imported.strip()}, not its own code")
            yield tree
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=REPO, check=False)


ROUNDS = 3  # each concurrency's time is cut into rounds, the servers taking turns, so drift favours none


def _merged(runs: list[Run]) -> Run:
    """One run's figures from several rounds of it."""
    total = Run()
    for run in runs:
        total.latencies_ms += run.latencies_ms
        total.pipeline_ms += run.pipeline_ms
        total.errors += run.errors
        total.dropped += run.dropped
        total.seconds += run.seconds
        for status, count in run.statuses.items():
            total.statuses[status] = total.statuses.get(status, 0) + count
    return total


def service_throughput(
    checkouts: dict[str, tuple[Path, Path]], pairs: list[tuple[bytes, bytes]], seconds: float
) -> dict[str, Any]:
    """/verify through `faceverify serve` of each checkout (name: (source, models)) at each concurrency,
    all servers up at once and taking turns in rounds, and each server's memory at the end."""
    from benchmarks.load import requests_for, summary  # the load benchmark's client and figures

    with contextlib.ExitStack() as stack:
        urls, pids = {}, {}
        for name, (source, models) in checkouts.items():
            tmp = Path(stack.enter_context(tempfile.TemporaryDirectory()))
            started: list[int] = []
            urls[name] = stack.enter_context(running_server(models, tmp / "data", started, source=source))
            pids[name] = started[0]
        requests = {name: requests_for(url, "verify", pairs) for name, url in urls.items()}
        for name, url in urls.items():
            asyncio.run(drive(url, requests[name], 4, 5, 100))  # warm-up
        rounds: dict[str, dict[int, list[Run]]] = {name: {c: [] for c in CONCURRENCY} for name in urls}
        for concurrency in CONCURRENCY:
            for turn in range(ROUNDS):
                order = list(urls) if turn % 2 == 0 else list(reversed(urls))
                for name in order:
                    run = drive(urls[name], requests[name], concurrency, seconds / ROUNDS, 20_000)
                    rounds[name][concurrency].append(asyncio.run(run))
        return {
            name: {
                "by_concurrency": {str(c): summary(_merged(runs)) for c, runs in by_concurrency.items()},
                "rss_mb": round(rss_mb(pids[name]), 1),
            }
            for name, by_concurrency in rounds.items()
        }


def _service_section(args: argparse.Namespace, paths: list[Path]) -> dict[str, Any]:
    payloads = [p.read_bytes() for p in paths[:200]]
    pairs = list(zip(payloads[0::2], payloads[1::2], strict=False))
    with contextlib.ExitStack() as stack:
        checkouts = {"this_checkout": (REPO, args.models.resolve())}
        if args.baseline:
            tree = stack.enter_context(baseline_checkout(args.baseline))
            checkouts["baseline"] = (tree, tree / "models")
        runs = service_throughput(checkouts, pairs, args.seconds)
    for name, run in runs.items():
        for concurrency, row in run["by_concurrency"].items():
            print(
                f"/verify {name:<13} c={concurrency:>2}: {row['throughput_per_s']:6.1f}/s  "
                f"p50 {row['p50_ms']:7.1f} ms  p99 {row['p99_ms']:7.1f} ms  errors {row['errors']}"
            )
        print(f"  server RSS {run['rss_mb']} MB")
    section: dict[str, Any] = {"seconds_per_run": args.seconds, "rounds": ROUNDS, "pairs": len(pairs), **runs}
    if args.baseline:
        section["baseline_ref"] = args.baseline
        section["baseline_commit"] = subprocess.run(
            ["git", "rev-parse", args.baseline], cwd=REPO, capture_output=True, text=True, check=True
        ).stdout.strip()
        section["throughput_ratio_vs_baseline"] = {
            c: round(
                runs["this_checkout"]["by_concurrency"][c]["throughput_per_s"]
                / runs["baseline"]["by_concurrency"][c]["throughput_per_s"],
                3,
            )
            for c in runs["this_checkout"]["by_concurrency"]
        }
        print(f"/verify throughput against {args.baseline}: {section['throughput_ratio_vs_baseline']}")
    return section


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--images", type=int, default=300)
    parser.add_argument("--models", type=Path, default=Path("models"))
    parser.add_argument("--no-flip", action="store_true", help="measure without flip averaging")
    parser.add_argument("--baseline", help="a commit whose service is measured beside this checkout's")
    parser.add_argument("--seconds", type=float, default=20.0, help="duration of each service run")
    parser.add_argument("--no-service", action="store_true", help="skip the service's throughput")
    args = parser.parse_args()

    import face_recognition  # the peer, installed from benchmarks/requirements-peers.txt

    # The service's own configuration: a lone request's inferences spread over every core.
    threads = configure_threads()
    settings = PipelineSettings(flip_average=not args.no_flip)
    # The default (float) embedder, and every other built one (its int8 form) beside it in the same run.
    built = ModelCatalog.load(args.models).built_embedders()
    pipelines = {a.id: FacePipeline.from_models(args.models, settings, model=a.id) for a in built}
    default = built[0].id
    paths = lfw_sample(args.images)
    results: dict[str, Any] = {}
    for name, size in SIZES.items():
        payloads = [encoded(p, size) for p in paths]
        runners = {model: partial(ours, pipeline) for model, pipeline in pipelines.items()}
        runners["peer"] = partial(peer, face_recognition)
        for run in runners.values():
            run(payloads[0])  # warm-up
        samples: dict[str, list[dict[str, float]]] = {who: [] for who in runners}
        for i, data in enumerate(payloads):
            # Rotate who goes first, so that caches and clock drift favour none.
            order = list(runners)[i % len(runners) :] + list(runners)[: i % len(runners)]
            for who in order:
                samples[who].append(runners[who](data))
        peer_summary = _summary(samples["peer"], ("decode", "detect", "encode"))
        by_model = {}
        for model in pipelines:
            summary = _summary(samples[model], STAGES)
            ratio = peer_summary["total"]["median"] / summary["total"]["median"]
            by_model[model] = {"ms_per_image": summary, "ratio_vs_face_recognition": round(ratio, 2)}
        results[name] = {
            "ms_per_image": by_model[default]["ms_per_image"],
            "peer_ms_per_image": peer_summary,
            "ratio_vs_face_recognition": by_model[default]["ratio_vs_face_recognition"],
            "by_model": by_model,
        }
        print(f"\n{name}: {len(payloads)} images")
        for model, figures in by_model.items():
            for stage in (*STAGES, "total"):
                row = figures["ms_per_image"][stage]
                print(f"  {model:<30} {stage:<7} median {row['median']:8.2f} ms   p90 {row['p90']:8.2f} ms")
        for stage in ("decode", "detect", "encode", "total"):
            row = peer_summary[stage]
            peer_row = f"median {row['median']:8.2f} ms   p90 {row['p90']:8.2f} ms"
            print(f"  {'face_recognition':<30} {stage:<7} {peer_row}")
        found = {who: sum(bool(s["found"]) for s in runs) for who, runs in samples.items()}
        print(f"  faces found: {found}")
        for model, figures in by_model.items():
            print(f"  face_recognition / {model} (median total): {figures['ratio_vs_face_recognition']:.2f}x")

    service = None if args.no_service else _service_section(args, paths)
    headline = results["lfw_250x250"]  # the target is set on LFW's own 250x250 images
    path = write_results(
        "pipeline",
        {
            "images": len(paths),
            "ms_per_image": headline["ms_per_image"],
            "peer_ms_per_image": headline["peer_ms_per_image"],
            "ratio_vs_face_recognition": headline["ratio_vs_face_recognition"],
            "cpu": f"{machine()['cpu']}, {os.cpu_count()} cores",
            "threads": {"onnxruntime_per_inference": threads, "dlib": "dlib default (single-threaded HOG)"},
            "flip_average": not args.no_flip,
            "model": default,
            "models": list(pipelines),
            "peer": f"face_recognition {importlib.metadata.version('face_recognition')} "
            f"(dlib-bin {importlib.metadata.version('dlib-bin')}): "
            "HOG with 1 upsample, 5-point landmarks, 1 jitter",
            "by_size": results,
            "service_verify": service,
        },
    )
    print(f"\nrecorded in {path}")


if __name__ == "__main__":
    main()
