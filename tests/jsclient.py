"""Drive the real published PondSocket JavaScript client from Python tests.

One :class:`JSClientHarness` owns one Node.js process running ``tests/js/driver.mjs``, which
hosts any number of named ``PondClient`` instances of ``@eleven-am/pondsocket-client`` 0.0.32
(the version users get from npm). Commands go to the driver as JSON lines on its stdin; results
and asynchronous events come back as JSON lines on its stdout. See ``tests/js/driver.mjs`` for
the command set and ``tests/js/CLIENT_NOTES.md`` for what the client does.

Typical use::

    harness = await JSClientHarness.start()
    try:
        await harness.command("connect", client="a", url=f"ws://127.0.0.1:{port}/socket")
        await harness.command("join", client="a", channel="/chat/lobby", params={"name": "x"})
        reply = await harness.command("request", client="a", channel="/chat/lobby",
                                      event="echo", payload={"n": 1})
        msg = await harness.wait_event(event_matches(type="message", event="hello"))
    finally:
        await harness.close()

``npm ci --prefix tests/js`` must have been run (or call :func:`ensure_js_client_installed`).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import shutil
import subprocess
from collections import deque
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any

JS_DIR = Path(__file__).resolve().parent / "js"
DRIVER = JS_DIR / "driver.mjs"
CLIENT_PACKAGE = "@eleven-am/pondsocket-client"
CLIENT_VERSION = "0.0.32"
_CLIENT_PACKAGE_JSON = JS_DIR / "node_modules" / CLIENT_PACKAGE / "package.json"

# Messages can be large (size-limit tests send ~1 MiB payloads); asyncio's default 64 KiB line
# limit would break the reader on them.
_LINE_LIMIT = 64 * 1024 * 1024
# Extra time the Python side waits beyond a driver-side timeout, so that the driver's own
# (more informative) timeout error arrives first.
_DRIVER_TIMEOUT_MARGIN = 2.0
_STDERR_TAIL = 200

Event = dict[str, Any]
EventPredicate = Callable[[Event], bool]


class JSCommandError(Exception):
    """A driver command answered ``ok: false``.

    ``result`` is the whole result line; ``code`` is e.g. ``"DECLINED"``, ``"TIMEOUT"``,
    ``"UNKNOWN_CLIENT"``; for a declined join ``payload`` is the server's decline payload.
    """

    def __init__(self, result: dict[str, Any]) -> None:
        self.result = result
        self.error: str = str(result.get("error", "unknown error"))
        self.code: str | None = result.get("code")
        self.payload: Any = result.get("payload")
        super().__init__(f"{self.code or 'ERROR'}: {self.error}")


class JSDriverDiedError(RuntimeError):
    """The Node.js driver process exited while something was waiting for it."""


def event_matches(**match: Any) -> EventPredicate:
    """Predicate for :meth:`JSClientHarness.wait_event`: every given field equals the value."""

    def predicate(event: Event) -> bool:
        return all(key in event and event[key] == value for key, value in match.items())

    return predicate


def _installed_client_version() -> str | None:
    try:
        data = json.loads(_CLIENT_PACKAGE_JSON.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    version = data.get("version")
    return version if isinstance(version, str) else None


def ensure_js_client_installed() -> None:
    """Run ``npm ci`` in tests/js unless the pinned client is already installed there.

    Meant for the test session setup: CI starts from a clean clone without node_modules.
    Synchronous on purpose (it runs before any event loop exists).
    """
    if _installed_client_version() == CLIENT_VERSION:
        return
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError(
            "npm is not on PATH; install Node.js (>= 18) to run the JavaScript-client tests"
        )
    completed = subprocess.run(
        [npm, "ci", "--no-audit", "--no-fund"],
        cwd=JS_DIR,
        capture_output=True,
        text=True,
        check=False,
    )
    if completed.returncode != 0 or _installed_client_version() != CLIENT_VERSION:
        raise RuntimeError(
            f"`npm ci` in {JS_DIR} failed (exit {completed.returncode}):\n"
            f"{completed.stdout[-4000:]}\n{completed.stderr[-4000:]}"
        )


class JSClientHarness:
    """One Node.js driver process hosting many named JavaScript clients."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self._process = process
        self._ids = itertools.count(1)
        self._pending: dict[str, asyncio.Future[dict[str, Any]]] = {}
        # Every event ever received, in arrival order; `_consumed` holds the indices that
        # wait_event() has already returned, so it never returns the same event twice.
        self._events: list[Event] = []
        self._consumed: set[int] = set()
        self._changed = asyncio.Condition()
        self._stderr_tail: deque[str] = deque(maxlen=_STDERR_TAIL)
        self._dead: str | None = None
        self._closed = False
        self._stdout_task = asyncio.create_task(self._read_stdout(), name="jsclient-stdout")
        self._stderr_task = asyncio.create_task(self._read_stderr(), name="jsclient-stderr")

    # ------------------------------------------------------------------------------ lifecycle

    @classmethod
    async def start(cls) -> JSClientHarness:
        """Spawn ``node tests/js/driver.mjs``."""
        node = shutil.which("node")
        if node is None:
            raise RuntimeError("`node` is not on PATH; the JavaScript-client tests need Node.js")
        if _installed_client_version() is None:
            raise RuntimeError(
                f"{CLIENT_PACKAGE} is not installed in {JS_DIR / 'node_modules'}; "
                "run `npm ci --prefix tests/js` first"
            )
        process = await asyncio.create_subprocess_exec(
            node,
            str(DRIVER),
            cwd=JS_DIR,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            limit=_LINE_LIMIT,
        )
        return cls(process)

    async def close(self) -> None:
        """Ask the driver to exit (it disconnects its clients), kill it if it does not."""
        if self._closed:
            return
        self._closed = True
        process = self._process
        if process.returncode is None and self._dead is None:
            with contextlib.suppress(Exception):
                await self.command("exit", timeout=2.0)
        if process.stdin is not None:
            process.stdin.close()
            with contextlib.suppress(Exception):
                await process.stdin.wait_closed()
        try:
            await asyncio.wait_for(process.wait(), timeout=5.0)
        except TimeoutError:
            process.kill()
            await process.wait()
        for task in (self._stdout_task, self._stderr_task):
            try:
                await asyncio.wait_for(task, timeout=2.0)
            except TimeoutError:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def __aenter__(self) -> JSClientHarness:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # ------------------------------------------------------------------------------ commands

    async def command(self, cmd: str, timeout: float = 10.0, **fields: Any) -> Any:
        """Send ``cmd`` with ``fields`` and return the result's ``value``.

        ``timeout`` (seconds) bounds the wait on the Python side. Commands with their own
        driver-side timeout (connect, join, request, disconnect, drop) take it in milliseconds
        as ``timeout_ms=...`` (sent to the driver as its ``timeout`` field); the Python wait is
        stretched so that the driver's error, which names the channel state, arrives first.
        Raises :class:`JSCommandError` if the driver answers ``ok: false``.
        """
        if self._dead is not None:
            raise JSDriverDiedError(self._death_message())
        if "timeout_ms" in fields:
            timeout_ms = fields.pop("timeout_ms")
            fields["timeout"] = timeout_ms
            timeout = max(timeout, timeout_ms / 1000 + _DRIVER_TIMEOUT_MARGIN)
        command_id = str(next(self._ids))
        message = {"id": command_id, "cmd": cmd, **fields}
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[command_id] = future
        try:
            await self._write(message)
            try:
                result = await asyncio.wait_for(future, timeout)
            except TimeoutError:
                raise TimeoutError(
                    f"JS driver did not answer {cmd!r} within {timeout} s "
                    f"(fields {fields!r}); recent stderr:\n{self.stderr_tail()}"
                ) from None
        finally:
            self._pending.pop(command_id, None)
        if not result.get("ok"):
            raise JSCommandError(result)
        return result.get("value")

    async def _write(self, message: dict[str, Any]) -> None:
        stdin = self._process.stdin
        if stdin is None or stdin.is_closing():
            raise JSDriverDiedError(self._death_message())
        stdin.write(json.dumps(message).encode() + b"\n")
        try:
            await stdin.drain()
        except (BrokenPipeError, ConnectionResetError) as exc:
            raise JSDriverDiedError(self._death_message()) from exc

    # ------------------------------------------------------------------------------ events

    async def wait_event(self, predicate: EventPredicate, timeout: float = 5.0) -> Event:
        """Return the oldest not-yet-consumed event matching ``predicate``, waiting if needed.

        Already received events count, so there is no race between triggering something and
        starting to wait for its effect. The returned event is marked consumed.
        """
        async with self._changed:
            try:
                return await asyncio.wait_for(self._take_when_available(predicate), timeout)
            except TimeoutError:
                recent = "\n".join(json.dumps(e) for e in self._events[-20:])
                raise TimeoutError(
                    f"no matching JS client event within {timeout} s; last events:\n{recent}"
                ) from None

    async def _take_when_available(self, predicate: EventPredicate) -> Event:
        # Called with self._changed held.
        checked = 0
        while True:
            for index in range(checked, len(self._events)):
                if index not in self._consumed and predicate(self._events[index]):
                    self._consumed.add(index)
                    return self._events[index]
            # Consumed events may have been skipped above, but they stay consumed, so nothing
            # before `checked` can become eligible again.
            checked = len(self._events)
            if self._dead is not None:
                raise JSDriverDiedError(self._death_message())
            await self._changed.wait()

    def checkpoint(self) -> None:
        """Mark every event received so far as consumed.

        Call it before triggering something whose effect looks like an earlier event (e.g. a
        second ``channel_state`` JOINED after a reconnect), so wait_event() only sees new ones.
        """
        self._consumed.update(range(len(self._events)))

    def events(self, **match: Any) -> list[Event]:
        """All events received so far (consumed or not) whose given fields equal the values."""
        predicate = event_matches(**match)
        return [event for event in self._events if predicate(event)]

    def stderr_tail(self) -> str:
        """The last lines the driver wrote to stderr (for diagnostics)."""
        return "\n".join(self._stderr_tail)

    # ------------------------------------------------------------------------------ readers

    async def _read_stdout(self) -> None:
        stdout = self._process.stdout
        assert stdout is not None
        try:
            while True:
                line = await stdout.readline()
                if not line:
                    break
                try:
                    message = json.loads(line)
                except ValueError:
                    # Should never happen: the driver writes nothing but JSON lines to stdout.
                    self._stderr_tail.append(f"[non-JSON stdout] {line!r}")
                    continue
                if message.get("type") == "result":
                    future = self._pending.get(str(message.get("id")))
                    if future is not None and not future.done():
                        future.set_result(message)
                    continue
                async with self._changed:
                    self._events.append(message)
                    self._changed.notify_all()
        finally:
            returncode = await self._process.wait()
            self._dead = f"exit code {returncode}"
            error = JSDriverDiedError(self._death_message())
            for future in self._pending.values():
                if not future.done():
                    future.set_exception(error)
            async with self._changed:
                self._changed.notify_all()

    async def _read_stderr(self) -> None:
        stderr = self._process.stderr
        assert stderr is not None
        while True:
            line = await stderr.readline()
            if not line:
                return
            self._stderr_tail.append(line.decode(errors="replace").rstrip("\n"))

    def _death_message(self) -> str:
        state = self._dead or "stdin closed"
        return f"JS driver process is gone ({state}); recent stderr:\n{self.stderr_tail()}"
