"""GPU check: the embedder on CUDA against the CPU, and /verify through the real service, on a GPU machine.

Run from the repository root, once benchmarks/gpu_wheels.sh's wheels are installed in /tmp/site:
    PYTHONPATH=/tmp/site python3 -m benchmarks.gpu --out DIR
Records the device (nvidia-smi, onnxruntime's providers, faiss's GPU support); the embedder's chips/s and
median ms per batch at batch 1, 16 and 64 of random chips on CUDA and on the CPU, and how far CUDA's unit
embeddings are from the CPU's; /verify latency (100 sequential requests, then concurrency 8) of
`faceverify serve` on the providers it picks and, where that was CUDA, again with the GPU hidden. A step
that cannot run is recorded as {"blocked": reason}. The record goes to DIR/gpu.json and
benchmarks/results/gpu.json (rewritten after each step), and the check exits 0.

The CUDA and cuDNN libraries of the nvidia-* wheels (torch's: site-packages/nvidia/*/lib) are put on
LD_LIBRARY_PATH by running this module again with it set: the loader reads it only when a process starts.
"""

from __future__ import annotations

import argparse
import ctypes
import functools
import importlib.metadata
import json
import os
import shutil
import site
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from benchmarks.results_file import machine, write_results
from tests.assets import CACHE, FACE_RECOGNITION

Figures = dict[str, Any]
Sample = tuple[float, float | None, int]  # latency ms, the server's pipeline ms, HTTP status

REPO = Path(__file__).resolve().parent.parent
CUDA, CPU = "CUDAExecutionProvider", "CPUExecutionProvider"
BATCHES = (1, 16, 64)
# What onnxruntime-gpu 1.31 (CUDA 13) loads: its CUDA provider's NEEDED libraries, then cuFFT and cuDNN.
CUDA_LIBRARIES = (
    "libcuda.so.1",
    "libcudart.so.13",
    "libcublasLt.so.13",
    "libcublas.so.13",
    "libcurand.so.10",
    "libcufft.so.12",
    "libcudnn.so.9",
)
RERUN = "FV_GPU_CHECK_RERUN"  # set in the second run, which has the library path
PHOTOS = CACHE / f"{FACE_RECOGNITION.name}-{FACE_RECOGNITION.version}"
PAIR = ("obama.jpg", "obama2.jpg")  # one person: /verify goes through detection, embedding and decision
SEQUENTIAL, CONCURRENCY = 100, 8


def guarded(step: Callable[[], Figures]) -> Figures:
    """The step's figures, or {"blocked": why} where it raised."""
    try:
        return step()
    except Exception as error:  # every failure is a finding to record, not a reason to stop
        return {"blocked": f"{type(error).__name__}: {error}"[:3000]}


def nvidia_library_dirs() -> list[str]:
    """The lib folders of the nvidia-* wheels (CUDA, cuDNN) on this Python's paths."""
    roots = {Path(p) for p in [*sys.path, *site.getsitepackages()] if p}
    found = {str(lib) for root in roots for lib in root.glob("nvidia/*/lib") if any(lib.glob("*.so*"))}
    return sorted(found)


def rerun_with_library_path() -> None:
    """Run this module again with the nvidia wheels' lib folders first on LD_LIBRARY_PATH, if missing."""
    current = [p for p in os.environ.get("LD_LIBRARY_PATH", "").split(":") if p]
    missing = [d for d in nvidia_library_dirs() if d not in current]
    if os.environ.get(RERUN) or not missing:
        return
    env = {**os.environ, RERUN: "1", "LD_LIBRARY_PATH": ":".join([*missing, *current])}
    print(f"re-running with LD_LIBRARY_PATH += {missing}", flush=True)
    os.execve(sys.executable, [sys.executable, "-m", "benchmarks.gpu", *sys.argv[1:]], env)


def cuda_libraries() -> dict[str, str]:
    """Whether each library the CUDA provider needs opens here ("ok", or the loader's error)."""
    opened = {}
    for name in CUDA_LIBRARIES:
        try:
            ctypes.CDLL(name)
            opened[name] = "ok"
        except OSError as error:
            opened[name] = str(error)
    return opened


def nvidia_smi() -> Figures:
    """The GPUs nvidia-smi lists: name, driver and memory."""
    if shutil.which("nvidia-smi") is None:
        return {"blocked": "no nvidia-smi on PATH"}
    query = ["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"]
    done = subprocess.run(query, capture_output=True, text=True, timeout=60)
    if done.returncode:
        return {"blocked": f"nvidia-smi exited {done.returncode}: {done.stderr.strip()[-500:]}"}
    keys = ("name", "driver", "memory")
    rows = [line.split(",") for line in done.stdout.strip().splitlines()]
    return {"gpus": [dict(zip(keys, (f.strip() for f in row), strict=False)) for row in rows]}


def onnxruntime_info() -> Figures:
    """onnxruntime's version, where it was imported from, and the providers it offers."""
    import onnxruntime as ort

    return {
        "version": ort.__version__,
        "file": ort.__file__,
        "available_providers": list(ort.get_available_providers()),
        "build_info": ort.get_build_info() if hasattr(ort, "get_build_info") else None,
    }


def faiss_info() -> Figures:
    """faiss's version and whether this build can put an index on a GPU."""
    import faiss

    counter = getattr(faiss, "get_num_gpus", None)
    return {
        "version": faiss.__version__,
        "file": faiss.__file__,
        "gpu_support": hasattr(faiss, "StandardGpuResources"),
        "num_gpus": int(counter()) if counter is not None else None,
    }


def package_version(name: str) -> str | None:
    """An installed distribution's version, or None."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def device_figures() -> Figures:
    """What this machine offers the service: GPUs, libraries, onnxruntime and faiss."""
    return {
        "nvidia_smi": guarded(nvidia_smi),
        "python": sys.version.split()[0],
        "executable": sys.executable,
        "torch": package_version("torch"),
        "pythonpath": os.environ.get("PYTHONPATH"),
        "ld_library_path": os.environ.get("LD_LIBRARY_PATH"),
        "nvidia_library_dirs": nvidia_library_dirs(),
        "cuda_libraries": cuda_libraries(),
        "onnxruntime": guarded(onnxruntime_info),
        "faiss": guarded(faiss_info),
    }


def gpu_name(device: Figures) -> str | None:
    """The first GPU's name, where nvidia-smi listed one."""
    gpus = device["nvidia_smi"].get("gpus") or [{}]
    name = gpus[0].get("name")
    return str(name) if name else None


def embedder_spec(models: Path) -> tuple[Path, str, tuple[int, ...]]:
    """The embedder's file, input name and chip shape (150, 150, 3), from the models' manifest."""
    manifest = json.loads((models / "manifest.json").read_text())
    artifact = next(a for a in manifest["artifacts"].values() if a["role"] == "embedder")
    spec = artifact["inputs"][0]
    if spec["dtype"] != "uint8":
        raise ValueError(f"the embedder takes {spec['dtype']}, this check feeds uint8 chips")
    return models / artifact["file"], str(spec["name"]), tuple(int(d) for d in spec["shape"][1:])


def open_session(path: Path, provider: str) -> Any:
    """An onnxruntime session of the model on `provider` (CUDA falls back to the CPU node by node)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    providers = [CPU] if provider == CPU else [provider, CPU]
    return ort.InferenceSession(str(path), options, providers=providers)


def timed(run: Callable[[], object], seconds: float) -> list[float]:
    """ms of each call of run() for about `seconds` (at least 5 calls), after 2 warm-up calls."""
    for _ in range(2):
        run()
    times: list[float] = []
    deadline = time.perf_counter() + seconds
    while len(times) < 5 or time.perf_counter() < deadline:
        started = time.perf_counter()
        run()
        times.append((time.perf_counter() - started) * 1000)
    return times


def throughput(session: Any, name: str, chips: np.ndarray, seconds: float) -> Figures:
    """chips/s and median ms per batch of a session at each batch size."""
    rows = {}
    for batch in BATCHES:
        times = timed(functools.partial(session.run, None, {name: chips[:batch]}), seconds)
        rows[str(batch)] = {
            "ms_per_batch_p50": round(statistics.median(times), 3),
            "chips_per_s": round(batch * 1000 / statistics.mean(times), 1),
            "runs": len(times),
        }
    return {"providers": [str(p) for p in session.get_providers()], "by_batch": rows}


def unit_rows(session: Any, name: str, chips: np.ndarray) -> np.ndarray:
    """The session's embeddings of the chips, each row L2-normalised."""
    rows: np.ndarray = np.asarray(session.run(None, {name: chips})[0], dtype=np.float64)
    unit: np.ndarray = rows / np.linalg.norm(rows, axis=1, keepdims=True)
    return unit


def cuda_embedder(path: Path, name: str, chips: np.ndarray, seconds: float, reference: Any) -> Figures:
    """The embedder on CUDA: throughput and the largest difference from the CPU's unit embeddings."""
    import onnxruntime as ort

    if CUDA not in ort.get_available_providers():
        return {"blocked": f"onnxruntime {ort.__version__} offers {ort.get_available_providers()}, no CUDA"}
    session = open_session(path, CUDA)
    providers = [str(p) for p in session.get_providers()]
    if providers[0] != CUDA:
        failed = {k: v for k, v in cuda_libraries().items() if v != "ok"}
        return {"blocked": f"the CUDA session runs on {providers}; libraries that do not open: {failed}"}
    figures = throughput(session, name, chips, seconds)
    if isinstance(reference, np.ndarray):
        diff = float(np.abs(unit_rows(session, name, chips) - reference).max())
        figures["max_abs_diff_vs_cpu"] = diff
        figures["matches_cpu"] = diff < 1e-3
    else:
        figures["max_abs_diff_vs_cpu"] = {"blocked": "no CPU embeddings to compare with"}
    return figures


def embedder_figures(models: Path, seconds: float) -> Figures:
    """The embedder on the CPU and on CUDA, on the same random uint8 chips."""
    path, name, shape = embedder_spec(models)
    chips = np.random.default_rng(0).integers(0, 256, size=(max(BATCHES), *shape), dtype=np.uint8)
    reference: Any = None

    def on_cpu() -> Figures:
        nonlocal reference
        session = open_session(path, CPU)
        reference = unit_rows(session, name, chips)
        return throughput(session, name, chips, seconds)

    cpu = guarded(on_cpu)
    print(f"embedder on the CPU: {cpu}", flush=True)
    cuda = guarded(lambda: cuda_embedder(path, name, chips, seconds, reference))
    print(f"embedder on CUDA: {cuda}", flush=True)
    figures: Figures = {
        "model": path.name,
        "input": name,
        "chip_shape": list(shape),
        "cpu": cpu,
        "cuda": cuda,
    }
    if "by_batch" in cpu and "by_batch" in cuda:
        figures["cuda_speedup_by_batch"] = {
            b: round(cuda["by_batch"][b]["chips_per_s"] / cpu["by_batch"][b]["chips_per_s"], 2)
            for b in cpu["by_batch"]
        }
    return figures


def free_port() -> int:
    """A loopback port nobody listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(url: str, server: subprocess.Popen[bytes], log: Path, timeout: float) -> Figures:
    """GET /ready's JSON once it answers 200; raises if the server exits or the timeout passes."""
    deadline = time.monotonic() + timeout
    while True:
        if server.poll() is not None:
            raise RuntimeError(f"the server exited {server.returncode}: {log.read_text()[-1500:]}")
        try:
            answer = httpx.get(f"{url}/ready", timeout=5)
            if answer.status_code == 200:
                return dict(answer.json())
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"/ready did not answer 200 within {timeout:.0f} s: {log.read_text()[-1500:]}")
        time.sleep(0.25)


@contextmanager
def serving(models: Path, env: dict[str, str], log: Path) -> Iterator[tuple[str, Figures]]:
    """`faceverify serve` on a free port with a fresh data folder; yields its URL and /ready's JSON."""
    port = free_port()
    with tempfile.TemporaryDirectory() as data:
        settings = {"FV_MODELS_DIR": str(models.resolve()), "FV_DATA_DIR": data, **env}
        command = [sys.executable, "-m", "faceverify.cli", "serve", "--port", str(port)]
        with log.open("wb") as sink:  # a file, not a pipe nobody reads
            server = subprocess.Popen(
                command, cwd=REPO, env={**os.environ, **settings}, stdout=sink, stderr=subprocess.STDOUT
            )
        try:
            url = f"http://127.0.0.1:{port}"
            yield url, wait_ready(url, server, log, timeout=120)
        finally:
            server.terminate()
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()


def post_verify(client: httpx.Client, url: str, pair: tuple[bytes, bytes]) -> tuple[Sample, Any]:
    """One POST /verify: (latency ms, the server's pipeline ms, status) and the answer's JSON."""
    files = [("image_a", ("a.jpg", pair[0], "image/jpeg")), ("image_b", ("b.jpg", pair[1], "image/jpeg"))]
    started = time.perf_counter()
    answer = client.post(f"{url}/verify", files=files, timeout=60)
    ms = (time.perf_counter() - started) * 1000
    body = answer.json() if answer.headers.get("content-type", "").startswith("application/json") else None
    pipeline = body.get("timings_ms", {}).get("pipeline") if answer.status_code == 200 and body else None
    return (ms, pipeline, answer.status_code), body


def summary(samples: list[Sample], seconds: float) -> Figures:
    """Requests/s, p50/p99 latency and the server's median pipeline time of a run's answers."""
    ok = [s for s in samples if s[2] == 200]
    latencies = [s[0] for s in ok]
    pipeline = [s[1] for s in ok if s[1] is not None]
    return {
        "requests": len(samples),
        "errors": len(samples) - len(ok),
        "requests_per_s": round(len(ok) / seconds, 2),
        "p50_ms": round(statistics.median(latencies), 2) if latencies else None,
        "p99_ms": round(float(np.percentile(latencies, 99)), 2) if latencies else None,
        "pipeline_p50_ms": round(statistics.median(pipeline), 2) if pipeline else None,
    }


def sequential(url: str, pair: tuple[bytes, bytes], count: int) -> Figures:
    """`count` requests one after another, on one keep-alive connection."""
    with httpx.Client() as client:
        started = time.perf_counter()
        samples = [post_verify(client, url, pair)[0] for _ in range(count)]
        return summary(samples, time.perf_counter() - started)


def concurrently(url: str, pair: tuple[bytes, bytes], clients: int, seconds: float) -> Figures:
    """`clients` threads, each with its own connection, sending requests back to back for `seconds`."""
    samples: list[Sample] = []
    deadline = time.perf_counter() + seconds

    def loop() -> None:
        with httpx.Client() as client:
            while time.perf_counter() < deadline:
                samples.append(post_verify(client, url, pair)[0])

    threads = [threading.Thread(target=loop) for _ in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return {"clients": clients, **summary(samples, time.perf_counter() - started)}


def verify_figures(
    models: Path, pair: tuple[bytes, bytes], env: dict[str, str], log: Path, seconds: float
) -> Figures:
    """/verify through a real server with these settings: its providers, one answer, then the load."""
    with serving(models, env, log) as (url, ready):
        with httpx.Client() as client:
            (_, _, status), body = post_verify(client, url, pair)
            for _ in range(4):  # warm-up
                post_verify(client, url, pair)
        if status != 200:
            return {"blocked": f"POST /verify answered {status}: {str(body)[:1000]}", "env": env}
        figures: Figures = {
            "env": env,
            "execution_providers": ready.get("execution_providers"),
            "index_device": ready.get("index_device"),
            "answer": {k: body.get(k) for k in ("match", "similarity", "score", "threshold")},
            "sequential": sequential(url, pair, SEQUENTIAL),
            f"concurrency_{CONCURRENCY}": concurrently(url, pair, CONCURRENCY, seconds),
        }
    print(f"/verify with {env}: {figures}", flush=True)
    return figures


def index_setting(device: Figures) -> dict[str, str]:
    """FV_INDEX_USE_GPU: true only where faiss can put an index on a GPU it sees."""
    faiss = device["faiss"]
    return {"FV_INDEX_USE_GPU": "true" if faiss.get("gpu_support") and faiss.get("num_gpus") else "false"}


def verify_runs(models: Path, photos: Path, out: Path, device: Figures, seconds: float) -> Figures:
    """/verify on the providers the service picks and, where that was CUDA, with the GPU hidden."""
    missing = [n for n in PAIR if not (photos / n).is_file()]
    if missing:
        return {"blocked": f"{missing} not in {photos} (carry .cache/test-assets; there is no network)"}
    pair = ((photos / PAIR[0]).read_bytes(), (photos / PAIR[1]).read_bytes())
    index = index_setting(device)
    runs: Figures = {"photos": [str(photos / n) for n in PAIR], "index_setting": index}
    runs["service"] = guarded(lambda: verify_figures(models, pair, index, out / "server.log", seconds))
    if CUDA not in (runs["service"].get("execution_providers") or [])[:1]:
        runs["gpu_hidden"] = {"skipped": "the service did not run the embedder on CUDA"}
        return runs
    hidden = {"CUDA_VISIBLE_DEVICES": "", "FV_INDEX_USE_GPU": "false"}
    runs["gpu_hidden"] = guarded(
        lambda: verify_figures(models, pair, hidden, out / "server-cpu.log", seconds)
    )
    if runs["gpu_hidden"].get("execution_providers", [CPU])[:1] != [CPU]:
        runs["gpu_hidden"] = {"blocked": f"the GPU was not hidden: {runs['gpu_hidden']}"}
    return runs


def save(out: Path, figures: Figures) -> None:
    """Write the record to benchmarks/results/gpu.json and the same text to DIR/gpu.json."""
    try:
        text = write_results("gpu", figures).read_text()
    except OSError as error:  # the results folder may be read-only: DIR still gets the figures
        text = json.dumps({"benchmark": "gpu", "results_file": f"not written: {error}", **figures}, indent=2)
    (out / "gpu.json").write_text(text if text.endswith("\n") else text + "\n")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, required=True, help="folder for gpu.json and the server logs")
    parser.add_argument("--models", type=Path, default=REPO / "models")
    parser.add_argument("--photos", type=Path, default=PHOTOS, help=f"a folder with {' and '.join(PAIR)}")
    parser.add_argument("--seconds", type=float, default=3.0, help="duration of each timed run")
    args = parser.parse_args()
    rerun_with_library_path()
    args.out.mkdir(parents=True, exist_ok=True)

    device = device_figures()
    print(f"device: {json.dumps(device)}", flush=True)
    gpu = gpu_name(device)
    figures: Figures = {"machine": {**machine(), "gpu": gpu}, "gpu": gpu, "seconds_per_run": args.seconds}
    figures["device"] = device
    save(args.out, figures)
    figures["embedder"] = guarded(lambda: embedder_figures(args.models, args.seconds))
    save(args.out, figures)
    figures["verify"] = guarded(lambda: verify_runs(args.models, args.photos, args.out, device, args.seconds))
    save(args.out, figures)
    print(f"recorded in {args.out / 'gpu.json'} and benchmarks/results/gpu.json", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
