"""A real `faceverify serve` process on a free loopback port, for end-to-end tests and load benchmarks."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from tests.assets import REPO


def free_port() -> int:
    """A loopback port nobody listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def running_server(
    models_dir: Path,
    data_dir: Path,
    pids: list[int] | None = None,
    env: dict[str, str] | None = None,
    source: Path = REPO,
) -> Iterator[str]:
    """`faceverify serve` in a child process until the block ends; yields its base URL (and appends
    the process id to `pids`, for those who measure it). `env` adds settings (FV_...); `source` is the
    checkout whose code serves (another commit's, for a benchmark's baseline)."""
    port = free_port()
    env = {**os.environ, **(env or {}), "FV_MODELS_DIR": str(models_dir), "FV_DATA_DIR": str(data_dir)}
    command = [sys.executable, "-m", "faceverify.cli", "serve", "--port", str(port)]
    data_dir.mkdir(parents=True, exist_ok=True)
    # A file, not a pipe: a pipe nobody reads fills up with access-log lines and stalls the server.
    log_path = data_dir.parent / f"server-{port}.log"
    with log_path.open("wb") as log:
        server = subprocess.Popen(command, cwd=source, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    if pids is not None:
        pids.append(server.pid)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert server.poll() is None, log_path.read_text()
            try:
                if httpx.get(f"{url}/ready", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the server was not ready within 60 s"
            time.sleep(0.2)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=30)


def rss_mb(pid: int) -> float:
    """Resident memory of a process, in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")
