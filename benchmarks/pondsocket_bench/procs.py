"""Child processes of a benchmark run: spawn, talk line by line, and always reap.

Children start in their own session (a Ctrl+C reaches only the orchestrator, which then
stops them in order) and ask Linux to SIGTERM them should the orchestrator die.
:meth:`Children.close` sends SIGTERM to each child it started, waits, then SIGKILLs.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

from pondsocket_bench.loadgen import LoadConfig, config_json

_LINE_LIMIT = 16 * 1024 * 1024


class ChildError(RuntimeError):
    """A child exited, or did not answer in time."""


class Child:
    """One child process; its stdout is read as lines ``TAG [json]`` (``P <n>`` = progress)."""

    def __init__(self, name: str, process: asyncio.subprocess.Process) -> None:
        self.name = name
        self.process = process
        self.progress = 0
        self._lines: asyncio.Queue[str | None] = asyncio.Queue()
        self._reader = asyncio.create_task(self._read(), name=f"bench-read-{name}")

    @property
    def pid(self) -> int:
        return self.process.pid

    async def _read(self) -> None:
        stdout = self.process.stdout
        assert stdout is not None
        try:
            while line := await stdout.readline():
                text = line.decode().strip()
                if text.startswith("P "):
                    self.progress = int(text[2:])
                elif text:
                    self._lines.put_nowait(text)
        finally:
            self._lines.put_nowait(None)

    async def expect(self, tag: str, timeout: float) -> Any:
        """Wait for the line ``TAG ...``; returns its JSON (or the raw rest of the line)."""
        try:
            async with asyncio.timeout(timeout):
                while True:
                    line = await self._lines.get()
                    if line is None:
                        code = await self.process.wait()
                        raise ChildError(f"{self.name} exited (status {code}) before {tag}")
                    head, _, rest = line.partition(" ")
                    if head == tag:
                        try:
                            return json.loads(rest) if rest else None
                        except ValueError:
                            return rest
        except TimeoutError:
            raise ChildError(f"{self.name}: no {tag} within {timeout:.0f} s") from None

    def tell(self, line: str) -> None:
        stdin = self.process.stdin
        if stdin is not None and not stdin.is_closing():
            stdin.write(line.encode() + b"\n")

    async def stop(self, grace: float = 5.0) -> int:
        """SIGTERM, wait up to ``grace`` s, then SIGKILL; returns the exit status."""
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.terminate()
            try:
                async with asyncio.timeout(grace):
                    await self.process.wait()
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    self.process.kill()
                await self.process.wait()
        if self.process.stdin is not None:
            self.process.stdin.close()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader
        return self.process.returncode if self.process.returncode is not None else -1


class Children:
    """Every child of a run; :meth:`close` stops those still running."""

    def __init__(self) -> None:
        self._children: list[Child] = []

    async def spawn(
        self, name: str, module: str, args: Sequence[str], *, stdin: bool, stderr: int | None = None
    ) -> Child:
        """``python -m MODULE ARGS``; its stderr is ours unless ``stderr`` says otherwise
        (``asyncio.subprocess.PIPE``: the caller reads ``child.process.stderr``)."""
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            module,
            *args,
            stdin=asyncio.subprocess.PIPE if stdin else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=stderr,  # by default the children's errors show on our stderr
            start_new_session=True,
            limit=_LINE_LIMIT,
        )
        child = Child(name, process)
        self._children.append(child)
        return child

    async def server(
        self,
        name: str,
        transport: str,
        *,
        presence: bool,
        max_seconds: float,
        redis: str | None = None,
        namespace: str = "bench",
    ) -> tuple[Child, int]:
        """Start a server process; returns it and its port once it accepts connections."""
        args = ["--transport", transport, "--max-seconds", str(max_seconds)]
        args += ["--parent", str(os.getpid()), "--namespace", namespace]
        if presence:
            args.append("--presence")
        if redis:
            args += ["--redis", redis]
        child = await self.spawn(name, "pondsocket_bench.server", args, stdin=False)
        port = await child.expect("READY", timeout=30)
        return child, int(port)

    async def loadgen(self, name: str, config: LoadConfig) -> Child:
        config.parent = os.getpid()
        return await self.spawn(name, "pondsocket_bench.loadgen", [config_json(config)], stdin=True)

    async def close(self) -> None:
        """Stop every child (load generators first, so servers see their clients leave)."""
        ordered = sorted(self._children, key=lambda c: c.name.startswith("server"))
        for child in ordered:
            await child.stop()
        self._children.clear()

    async def stop(self, child: Child) -> None:
        await child.stop()
        with contextlib.suppress(ValueError):
            self._children.remove(child)
