"""The cost of one upload: time and peak memory of big photos through the face pipeline.

Run: .venv/bin/python -m benchmarks.uploads
Each case runs in a fresh process (peak RSS growth from getrusage), the serving path (faces found on a
copy no longer than FV_DETECTION_SIDE, big JPEGs decoded at the scale each step needs, chips cut from
full-resolution detail) beside detection on every pixel as it was before, on the same bytes. Cases: 8000x5000
grey and RGB PNGs (49 and 124 KB: cheap to send, costly to decode; the RGB one is the worst case within
the pixel limit), 12 MP and 40 MP JPEGs of a real face (an lfw-dev photo upscaled), and four PNGs at once
(the default number of inference workers).
"""

from __future__ import annotations

import argparse
import io
import json
import resource
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from app.face.image import DEFAULT_DETECTION_SIDE
from benchmarks.results_file import write_results
from tests.assets import LFW_DEV

FACE = LFW_DEV / "images" / "Aaron_Peirsol" / "Aaron_Peirsol_0001.jpg"
CASES = {
    "grey_png_8000x5000": ("png", (8000, 5000)),
    "rgb_png_8000x5000": ("rgb-png", (8000, 5000)),
    "jpeg_12mp_4000x3000": ("jpeg", (4000, 3000)),
    "jpeg_40mp_8000x5000": ("jpeg", (8000, 5000)),
}


def payload(kind: str, size: tuple[int, int]) -> bytes:
    """The bytes of one case."""
    buffer = io.BytesIO()
    if kind == "png":
        Image.new("L", size, 128).save(buffer, "PNG")
    elif kind == "rgb-png":  # the worst case within the pixel limit: decoded whole, three channels
        Image.new("RGB", size, (128, 96, 64)).save(buffer, "PNG")
    else:
        with Image.open(FACE) as face:
            face.convert("RGB").resize(size, Image.Resampling.BICUBIC).save(buffer, "JPEG", quality=92)
    return buffer.getvalue()


def _one(case: str, path: str, copies: int, models: str) -> dict[str, Any]:
    """In a child process: decode, detect, align and embed the largest face; time and peak RSS growth."""
    from app.face.errors import NoFace
    from app.face.pipeline import FacePipeline

    pipeline = FacePipeline.from_models(Path(models))
    data = payload(*CASES[case])
    pipeline.detect(np.zeros((64, 64, 3), np.uint8))  # sessions warm

    def run(_: int) -> int:
        if path == "full":  # the old way: MTCNN on every pixel of the upload
            image = pipeline.decode(data)
            found = pipeline.detect(image)
            if found:
                pipeline.embed([image], [found[0]])
            return len(found)
        try:
            return pipeline.largest_faces([data])[0].faces_found
        except NoFace:
            return 0

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    with ThreadPoolExecutor(copies) as pool:
        faces = list(pool.map(run, range(copies)))
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "bytes": len(data),
        "copies": copies,
        "faces": faces[0],
        "seconds": round(seconds, 3),
        "peak_rss_growth_mb": round((peak - before) / 1024, 1),
    }


def measure(case: str, path: str, copies: int, models: Path) -> dict[str, Any]:
    """One case in a fresh interpreter, so that each peak is its own."""
    code = (
        "import json, sys; from benchmarks.uploads import _one; "
        f"print(json.dumps(_one({case!r}, {path!r}, {copies}, {str(models)!r})))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise RuntimeError(done.stderr)
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def verify_over_http(models: Path, repeats: int = 7) -> dict[str, Any]:
    """Median /verify latency on a real server (loopback) with a 12 MP JPEG against an LFW photo, and
    with two 12 MP JPEGs; the server started fresh, one warm-up request each."""
    import statistics
    import tempfile

    import httpx

    from tests.server import running_server

    phone = payload("jpeg", (4000, 3000))
    pairs = {"12mp_and_250px": (phone, FACE.read_bytes()), "12mp_and_12mp": (phone, phone)}
    found: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as folder, running_server(models, Path(folder) / "data") as url:
        for name, (a, b) in pairs.items():
            files = {"image_a": ("a.jpg", a, "image/jpeg"), "image_b": ("b.jpg", b, "image/jpeg")}
            times = []
            for attempt in range(repeats + 1):
                started = time.perf_counter()
                response = httpx.post(f"{url}/verify", files=files, timeout=60)
                elapsed = (time.perf_counter() - started) * 1000
                response.raise_for_status()
                if attempt:  # the first one warms the server's sessions for these sizes
                    times.append(elapsed)
            median, worst = statistics.median(times), max(times)
            found[name] = {"median_ms": round(median, 1), "max_ms": round(worst, 1)}
            print(f"/verify {name:16} median {median:7.1f} ms, max {worst:7.1f} ms")
    return found


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", type=Path, default=Path("models"))
    args = parser.parse_args()
    figures: dict[str, Any] = {}
    runs = [(case, 1) for case in CASES] + [("grey_png_8000x5000", 4), ("rgb_png_8000x5000", 4)]
    for case, copies in runs:
        label = case if copies == 1 else f"{case}_x{copies}"
        # Four full-pixel runs of the grey PNG would take about 14 GB: only the bounded path runs four.
        paths = ("bounded", "full") if copies == 1 else ("bounded",)
        figures[label] = {path: measure(case, path, copies, args.models) for path in paths}
        for path, row in figures[label].items():
            growth, ms = row["peak_rss_growth_mb"], row["seconds"] * 1000
            print(f"{label:28} {path:8} {ms:8.0f} ms  peak RSS +{growth:7.1f} MB  faces {row['faces']}")
    verify = verify_over_http(args.models)
    recorded = write_results(
        "uploads", {"detection_side": DEFAULT_DETECTION_SIDE, "cases": figures, "verify_http": verify}
    )
    print(f"recorded in {recorded}")


if __name__ == "__main__":
    main()
