"""The upstream Python ``pondsocket`` 0.0.7 server, run as a process for interop tests.

Upstream is installed from PyPI into a venv of its own (the bench's cache venvs,
:func:`pondsocket_bench.compare.ensure_env`), never vendored; each test module gives the
app it runs (a ``build_app(args)`` written against upstream's public API).
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

from pondsocket_bench.compare import EnvError, SystemEnv, SystemSpec, ensure_env
from tests.cluster.helpers import _die_with_parent, _live_pids

UPSTREAM_REQUIREMENTS = ("pondsocket==0.0.7", "pondsocket-asgi==0.0.6")


def upstream_env(name: str, app_source: str, *extra: str) -> SystemEnv:
    """The venv (built on first use) and the app script of an upstream system."""
    spec = SystemSpec(
        name=name,
        requirements=(*UPSTREAM_REQUIREMENTS, *extra),
        app_source=app_source,
        scenarios=frozenset(),
    )
    try:
        return ensure_env(spec, quiet=True)
    except EnvError as exc:
        pytest.fail(f"could not install upstream pondsocket 0.0.7 from PyPI: {exc}")


class UpstreamNode:
    """The upstream server as a process on uvicorn; ``READY <port>`` on stdout once
    listening. ``port=0`` takes a free one; a restart keeps the port it got."""

    def __init__(self, env: SystemEnv, log: Path, args: Sequence[str] = (), port: int = 0) -> None:
        self.env, self.log, self.args, self.port = env, log, list(args), port
        self.proc: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/socket"

    async def start(self) -> None:
        with self.log.open("ab") as log:
            self.proc = await asyncio.create_subprocess_exec(
                str(self.env.python), str(self.env.app_file), *self.args,
                "--port", str(self.port), "--parent", str(os.getpid()),
                stdout=asyncio.subprocess.PIPE, stderr=log,
                preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
            )  # fmt: skip
        _live_pids.add(self.proc.pid)
        assert self.proc.stdout is not None
        async with asyncio.timeout(30):
            while True:
                line = (await self.proc.stdout.readline()).decode()
                if not line:
                    raise AssertionError(f"upstream node exited: {self.log.read_text()[-2000:]}")
                if line.startswith("READY "):
                    self.port = int(line.split()[1])
                    return

    async def kill(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGKILL)
            await self.proc.wait()
            _live_pids.discard(self.proc.pid)
