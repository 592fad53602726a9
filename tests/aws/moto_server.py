"""A throwaway moto server (the local AWS emulator from PyPI, ``moto[server]``) on a free
port, for the SNS/SQS backend tests. The process is killed at the end of its fixture and
at interpreter exit at the latest."""

from __future__ import annotations

import atexit
import contextlib
import importlib.util
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

START_TIMEOUT = 20.0
_live: set[subprocess.Popen[bytes]] = set()


def _kill_all() -> None:
    for proc in list(_live):
        with contextlib.suppress(OSError):
            proc.kill()
        with contextlib.suppress(Exception):
            proc.wait(5)
        _live.discard(proc)


atexit.register(_kill_all)


def moto_available() -> bool:
    try:
        return importlib.util.find_spec("moto.server") is not None
    except ImportError:
        return False


def moto_version() -> str:
    import moto

    return str(moto.__version__)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class MotoServer:
    """``python -m moto.server -H 127.0.0.1 -p PORT`` as a child process. ``stop()`` kills
    it (all its state is lost, as after a crash); ``start()`` again gives an empty one on
    the same port."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, topic: str, **query: object) -> str:
        extra = "".join(f"&{key}={value}" for key, value in query.items())
        return f"sns+sqs://us-east-1?endpoint={self.endpoint}&topic={topic}{extra}"

    def start(self) -> None:
        setpriv = shutil.which("setpriv") if sys.platform.startswith("linux") else None
        prefix = [setpriv, "--pdeathsig", "KILL", "--"] if setpriv else []
        command = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)]
        self.proc = subprocess.Popen(
            prefix + command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        _live.add(self.proc)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"moto server exited with {self.proc.returncode}")
            if self.answers():
                return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"moto server did not answer on port {self.port}")

    def answers(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.endpoint}/moto-api/", timeout=1) as reply:
                return bool(reply.status == 200)
        except OSError:
            return False

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        with contextlib.suppress(OSError):
            proc.kill()
        with contextlib.suppress(Exception):
            proc.wait(5)
        _live.discard(proc)
