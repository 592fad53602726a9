"""Throwaway ``redis-server`` processes for the Redis tests: a standalone server on a free
port and a 3-master Redis Cluster (optionally with replicas). Every process started here is registered and killed at
interpreter exit at the latest (and, on Linux with ``setpriv``, when the test process
dies), so nothing leaks even when a test fails or pytest is interrupted."""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

START_TIMEOUT = 10.0
CLUSTER_TIMEOUT = 30.0

_live: set[subprocess.Popen[bytes]] = set()
_dirs: set[Path] = set()


def _kill_all() -> None:
    for proc in list(_live):
        with contextlib.suppress(OSError):
            proc.kill()
        with contextlib.suppress(Exception):
            proc.wait(5)
        _live.discard(proc)
    for directory in list(_dirs):
        shutil.rmtree(directory, ignore_errors=True)
        _dirs.discard(directory)


atexit.register(_kill_all)


def _die_with_parent() -> list[str]:
    """A command prefix that makes the server get SIGKILL if the test process dies
    (``setpriv --pdeathsig``, util-linux); empty where it is not available."""
    setpriv = shutil.which("setpriv") if sys.platform.startswith("linux") else None
    return [setpriv, "--pdeathsig", "KILL", "--"] if setpriv else []


def redis_server_binary() -> str | None:
    return shutil.which("redis-server")


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port(with_bus: bool = False) -> int:
    """A free loopback port (and its cluster-bus port, port + 10000, when ``with_bus``)."""
    for _ in range(200):
        port = random.randint(20000, 29999)
        if _port_free(port) and (not with_bus or _port_free(port + 10000)):
            return port
    raise RuntimeError("no free port found")


def ping(port: int, timeout: float = 0.5) -> bool:
    """True when a Redis on ``port`` answers PING (a raw socket: no client library)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    """One ``redis-server`` on 127.0.0.1: no persistence, its own temporary directory."""

    def __init__(self, port: int | None = None, *extra: str, cluster: bool = False) -> None:
        self.port = port or free_port(with_bus=cluster)
        self.cluster = cluster
        self.extra = extra
        self.dir = Path(tempfile.mkdtemp(prefix=f"pondsocket-redis-{self.port}-"))
        _dirs.add(self.dir)
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def _args(self) -> list[str]:
        binary = redis_server_binary()
        if binary is None:
            raise RuntimeError("redis-server is not installed")
        args = [
            binary,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self.dir),
            "--logfile", str(self.dir / "redis.log"),
        ]  # fmt: skip
        if self.cluster:
            args += [
                "--cluster-enabled", "yes",
                "--cluster-config-file", str(self.dir / "nodes.conf"),
                "--cluster-node-timeout", "2000",
                "--repl-diskless-sync-delay", "0",  # replicas in sync at once: failover-ready
            ]  # fmt: skip
        return args + list(self.extra)

    def spawn(self) -> None:
        """Start the process without waiting for it to answer."""
        if self.running:
            raise RuntimeError(f"redis-server on {self.port} is already running")
        self.proc = subprocess.Popen(
            [*_die_with_parent(), *self._args()],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        _live.add(self.proc)

    def _not_started(self) -> RuntimeError:
        log = self.dir / "redis.log"
        tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
        return RuntimeError(f"redis-server on port {self.port} did not start:\n{tail}")

    def start(self) -> None:
        self.spawn()
        deadline = time.monotonic() + START_TIMEOUT
        while not ping(self.port):
            if time.monotonic() > deadline or not self.running:
                self.kill()
                raise self._not_started()
            time.sleep(0.02)

    async def astart(self) -> float:
        """:meth:`start` without blocking the event loop (the code under test keeps running).
        Returns the ``time.monotonic()`` at which the server first answered PING."""
        self.spawn()
        deadline = time.monotonic() + START_TIMEOUT
        while not await asyncio.to_thread(ping, self.port):
            if time.monotonic() > deadline or not self.running:
                self.kill()
                raise self._not_started()
            await asyncio.sleep(0.005)
        return time.monotonic()

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def _signal(self, sig: signal.Signals) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)

    def kill(self) -> None:
        """SIGKILL: the server vanishes without closing anything gracefully."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        with contextlib.suppress(OSError):
            proc.kill()
        proc.wait(10)
        _live.discard(proc)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it does not exit within 5 s."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        with contextlib.suppress(OSError):
            proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        _live.discard(proc)

    def freeze(self) -> None:
        """SIGSTOP: connections stay open but nothing answers (a half-open link)."""
        self._signal(signal.SIGSTOP)

    def thaw(self) -> None:
        self._signal(signal.SIGCONT)

    async def arestart(self, down_for: float = 0.0) -> float:
        self.kill()
        await asyncio.sleep(down_for)
        return await self.astart()

    def cli(self, *args: str) -> str:
        """Run ``redis-cli`` against this server and return its output."""
        return cli(self.port, *args)

    def cleanup(self) -> None:
        self.thaw()  # a stopped process cannot handle SIGTERM
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
        _dirs.discard(self.dir)

    def __enter__(self) -> RedisServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.cleanup()


def cli(port: int, *args: str, timeout: float = 30.0) -> str:
    binary = shutil.which("redis-cli")
    if binary is None:
        raise RuntimeError("redis-cli is not installed")
    done = subprocess.run(
        [binary, "-h", "127.0.0.1", "-p", str(port), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=True,
    )
    return done.stdout


class RedisCluster:
    """Three masters (each with ``replicas`` replicas), every slot covered:
    ``redis-cli --cluster create``."""

    def __init__(self, masters: int = 3, replicas: int = 0) -> None:
        self.replicas = replicas
        self.servers: list[RedisServer] = []
        for _ in range(masters * (1 + replicas)):
            port = free_port(with_bus=True)
            while any(port in (s.port, s.port + 10000) for s in self.servers):
                port = free_port(with_bus=True)
            self.servers.append(RedisServer(port, cluster=True))

    @property
    def ports(self) -> list[int]:
        return [s.port for s in self.servers]

    @property
    def url(self) -> str:
        return f"redis+cluster://127.0.0.1:{self.ports[0]}"

    def start(self) -> None:
        try:
            for server in self.servers:
                server.start()
            cli(
                self.ports[0],
                "--cluster", "create",
                *(f"127.0.0.1:{port}" for port in self.ports),
                "--cluster-replicas", str(self.replicas),
                "--cluster-yes",
            )  # fmt: skip
            self.wait_ok()
        except BaseException:
            self.cleanup()
            raise

    def wait_ok(self) -> None:
        deadline = time.monotonic() + CLUSTER_TIMEOUT
        while True:
            states = [cli(port, "cluster", "info") for port in self.ports]
            if all("cluster_state:ok" in s for s in states):
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"cluster did not reach cluster_state:ok: {states}")
            time.sleep(0.1)

    def wait_replicas_synced(self) -> None:
        """Until every replica's link to its master is up (a replica that never synced
        refuses to fail over)."""
        deadline = time.monotonic() + CLUSTER_TIMEOUT
        expected = len(self.servers) - len(self.servers) // (1 + self.replicas)
        while True:
            infos = [cli(port, "info", "replication") for port in self.ports]
            replicas = [info for info in infos if "role:slave" in info]
            if len(replicas) == expected and all("master_link_status:up" in i for i in replicas):
                return
            if time.monotonic() > deadline:
                raise RuntimeError("cluster replicas did not sync")
            time.sleep(0.1)

    def server(self, port: int) -> RedisServer:
        return next(server for server in self.servers if server.port == port)

    def cleanup(self) -> None:
        for server in self.servers:
            server.cleanup()

    def __enter__(self) -> RedisCluster:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.cleanup()
