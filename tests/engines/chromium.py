"""Debian's Chromium headless shell for the browser tests, fetched from the Debian registry by apt-get into a
folder of this project: no root, no change to the machine's packages, nothing downloaded at test time but
from the registry. Playwright's own browser download needs the internet, so the tests launch this one
with `executable_path`.

apt-get runs with private state and cache folders: it reads the machine's sources, resolves the libraries
this machine lacks, and downloads them with the browser; `dpkg-deb -x` unpacks them beside it. A launcher
script sets the library path. Once unpacked, later runs only check that the launcher starts.
"""

from __future__ import annotations

import getpass
import os
import shutil
import subprocess
from pathlib import Path

from tests.engines.postgres import EngineUnavailable

REPO = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("FV_CHROMIUM_CACHE", REPO / ".cache" / "chromium"))
PACKAGES = ("chromium-headless-shell", "chromium-common")
# Pulled in by the packages but not needed to render pages headless.
LEFT_OUT = {"xdg-utils"}
BINARY = "usr/lib/chromium/chromium-headless-shell"


def _apt_options(state: Path) -> list[str]:
    return [
        "-o", f"Dir::State::Lists={state / 'lists'}",
        "-o", f"Dir::Cache={state / 'cache'}",
        "-o", "Debug::NoLocking=1",
        "-o", f"APT::Sandbox::User={getpass.getuser()}",
    ]  # fmt: skip


def _run(command: list[str], cwd: Path | None = None) -> str:
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise EngineUnavailable(f"{' '.join(command[:2])} failed: {done.stderr.strip()[-500:]}")
    return done.stdout


def launcher(cache: Path = CACHE) -> Path:
    """The launcher script of an unpacked headless shell."""
    return cache / "chromium-headless-shell"


def _works(path: Path) -> str | None:
    """The browser's version line, or None when it does not start."""
    if not path.is_file():
        return None
    try:
        done = subprocess.run([str(path), "--version"], capture_output=True, text=True, timeout=60)
    except OSError:
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def ensure_chromium(cache: Path = CACHE) -> Path:
    """A working headless Chromium under `cache`, fetched and unpacked where it is not there yet; its
    launcher. EngineUnavailable where it cannot be had (no apt-get, no registry)."""
    path = launcher(cache)
    if _works(path):
        return path
    if shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None:
        raise EngineUnavailable("no apt-get and dpkg-deb here to fetch Debian's chromium-headless-shell")
    state, root = cache / ".apt", cache / "root"
    shutil.rmtree(state, ignore_errors=True)
    shutil.rmtree(root, ignore_errors=True)
    for folder in (
        state / "lists" / "partial",
        state / "cache" / "archives" / "partial",
        state / "debs",
        root,
    ):
        folder.mkdir(parents=True, exist_ok=True)
    options = _apt_options(state)
    _run(["apt-get", *options, "update", "-qq"])
    simulated = _run(["apt-get", *options, "install", "-s", "--no-install-recommends", *PACKAGES])
    needed = [line.split()[1] for line in simulated.splitlines() if line.startswith("Inst ")]
    wanted = sorted({*PACKAGES, *needed} - LEFT_OUT)
    _run(["apt-get", *options, "download", *wanted], cwd=state / "debs")
    for package in sorted((state / "debs").glob("*.deb")):
        _run(["dpkg-deb", "-x", str(package), str(root)])
    shutil.rmtree(state, ignore_errors=True)
    libraries = root / "usr" / "lib" / "x86_64-linux-gnu"
    search = f"{libraries}:{libraries / 'pulseaudio'}"
    path.write_text(
        "#!/bin/sh\n"
        f'export LD_LIBRARY_PATH="{search}${{LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}}"\n'
        f'exec "{root / BINARY}" "$@"\n'
    )
    path.chmod(0o755)
    if not _works(path):
        raise EngineUnavailable(f"the unpacked Chromium does not start: {path}")
    return path
