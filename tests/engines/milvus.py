"""A throwaway Milvus standalone server run from the binaries bundled in the PyPI `milvus` package.

Milvus 2.3 has no setting for the address its gRPC servers listen on: they take ":PORT", every
interface, with no authentication. So by default the server runs in a network namespace of its own, which
holds nothing but a loopback interface, and a small launcher process forwards two loopback ports of this
machine into it: the proxy (gRPC and REST, the URI clients use) and the metrics server (/healthz). Nothing of
the server is reachable from another machine, and inside the namespace every component keeps Milvus's default
port, so that servers never collide. Where no namespace can be made (a container without the capability),
FV_MILVUS_NETWORK=host runs the server in the machine's own network instead, on free ports, nine of them open
on every interface.

Run from the command line, this module is that launcher; the harness starts it, never a person.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import importlib.metadata
import importlib.util
import json
import lzma
import os
import random
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any

from tests.engines.postgres import EngineUnavailable

__all__ = [
    "EngineUnavailable",
    "MilvusError",
    "MilvusServer",
    "apply_settings",
    "listening_addresses",
    "network_interfaces",
    "render_template",
    "unpack_binaries",
]

MILVUS_PACKAGE = "milvus"
LOOPBACK = "127.0.0.1"
REPO = Path(__file__).resolve().parents[2]
# The binaries unpacked from the wheel (250 MB, 5 s to unpack), shared by every server of one package version.
CACHE = Path(os.environ.get("FV_MILVUS_CACHE", REPO / ".cache" / "milvus"))
NETWORKS = ("namespace", "host")
# Below the kernel's ephemeral range (32768 and up), where the clients' own ports would collide with it.
PORT_RANGE = (20000, 32000)
# Milvus's own defaults, which stay inside a private namespace. The etcd ones are the embedded etcd's
# listeners, which do take an address (loopback), set in an etcd config file; the rest are the template's.
DEFAULT_PORTS: Mapping[str, int] = {
    "proxy_port": 19530,
    "metrics_port": 9091,
    "proxy_internal_port": 19529,
    "root_coord_port": 53100,
    "query_coord_port": 19531,
    "query_node_port": 21123,
    "index_coord_port": 22930,  # only an address in the config: 2.3 runs the index coordinator in datacoord
    "index_node_port": 21121,
    "data_coord_port": 13333,
    "data_node_port": 21124,
    "etcd_port": 2379,
    "etcd_peer_port": 2380,
}
# The address each component registers for the others to call; left empty, Milvus takes the first non-loopback
# address of the machine.
COMPONENTS = ("rootCoord", "proxy", "queryCoord", "queryNode", "indexNode", "dataCoord", "dataNode")
# Settings the tests rely on, as dotted paths into milvus.yaml.
DEFAULT_SETTINGS: Mapping[str, str] = {
    # Against a SIGTERM the server waits for its query node to hand its segments over, which a standalone
    # server has nobody to hand them to, until this many seconds (1,800 by default) have passed.
    "common.gracefulStopTimeout": "5",
    # The embedded etcd keeps the sessions of a server that was killed, or stopped, alive this long after the
    # next start, and the new server waits for them to expire before it serves and loads collections again:
    # 30 s by default, which made a restart take a minute.
    "common.session.ttl": "10",
}
EXIT_PORT_TAKEN = 70
EXIT_NO_NAMESPACE = 71

_PR_SET_PDEATHSIG = 1
_CLONE_NEWUSER = 0x10000000
_CLONE_NEWNET = 0x40000000
_SIOCGIFFLAGS = 0x8913
_SIOCSIFFLAGS = 0x8914
_IFF_UP = 0x1
_IFREQ = "16sH22x"  # struct ifreq: the interface name, then the flags in the union's first bytes
_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None
_PLACEHOLDER = re.compile(r"\{\{\s*(\w+)\s*(?:\((\w+)\))?\s*(?::\s*([^}]*?))?\s*\}\}")
_YAML_KEY = re.compile(r"^( *)([A-Za-z0-9_]+):(.*)$")
_TCP_LISTEN = "0A"


class MilvusError(RuntimeError):
    """The engine is here but did not do what was asked; the message carries the server log's tail."""


# -- the package


def _package_data() -> Path:
    """The `data` folder of the installed milvus package, found without running its __init__."""
    if not sys.platform.startswith("linux"):
        raise EngineUnavailable(f"the Milvus harness runs on Linux only, not {sys.platform}")
    spec = importlib.util.find_spec(MILVUS_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise EngineUnavailable("the `milvus` package is not installed (the `dev` extra brings it)")
    for location in spec.submodule_search_locations:
        data = Path(location) / "data"
        if (data / "config.yaml.template").is_file() and (data / "bin" / "milvus.lzma").is_file():
            return data
    raise EngineUnavailable(f"the `milvus` package in {spec.submodule_search_locations} has no server build")


def milvus_version() -> str:
    return importlib.metadata.version(MILVUS_PACKAGE)


def unpack_binaries(cache: Path = CACHE) -> Path:
    """The folder of the server binary and its libraries, unpacked from the package on first use."""
    data = _package_data()
    bin_dir = cache / milvus_version() / "bin"
    packed = sorted((data / "bin").glob("*.lzma"))
    if all((bin_dir / item.name.removesuffix(".lzma")).is_file() for item in packed):
        return bin_dir
    bin_dir.parent.mkdir(parents=True, exist_ok=True)
    # Unpacked beside the target and renamed into place, so that concurrent test runs never see half a binary.
    staging = Path(str(bin_dir) + f".tmp-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        for item in packed:
            target = staging / item.name.removesuffix(".lzma")
            with lzma.open(item) as source, target.open("wb") as sink:
                shutil.copyfileobj(source, sink, 1 << 20)
            target.chmod(0o755)
        try:
            staging.rename(bin_dir)
        except OSError:
            if not (bin_dir / "milvus").is_file():  # not somebody else's finished copy: a real failure
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return bin_dir


# -- the configuration


def render_template(template: str, values: Mapping[str, object]) -> str:
    """The package's config template with its {{ key(type): default }} placeholders filled in."""

    def fill(match: re.Match[str]) -> str:
        key, default = match[1], match[3]
        value = values.get(key, default)
        if value is None or value == "":
            raise MilvusError(f"the Milvus config template needs a value for {key!r}")
        if isinstance(value, bool):
            return "true" if value else "false"
        return str(value)

    return _PLACEHOLDER.sub(fill, template)


def apply_settings(text: str, settings: Mapping[str, str]) -> str:
    """milvus.yaml with the given dotted keys set, inserted under their section where the file lacks them."""
    lines = text.splitlines()
    found: dict[str, int] = {}
    path: list[str] = []
    for number, line in enumerate(lines):
        match = _YAML_KEY.match(line)
        if match is None:
            continue
        level = len(match[1]) // 2
        path = [*path[:level], match[2]]
        found.setdefault(".".join(path), number)
    insertions: list[tuple[int, list[str]]] = []
    for key, value in settings.items():
        parts = key.split(".")
        if key in found:
            number = found[key]
            match = _YAML_KEY.match(lines[number])
            assert match is not None
            lines[number] = f"{match[1]}{match[2]}: {value}"
            continue
        depth = max((n for n in range(1, len(parts)) if ".".join(parts[:n]) in found), default=0)
        if depth:
            after = found[".".join(parts[:depth])]
            section = _YAML_KEY.match(lines[after])
            assert section is not None
            if section[3].split("#", 1)[0].strip():
                parent = ".".join(parts[:depth])
                raise MilvusError(f"cannot set {key!r}: {parent!r} holds a value, not a section")
        else:
            after = len(lines) - 1
        block = [f"{'  ' * level}{part}:" for level, part in enumerate(parts[:-1]) if level >= depth]
        block.append(f"{'  ' * (len(parts) - 1)}{parts[-1]}: {value}")
        insertions.append((after, block))
    for after, block in sorted(insertions, key=lambda item: item[0], reverse=True):
        lines[after + 1 : after + 1] = block
    return "\n".join(lines) + "\n"


def _etcd_config(name: str, client_port: int, peer_port: int) -> str:
    """The embedded etcd's own config file: its two listeners on loopback, at the given ports."""
    client = f"http://{LOOPBACK}:{client_port}"
    peer = f"http://{LOOPBACK}:{peer_port}"
    return (
        f"name: {name}\n"
        f"listen-client-urls: {client}\n"
        f"advertise-client-urls: {client}\n"
        f"listen-peer-urls: {peer}\n"
        f"initial-advertise-peer-urls: {peer}\n"
        f"initial-cluster: {name}={peer}\n"
    )


# -- processes and sockets


def _die_with_parent(signum: int = signal.SIGKILL) -> None:
    """Runs in a child before exec: it is killed once its parent is gone, however that ended."""
    if _LIBC is not None:
        _LIBC.prctl(_PR_SET_PDEATHSIG, signum)


def _proc_state(pid: int) -> str | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name sits in parentheses and may hold spaces or parentheses itself.
    return raw[raw.rfind(")") + 2 :].split()[0]


def _alive(pid: int) -> bool:
    return _proc_state(pid) not in (None, "Z", "X")


def _port_free(port: int, address: str) -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((address, port))
        except OSError:
            return False
    return True


def _free_ports(count: int, address: str, taken: set[int] | None = None) -> list[int]:
    """Distinct ports in PORT_RANGE that nothing is bound to on `address` right now."""
    ports: list[int] = []
    avoid = set(taken or ())
    for _ in range(count * 200):
        if len(ports) == count:
            return ports
        port = random.randrange(*PORT_RANGE)
        if port not in avoid and _port_free(port, address):
            ports.append(port)
            avoid.add(port)
    raise MilvusError(f"no {count} free ports in {PORT_RANGE} on {address}")


def _decode_address(field: str) -> tuple[str, int]:
    """An address of /proc/net/tcp or tcp6 (hex, in the kernel's byte order) as text and a port."""
    hex_ip, hex_port = field.split(":")
    raw = bytes.fromhex(hex_ip)
    # The kernel writes each 32-bit word of the address in host byte order.
    if sys.byteorder == "little":
        raw = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    family = socket.AF_INET if len(raw) == 4 else socket.AF_INET6
    return socket.inet_ntop(family, raw), int(hex_port, 16)


def listening_addresses(pid: int, seen_from: int | None = None) -> set[tuple[str, int]]:
    """The TCP addresses the process listens on, in its own network namespace or in that of `seen_from`.

    A socket stays in the namespace it was made in: the launcher's forwarded ports belong to this machine's
    network although the launcher itself moved on into the server's.
    """
    inodes = set()
    with contextlib.suppress(OSError):
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            with contextlib.suppress(OSError):
                target = os.readlink(fd)
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
    listening = set()
    for table in ("tcp", "tcp6"):
        try:
            rows = Path(f"/proc/{seen_from or pid}/net/{table}").read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            if fields[3] == _TCP_LISTEN and fields[9] in inodes:
                listening.add(_decode_address(fields[1]))
    return listening


def network_interfaces(pid: int) -> list[str]:
    """The network interfaces of the process's namespace."""
    rows = Path(f"/proc/{pid}/net/dev").read_text().splitlines()[2:]
    return [row.split(":", 1)[0].strip() for row in rows]


# -- the server


class MilvusServer:
    """A Milvus 2.3 standalone server (embedded etcd, local storage, rocksmq), all of it under `base_dir`.

    `uri` is the proxy's address on 127.0.0.1 for pymilvus's MilvusClient; it stays the same across restarts.
    There is no authentication. `network` is "namespace" (the default, or FV_MILVUS_NETWORK) or "host".
    """

    def __init__(
        self,
        base_dir: Path,
        *,
        port: int | None = None,
        network: str | None = None,
        settings: Mapping[str, str] | None = None,
        cache: Path = CACHE,
    ) -> None:
        self.base = Path(base_dir)
        self.network = network or os.environ.get("FV_MILVUS_NETWORK", "") or "namespace"
        if self.network not in NETWORKS:
            raise ValueError(f"network {self.network!r} is not one of {NETWORKS}")
        self.config_dir = self.base / "configs"
        self.log_dir = self.base / "logs"
        self.data_dir = self.base / "data"
        self.pid_file = self.base / "run" / "milvus.pid"
        self.settings = {**DEFAULT_SETTINGS, **(settings or {})}
        self.cache = Path(cache)
        self._data = _package_data()
        # The ports on this machine: in a namespace only the two forwarded ones, in the host network all of
        # them. Once the server has run they stay, so that the URIs handed out work after a restart.
        self.port = port or 0
        self.metrics_port = 0
        self._inner_ports: dict[str, int] = dict(DEFAULT_PORTS)
        self._ports_pinned = False
        self._launcher: subprocess.Popen[bytes] | None = None
        self._milvus_pid: int | None = None
        self.start_seconds: float | None = None

    # -- what clients need

    @property
    def uri(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def uri_for(self, db_name: str) -> str:
        """The URI of one database: pymilvus reads the database from the URI's path."""
        return f"{self.uri}/{db_name}"

    @property
    def health_url(self) -> str:
        return f"http://{LOOPBACK}:{self.metrics_port}/healthz"

    @property
    def running(self) -> bool:
        return self._launcher is not None and self._launcher.poll() is None

    @property
    def pid(self) -> int | None:
        """The Milvus process's pid while it runs (the launcher's child in a namespace)."""
        return self._milvus_pid if self.running else None

    @property
    def launcher_pid(self) -> int | None:
        return self._launcher.pid if self.running and self._launcher is not None else None

    # -- life cycle

    def start(self, timeout: float = 120.0) -> MilvusServer:
        """Starts the server and waits until /healthz says that all its components serve."""
        if self.running:
            return self
        self.kill()  # what is left of a server that died by itself
        started = time.monotonic()
        deadline = started + timeout
        bin_dir = unpack_binaries(self.cache)
        while True:
            self._choose_ports()
            self._write_config()
            failure = self._launch(bin_dir, deadline)
            if failure is None:
                self._ports_pinned = True
                self.start_seconds = time.monotonic() - started
                return self
            code, text = failure
            if code == EXIT_NO_NAMESPACE:
                why = self._launcher_says()
                raise EngineUnavailable(
                    f"no private network namespace for Milvus here ({why}); FV_MILVUS_NETWORK=host runs it "
                    "in this machine's network, with its gRPC ports open on every interface"
                )
            if code == EXIT_PORT_TAKEN and not self._ports_pinned and time.monotonic() < deadline:
                continue  # somebody took a port between the probe and the bind: take others
            raise MilvusError(f"Milvus did not start (exit code {code}):\n{text}")

    def stop(self, timeout: float = 60.0) -> None:
        """SIGTERM, then SIGKILL when the server has not stopped within `timeout` seconds."""
        launcher = self._launcher
        if launcher is None:
            return
        if launcher.poll() is None:
            launcher.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                launcher.wait(timeout)
        self.kill()

    def kill(self) -> None:
        """SIGKILL of the server and its launcher, as a crash would leave them; returns once both are gone."""
        launcher = self._launcher
        if launcher is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(launcher.pid, signal.SIGKILL)
            launcher.wait(30)
        milvus = self._milvus_pid or self._read_pid()
        if milvus is not None and self._is_ours(milvus):
            with contextlib.suppress(ProcessLookupError):
                os.kill(milvus, signal.SIGKILL)
            # Until it is gone it holds the locks on its etcd and rocksmq folders, which a new server needs.
            gone_by = time.monotonic() + 30
            while _alive(milvus) and self._is_ours(milvus) and time.monotonic() < gone_by:
                time.sleep(0.01)
        self._launcher = None
        self._milvus_pid = None

    def restart(self, timeout: float = 120.0) -> MilvusServer:
        self.stop()
        return self.start(timeout)

    def __enter__(self) -> MilvusServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def log_tail(self, lines: int = 40) -> str:
        """The end of the launcher's output, of the server's stdout and stderr, and of its own log file."""
        logs = [self.log_dir / "launcher.log", self.log_dir / "milvus-stdout.log"]
        logs += sorted(self.log_dir.glob("standalone*.log"), key=lambda path: path.stat().st_mtime)[-1:]
        parts = []
        for path in logs:
            try:
                text = path.read_bytes()[-200_000:].decode(errors="replace")
            except OSError:
                continue
            tail = "\n".join(text.splitlines()[-lines:])
            if tail:
                parts.append(f"== {path.name}\n{tail}")
        return "\n".join(parts)

    # -- internals

    def _choose_ports(self) -> None:
        if self._ports_pinned:
            return
        if self.network == "namespace":
            wanted = [self.port] if self.port else []
            self.metrics_port, *rest = _free_ports(1 if wanted else 2, LOOPBACK, set(wanted))
            self.port = wanted[0] if wanted else rest[0]
            return
        # Milvus listens on every interface, so a port is only free when it is free on all of them.
        keys = [key for key in DEFAULT_PORTS if not (key == "proxy_port" and self.port)]
        chosen = dict(zip(keys, _free_ports(len(keys), "0.0.0.0", {self.port}), strict=True))
        if self.port:
            chosen["proxy_port"] = self.port
        self._inner_ports = chosen
        self.port = chosen["proxy_port"]
        self.metrics_port = chosen["metrics_port"]

    def _write_config(self) -> None:
        for folder in (self.config_dir, self.log_dir, self.data_dir, self.pid_file.parent):
            folder.mkdir(parents=True, exist_ok=True)
        ports = self._inner_ports
        values: dict[str, object] = {
            key: port for key, port in ports.items() if key not in ("metrics_port", "etcd_peer_port")
        }
        values |= {
            "etcd_log_path": self.log_dir / "etcd.log",
            "etcd_data_dir": self.data_dir / "etcd.data",
            "local_storage_dir": self.data_dir,
            "rocksmq_data_dir": self.data_dir / "rocksmq",
            "system_log_path": self.log_dir,
        }
        template = (self._data / "config.yaml.template").read_text()
        etcd_config = self.config_dir / "etcd.yaml"
        etcd_config.write_text(_etcd_config("standalone", ports["etcd_port"], ports["etcd_peer_port"]))
        settings = {f"{component}.ip": LOOPBACK for component in COMPONENTS}
        settings |= {"etcd.config.path": str(etcd_config), **self.settings}
        text = apply_settings(render_template(template, values), settings)
        (self.config_dir / "milvus.yaml").write_text(text)
        shutil.copy(self._data / "glog.conf", self.config_dir / "glog.conf")

    def _launcher_says(self) -> str:
        """The launcher's last line of output."""
        try:
            lines = (self.log_dir / "launcher.log").read_text(errors="replace").strip().splitlines()
        except OSError:
            return "no output"
        return lines[-1] if lines else "no output"

    def _is_ours(self, pid: int) -> bool:
        """Whether the pid is still a Milvus server of this folder, not a process that took the pid since."""
        try:
            folder, program = os.readlink(f"/proc/{pid}/cwd"), os.readlink(f"/proc/{pid}/exe")
        except OSError:
            return False  # gone, or a zombie, which holds no locks
        return Path(folder) == self.base.resolve() and Path(program).name == "milvus"

    def _read_pid(self) -> int | None:
        try:
            return int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None

    def _launch(self, bin_dir: Path, deadline: float) -> tuple[int | None, str] | None:
        """Starts the launcher and waits for /healthz; returns None, or (exit code, why) when it failed."""
        self.pid_file.unlink(missing_ok=True)
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.base),
            "TZ": "UTC",
            "LD_LIBRARY_PATH": str(bin_dir),
            "DEPLOY_MODE": "STANDALONE",
            "METRICS_PORT": str(self._inner_ports["metrics_port"]),
            "MILVUSCONF": str(self.config_dir),
            "MILVUS_RUN_DIR": str(self.pid_file.parent),
        }
        plan = {
            "command": [str(bin_dir / "milvus"), "run", "standalone"],
            "cwd": str(self.base),
            "env": env,
            "namespace": self.network == "namespace",
            "forwards": (
                [
                    [self.port, self._inner_ports["proxy_port"]],
                    [self.metrics_port, self._inner_ports["metrics_port"]],
                ]
                if self.network == "namespace"
                else []
            ),
            "pid_file": str(self.pid_file),
            "output": str(self.log_dir / "milvus-stdout.log"),
        }
        with (self.log_dir / "launcher.log").open("ab") as log:
            launcher = subprocess.Popen(
                [sys.executable, "-m", __name__, json.dumps(plan)],
                cwd=REPO,
                env={"PATH": env["PATH"], "PYTHONPATH": str(REPO)},
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a Ctrl-C in the terminal is pytest's; the group is killed at once
                preexec_fn=_die_with_parent,
            )
        self._launcher = launcher
        while time.monotonic() < deadline:
            code = launcher.poll()
            if code is not None:
                self.kill()
                return code, self.log_tail()
            if self._milvus_pid is None:
                self._milvus_pid = self._read_pid()
            if self._milvus_pid is not None and self._healthy():
                return None
            time.sleep(0.1)
        self.kill()
        return None, f"not healthy in time\n{self.log_tail()}"

    def _healthy(self) -> bool:
        try:
            with urllib.request.urlopen(self.health_url, timeout=5) as response:
                return bool(response.status == 200 and b"OK" in response.read())
        except (OSError, urllib.error.URLError):
            return False


# -- the launcher: its own process, so that it can enter a namespace while it has a single thread


def _enter_private_network() -> None:
    """Moves this process into a new network namespace and brings its loopback interface up."""
    assert _LIBC is not None
    flags = _CLONE_NEWNET
    uid, gid = os.geteuid(), os.getegid()
    if uid != 0:
        flags |= _CLONE_NEWUSER  # the new user namespace grants the capability a network namespace needs
    if _LIBC.unshare(flags) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"unshare: {os.strerror(errno)}")
    if flags & _CLONE_NEWUSER:
        Path("/proc/self/setgroups").write_text("deny")
        Path("/proc/self/uid_map").write_text(f"{uid} {uid} 1")
        Path("/proc/self/gid_map").write_text(f"{gid} {gid} 1")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as control:
        request = struct.pack(_IFREQ, b"lo", 0)
        current = struct.unpack(_IFREQ, fcntl.ioctl(control, _SIOCGIFFLAGS, request))[1]
        fcntl.ioctl(control, _SIOCSIFFLAGS, struct.pack(_IFREQ, b"lo", current | _IFF_UP))


def _pump(source: socket.socket, sink: socket.socket) -> None:
    try:
        while data := source.recv(1 << 18):
            sink.sendall(data)
        sink.shutdown(socket.SHUT_WR)
    except OSError:
        # A reset on one side: end both, so that the pump of the other direction returns as well.
        for end in (source, sink):
            with contextlib.suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)


def _bridge(client: socket.socket, inner_port: int) -> None:
    with client:
        try:
            upstream = socket.create_connection((LOOPBACK, inner_port), timeout=10)
        except OSError:
            return  # not listening yet: the client sees a closed connection and tries again
        with upstream:
            upstream.settimeout(None)
            for end in (client, upstream):
                # gRPC writes small frames and waits for the answer; Nagle would hold each one back.
                end.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            back = threading.Thread(target=_pump, args=(upstream, client), daemon=True)
            back.start()
            _pump(client, upstream)
            back.join()


def _forward(listener: socket.socket, inner_port: int) -> None:
    while True:
        client, _ = listener.accept()
        threading.Thread(target=_bridge, args=(client, inner_port), daemon=True).start()


def _launch(plan: dict[str, Any]) -> int:
    """Binds the forwarded ports, enters a namespace, runs Milvus and forwards until it exits."""
    listeners = []
    for outer, inner in plan["forwards"]:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            listener.bind((LOOPBACK, outer))
        except OSError as exc:
            print(f"cannot bind {LOOPBACK}:{outer}: {exc}", file=sys.stderr, flush=True)
            return EXIT_PORT_TAKEN
        listener.listen(128)
        listeners.append((listener, inner))
    if plan["namespace"]:
        try:
            _enter_private_network()
        except OSError as exc:
            print(exc, file=sys.stderr, flush=True)
            return EXIT_NO_NAMESPACE
    output = open(plan["output"], "ab")  # noqa: SIM115  (the server's, for as long as it runs)
    if not listeners:
        # Nothing to forward: the launcher becomes the server, so that its pid is the server's.
        Path(plan["pid_file"]).write_text(f"{os.getpid()}\n")
        os.chdir(plan["cwd"])
        os.dup2(output.fileno(), 1)
        os.dup2(output.fileno(), 2)
        os.execve(plan["command"][0], plan["command"], plan["env"])
    server = subprocess.Popen(
        plan["command"],
        cwd=plan["cwd"],
        env=plan["env"],
        stdin=subprocess.DEVNULL,
        stdout=output,
        stderr=subprocess.STDOUT,
        preexec_fn=_die_with_parent,
    )
    Path(plan["pid_file"]).write_text(f"{server.pid}\n")

    def pass_on(signum: int, frame: FrameType | None) -> None:
        with contextlib.suppress(ProcessLookupError):
            server.send_signal(signum)

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, pass_on)
    for listener, inner in listeners:
        threading.Thread(target=_forward, args=(listener, inner), daemon=True).start()
    code = server.wait()
    return code if code >= 0 else 128 - code


if __name__ == "__main__":
    sys.stdout.flush()
    os._exit(_launch(json.loads(sys.argv[1])))
