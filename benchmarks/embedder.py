"""Embedder speed: our ONNX export under ONNX Runtime vs dlib itself, ms per chip at batch 1 and 16.

Run: .venv/bin/python -m benchmarks.embedder [--rounds N]
ONNX Runtime runs as the service runs a lone request (each inference spread over every core) and, in a
child process, on one thread (as the service runs overlapping requests); dlib runs alongside in the
same process on the same real face chips, alternating round by round.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from app.face.embedder import Embedder
from app.face.manifest import load_manifest
from app.face.runtime import configure_threads
from benchmarks.results_file import write_results
from tests.assets import lfw_photos, registry_photos
from tests.dlib_reference import cut_dlib_chips, dlib_models
from training.build import DLIB_MODELS_PACKAGE, build_models, package_dir

BATCHES = (1, 16)


def _measure(
    runners: dict[str, Callable[[np.ndarray], Any]], chips: np.ndarray, rounds: int
) -> dict[str, Any]:
    """Median and p90 ms per chip for each runner at each batch size, runners alternating."""
    figures: dict[str, dict[str, float]] = {name: {} for name in runners}
    for batch in BATCHES:
        sample = chips[:batch]  # the same real chips for every engine
        for run in runners.values():
            run(sample)  # warm-up
        samples: dict[str, list[float]] = {name: [] for name in runners}
        for _ in range(rounds):
            # Alternate engines every round so that drift in machine load hits all of them alike.
            for name, run in runners.items():
                started = time.perf_counter()
                run(sample)
                samples[name].append((time.perf_counter() - started) * 1000 / batch)
        for name, values in samples.items():
            figures[name][f"batch_{batch}_ms_per_chip"] = round(statistics.median(values), 3)
            figures[name][f"batch_{batch}_p90_ms_per_chip"] = round(float(np.percentile(values, 90)), 3)
    return figures


def _chips() -> tuple[np.ndarray, Any]:
    detector, predictor, recogniser = dlib_models(package_dir(DLIB_MODELS_PACKAGE) / "models")
    chips = cut_dlib_chips(registry_photos() + lfw_photos(16), detector, predictor, minimum=16)
    return chips, recogniser


def _one_thread_child(models: Path, rounds: int) -> dict[str, Any]:
    """ONNX Runtime on one thread, measured in a fresh process (the thread count is set once a process)."""
    command = [sys.executable, "-m", "benchmarks.embedder", "--child-threads", "1", "--rounds", str(rounds)]
    command += ["--models", str(models)]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=30, help="timed rounds per engine and batch size")
    parser.add_argument("--models", type=Path, default=Path("models"))
    parser.add_argument("--child-threads", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child_threads:
        configure_threads(args.child_threads)
        embedder = Embedder(args.models, load_manifest(args.models).artifact("embedder"))
        chips, _ = _chips()
        print(json.dumps(_measure({"ort": embedder.embed}, chips, args.rounds)["ort"]))
        return

    build_models(args.models, log=lambda _: None)
    manifest = load_manifest(args.models)
    cores = configure_threads()
    embedder = Embedder(args.models, manifest.artifact("embedder"))
    chips, recogniser = _chips()
    reference = np.array(recogniser.compute_face_descriptor(list(chips), 0))
    reference /= np.linalg.norm(reference, axis=1, keepdims=True)
    worst_difference = float(np.abs(embedder.embed(chips, flip_average=False) - reference).max())
    print(f"largest difference from dlib's unit descriptor over {len(chips)} chips: {worst_difference:.2e}")

    fast = f"onnxruntime_{cores}_threads"
    runners: dict[str, Callable[[np.ndarray], Any]] = {
        fast: embedder.embed,
        "dlib": lambda batch: recogniser.compute_face_descriptor(list(batch), 0),
    }
    figures = _measure(runners, chips, args.rounds)
    figures["onnxruntime_1_thread"] = _one_thread_child(args.models, args.rounds)
    ratios = {
        f"dlib_over_{name}_batch_{b}": round(
            figures["dlib"][f"batch_{b}_ms_per_chip"] / figures[name][f"batch_{b}_ms_per_chip"], 2
        )
        for name in (fast, "onnxruntime_1_thread")
        for b in BATCHES
    }
    print(f"{'engine':<26}" + "".join(f"{f'batch {b} ms/chip':>20}" for b in BATCHES))
    for name, row in figures.items():
        print(f"{name:<26}" + "".join(f"{row[f'batch_{b}_ms_per_chip']:>20.2f}" for b in BATCHES))
    for key, value in ratios.items():
        print(f"{key}: {value}x")
    path = write_results(
        "embedder",
        {
            "chips": f"{len(chips)} real face chips cut by dlib.get_face_chip (150 px, padding 0.25)",
            "rounds": args.rounds,
            "threads": {fast: cores, "onnxruntime_1_thread": 1, "dlib": "dlib default"},
            "versions": {
                "onnxruntime": importlib.metadata.version("onnxruntime"),
                "dlib-bin": importlib.metadata.version("dlib-bin"),
            },
            "model": manifest.artifact("embedder").id,
            "max_abs_difference_vs_dlib": worst_difference,
            "ms_per_chip": figures,
            "ratios": ratios,
        },
    )
    print(f"recorded in {path}")


if __name__ == "__main__":
    main()
