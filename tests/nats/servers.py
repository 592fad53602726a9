"""Throwaway ``nats-server`` processes for the NATS fault tests. Every process started here
is killed at interpreter exit at the latest (and, on Linux with ``setpriv``, when the test
process dies), so nothing leaks even when a test fails or pytest is interrupted."""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import random
import shutil
import socket
import subprocess
import sys
import time

START_TIMEOUT = 10.0

_live: set[subprocess.Popen[bytes]] = set()


def _kill_all() -> None:
    for proc in list(_live):
        with contextlib.suppress(OSError):
            proc.kill()
        with contextlib.suppress(Exception):
            proc.wait(5)
        _live.discard(proc)


atexit.register(_kill_all)


def _die_with_parent() -> list[str]:
    setpriv = shutil.which("setpriv") if sys.platform.startswith("linux") else None
    return [setpriv, "--pdeathsig", "KILL", "--"] if setpriv else []


def nats_server_binary() -> str | None:
    return shutil.which("nats-server") or shutil.which("nats-server", path="/usr/sbin:/usr/bin")


def free_port() -> int:
    for _ in range(200):
        port = random.randint(30000, 39999)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port found")


def ping(port: int, timeout: float = 0.5) -> bool:
    """True when a NATS server on ``port`` greets with INFO (a raw socket: no client)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
            return sock.recv(5) == b"INFO "
    except OSError:
        return False


class NatsServer:
    """One ``nats-server -a 127.0.0.1 -p <port>`` (core NATS, no persistence)."""

    def __init__(self, port: int | None = None, *extra: str) -> None:
        self.port = port or free_port()
        self.extra = extra
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def spawn(self) -> None:
        binary = nats_server_binary()
        if binary is None:
            raise RuntimeError("nats-server is not installed")
        if self.running:
            raise RuntimeError(f"nats-server on {self.port} is already running")
        self.proc = subprocess.Popen(
            [*_die_with_parent(), binary, "-a", "127.0.0.1", "-p", str(self.port), *self.extra],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        _live.add(self.proc)

    def start(self) -> None:
        self.spawn()
        deadline = time.monotonic() + START_TIMEOUT
        while not ping(self.port):
            if time.monotonic() > deadline or not self.running:
                self.kill()
                raise RuntimeError(f"nats-server on port {self.port} did not start")
            time.sleep(0.02)

    async def astart(self) -> float:
        """:meth:`start` without blocking the event loop; returns the ``time.monotonic()``
        at which the server first answered."""
        self.spawn()
        deadline = time.monotonic() + START_TIMEOUT
        while not await asyncio.to_thread(ping, self.port):
            if time.monotonic() > deadline or not self.running:
                self.kill()
                raise RuntimeError(f"nats-server on port {self.port} did not restart")
            await asyncio.sleep(0.005)
        return time.monotonic()

    def kill(self, *, graceful: bool = False) -> None:
        """SIGKILL: the server vanishes without closing anything gracefully (``graceful``:
        SIGTERM, it stops at once but flushes its JetStream store first)."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        with contextlib.suppress(OSError):
            if graceful:
                proc.terminate()
            else:
                proc.kill()
        proc.wait(10)
        _live.discard(proc)
