"""Processes and clients for the multi-process cluster tests.

* :class:`NodeProcess`: one ``python -m tests.cluster_node_app`` process (stdout parsed for
  ``READY``/``STATS``/``BYE`` lines, stderr kept in a log file).
* :class:`RedisProcess`: a throwaway ``redis-server`` on a free loopback port, for tests
  that kill and restart the broker.
* :class:`WsClient`: a small PondSocket wire-protocol client on ``websockets``.

Every process started here is registered and killed at interpreter exit at the latest (and,
on Linux, when the test process dies), so nothing leaks even when a test fails.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import itertools
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

ROOT = Path(__file__).resolve().parents[2]
ROOM = "/room/1"
READY_TIMEOUT = 15.0
DEFAULT_WAIT = 5.0

Frame = dict[str, Any]
Predicate = Callable[[Frame], bool]

# -- process bookkeeping -------------------------------------------------------------------

_live_pids: set[int] = set()


def _kill_leftovers() -> None:
    for pid in list(_live_pids):
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    _live_pids.clear()


atexit.register(_kill_leftovers)


def _die_with_parent() -> None:  # runs in the child between fork and exec
    if sys.platform.startswith("linux"):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG: SIGKILL when pytest dies


def free_port() -> int:
    """A free loopback port below the ephemeral range (Linux: 32768-60999), so that no
    outgoing connection takes it while a Redis using it is down for a restart."""
    for _ in range(200):
        port = random.randint(20000, 29999)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port found")


def redis_ping(port: int, host: str = "127.0.0.1", timeout: float = 0.5) -> bool:
    """True when a Redis answers PING (raw socket: works while no client library is set up)."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


# -- cluster node processes ----------------------------------------------------------------


class NodeProcess:
    """One node of the cluster in its own Python process."""

    def __init__(
        self,
        node_id: str,
        redis_url: str,
        namespace: str,
        log_dir: Path,
        *,
        heartbeat_interval: float | None = None,
        heartbeat_timeout: float | None = None,
    ) -> None:
        self.node_id = node_id
        self.redis_url = redis_url
        self.namespace = namespace
        self.log_path = log_dir / f"node-{node_id}.log"
        self.heartbeat_interval = heartbeat_interval
        self.heartbeat_timeout = heartbeat_timeout
        self.port = 0
        self.keep_port = False  # a restart listens on the port of the first start
        self.proc: asyncio.subprocess.Process | None = None
        self.returncode: int | None = None
        self._ready: asyncio.Future[int] | None = None
        self._stats: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._reader: asyncio.Task[None] | None = None
        self.lines: list[str] = []

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/socket"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    def _args(self) -> list[str]:
        args = [
            sys.executable, "-m", "tests.cluster_node_app",
            "--port", str(self.port if self.keep_port else 0),
            "--redis", self.redis_url,
            "--node-id", self.node_id,
            "--namespace", self.namespace,
        ]  # fmt: skip
        if self.heartbeat_interval is not None:
            args += ["--heartbeat-interval", str(self.heartbeat_interval)]
        if self.heartbeat_timeout is not None:
            args += ["--heartbeat-timeout", str(self.heartbeat_timeout)]
        return args

    async def start(self, timeout: float = READY_TIMEOUT) -> None:
        """Spawn the process and wait (bounded) for its READY line."""
        loop = asyncio.get_running_loop()
        self._ready = loop.create_future()
        with self.log_path.open("ab") as log_file:  # the child keeps its own descriptor
            self.proc = await asyncio.create_subprocess_exec(
                *self._args(),
                cwd=ROOT,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=log_file,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
                preexec_fn=_die_with_parent,
            )
        _live_pids.add(self.proc.pid)
        self._reader = loop.create_task(self._read_stdout(), name=f"node-{self.node_id}-stdout")
        try:
            async with asyncio.timeout(timeout):
                self.port = await self._ready
        except (TimeoutError, RuntimeError) as exc:
            await self.kill()
            raise RuntimeError(
                f"node {self.node_id} not READY within {timeout} s ({exc!r}):\n{self.log_tail()}"
            ) from None
        except BaseException:
            await self.kill()
            raise

    async def _read_stdout(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        stdout = self.proc.stdout
        while True:
            raw = await stdout.readline()
            if not raw:
                break
            line = raw.decode(errors="replace").rstrip("\n")
            self.lines.append(line)
            if line.startswith("READY ") and self._ready is not None and not self._ready.done():
                self._ready.set_result(int(line.split()[1]))
            elif line.startswith("STATS "):
                self._stats.put_nowait(json.loads(line[len("STATS ") :]))
        if self._ready is not None and not self._ready.done():
            self._ready.set_exception(RuntimeError(f"node {self.node_id} exited before READY"))

    async def stats(self, timeout: float = DEFAULT_WAIT) -> dict[str, Any]:
        """The node's counters (``cluster``, ``metrics``, ``pubsub``) and channel views,
        asked with SIGUSR1."""
        assert self.proc is not None and self.running, f"node {self.node_id} is not running"
        while not self._stats.empty():
            self._stats.get_nowait()
        self.proc.send_signal(signal.SIGUSR1)
        async with asyncio.timeout(timeout):
            return await self._stats.get()

    async def _wait(self, timeout: float) -> int:
        assert self.proc is not None
        async with asyncio.timeout(timeout):
            returncode = await self.proc.wait()
        _live_pids.discard(self.proc.pid)
        if self._reader is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(2.0):
                    await self._reader
        self.returncode = returncode
        return returncode

    async def kill(self) -> None:
        """SIGKILL: the node vanishes without a word to anyone."""
        if self.proc is None:
            return
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
        await self._wait(10.0)

    async def terminate(self, timeout: float = 15.0) -> int:
        """SIGTERM (graceful shutdown) and wait for the exit code; SIGKILL after ``timeout``."""
        assert self.proc is not None
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.terminate()
        try:
            return await self._wait(timeout)
        except TimeoutError:
            await self.kill()
            raise AssertionError(
                f"node {self.node_id} ignored SIGTERM for {timeout} s:\n{self.log_tail()}"
            ) from None

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])


# -- throwaway redis-server ----------------------------------------------------------------


class RedisProcess:
    """One ``redis-server`` on 127.0.0.1 in its own temporary directory; no persistence
    unless ``persistent`` (an append-only file synced on every write, so a SIGKILL and
    restart keeps the data, as a production Redis holding history would)."""

    def __init__(self, *, persistent: bool = False) -> None:
        self.persistent = persistent
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="pondsocket-cluster-redis-"))
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def _spawn(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not on PATH")
        args = [
            binary,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "yes" if self.persistent else "no",
            "--appendfsync", "always",
            "--dir", str(self.dir),
            "--logfile", str(self.dir / "redis.log"),
        ]  # fmt: skip
        self.proc = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=_die_with_parent,
        )
        _live_pids.add(self.proc.pid)

    async def start(self, timeout: float = 10.0) -> None:
        """Start (or restart, on the same port) and wait until it answers PING."""
        self._spawn()
        deadline = time.monotonic() + timeout
        while not await asyncio.to_thread(redis_ping, self.port):
            if time.monotonic() > deadline or self.proc is None or self.proc.poll() is not None:
                self.kill()
                log = self.dir / "redis.log"
                tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
                raise RuntimeError(f"redis-server on {self.port} did not start:\n{tail}")
            await asyncio.sleep(0.02)

    def kill(self) -> None:
        """SIGKILL: the broker vanishes; its clients see their connections drop."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        with contextlib.suppress(OSError):
            proc.kill()
        proc.wait(10)
        _live_pids.discard(proc.pid)

    def cleanup(self) -> None:
        self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


# -- WebSocket client ----------------------------------------------------------------------


class WsClient:
    """A PondSocket client speaking the wire protocol directly; keeps every frame received.

    ``self.id`` is the connection id from the CONNECT frame: the user id in every channel.
    """

    _ids = itertools.count(1)

    def __init__(self, ws: ClientConnection, name: str) -> None:
        self.ws = ws
        self.name = name
        self.id = ""
        self.frames: list[Frame] = []
        self.closed = False
        self._changed = asyncio.Condition()
        self._reader = asyncio.get_running_loop().create_task(self._read(), name=f"wsclient-{name}")

    @classmethod
    async def connect(cls, url: str, name: str, timeout: float = DEFAULT_WAIT) -> WsClient:
        async with asyncio.timeout(timeout):
            ws = await connect(
                f"{url}?{urlencode({'name': name})}", max_size=None, compression=None
            )
        client = cls(ws, name)
        frame = await client.wait_for(
            lambda f: f["action"] == "CONNECT" and f["event"] == "CONNECTION", timeout=timeout
        )
        client.id = frame["payload"]["connectionId"]
        return client

    async def _read(self) -> None:
        try:
            async for message in self.ws:
                frame = json.loads(message)
                frame["_at"] = time.monotonic()
                async with self._changed:
                    self.frames.append(frame)
                    self._changed.notify_all()
        except ConnectionClosed:
            pass
        finally:
            self.closed = True
            async with self._changed:
                self._changed.notify_all()

    # -- sending ---------------------------------------------------------------------------

    async def _send(
        self, action: str, event: str, channel: str, payload: dict[str, Any] | None
    ) -> str:
        request_id = f"{self.name}-{next(self._ids)}-{uuid.uuid4().hex[:6]}"
        message = {
            "action": action,
            "event": event,
            "channelName": channel,
            "requestId": request_id,
            "payload": payload or {},
        }
        await self.ws.send(json.dumps(message))
        return request_id

    async def join(
        self,
        channel: str = ROOM,
        params: dict[str, Any] | None = None,
        timeout: float = DEFAULT_WAIT,
    ) -> Frame:
        """Join and return the answer: SYSTEM/ACKNOWLEDGE, or the ERROR refusal."""
        request_id = await self._send("JOIN_CHANNEL", "JOIN_CHANNEL", channel, params)
        return await self.wait_for(lambda f: f.get("requestId") == request_id, timeout=timeout)

    async def leave(self, channel: str = ROOM) -> None:
        await self._send("LEAVE_CHANNEL", "LEAVE_CHANNEL", channel, {})

    async def send(
        self, event: str, payload: dict[str, Any] | None = None, channel: str = ROOM
    ) -> str:
        """Send an event; returns its request id."""
        return await self._send("BROADCAST", event, channel, payload)

    async def request(
        self,
        event: str,
        payload: dict[str, Any] | None = None,
        channel: str = ROOM,
        timeout: float = DEFAULT_WAIT,
    ) -> Frame:
        """Send an event and return the reply addressed to it (SYSTEM or ERROR frame)."""
        request_id = await self.send(event, payload, channel)
        return await self.wait_for(
            lambda f: f.get("requestId") == request_id and f["action"] in ("SYSTEM", "ERROR"),
            timeout=timeout,
        )

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            async with asyncio.timeout(3.0):
                await self.ws.close()
        if not self._reader.done():
            self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._reader

    # -- receiving -------------------------------------------------------------------------

    def mark(self) -> int:
        """The number of frames received so far: pass it as ``since`` to see only newer ones."""
        return len(self.frames)

    def find(self, predicate: Predicate, since: int = 0) -> Frame | None:
        for frame in self.frames[since:]:
            if predicate(frame):
                return frame
        return None

    def frames_for(
        self,
        *,
        action: str | None = None,
        event: str | None = None,
        channel: str | None = ROOM,
        since: int = 0,
    ) -> list[Frame]:
        return [
            f
            for f in self.frames[since:]
            if (action is None or f["action"] == action)
            and (event is None or f["event"] == event)
            and (channel is None or f["channelName"] == channel)
        ]

    async def wait_for(
        self, predicate: Predicate, timeout: float = DEFAULT_WAIT, since: int = 0
    ) -> Frame:
        """The first frame (from index ``since``) matching ``predicate``, waiting for it."""
        checked = since
        try:
            async with asyncio.timeout(timeout), self._changed:
                while True:
                    for frame in self.frames[checked:]:
                        if predicate(frame):
                            return frame
                    checked = max(checked, len(self.frames))
                    if self.closed:
                        raise AssertionError(f"{self.name}: connection closed while waiting")
                    await self._changed.wait()
        except TimeoutError:
            recent = "\n".join(json.dumps(_short(f)) for f in self.frames[-10:])
            raise AssertionError(
                f"{self.name}: no matching frame within {timeout} s; last frames:\n{recent}"
            ) from None

    async def wait_event(
        self, event: str, timeout: float = DEFAULT_WAIT, since: int = 0, **payload: Any
    ) -> Frame:
        """The first BROADCAST/SYSTEM frame of ``event`` whose payload has the given items."""
        return await self.wait_for(
            lambda f: (
                f["event"] == event
                and f["action"] != "PRESENCE"
                and all(f["payload"].get(k) == v for k, v in payload.items())
            ),
            timeout=timeout,
            since=since,
        )

    def presence_names(self, channel: str = ROOM) -> list[str]:
        """Names in the latest full presence list this client received."""
        frames = self.frames_for(action="PRESENCE", channel=channel)
        if not frames:
            return []
        return sorted(p["name"] for p in frames[-1]["payload"]["presence"])

    async def wait_presence(
        self, names: list[str], timeout: float = DEFAULT_WAIT, channel: str = ROOM
    ) -> None:
        """Wait until the latest presence list holds exactly ``names``."""
        expected = sorted(names)
        try:
            async with asyncio.timeout(timeout), self._changed:
                while self.presence_names(channel) != expected:
                    if self.closed:
                        raise AssertionError(f"{self.name}: connection closed")
                    await self._changed.wait()
        except TimeoutError:
            raise AssertionError(
                f"{self.name}: presence {self.presence_names(channel)} != {expected} "
                f"after {timeout} s"
            ) from None

    async def silent(self, predicate: Predicate, duration: float, since: int = 0) -> None:
        """Assert nothing matching ``predicate`` arrives within ``duration`` seconds."""
        await asyncio.sleep(duration)
        frame = self.find(predicate, since)
        assert frame is None, f"{self.name}: unexpected frame {_short(frame)}"


def _short(frame: Frame | None) -> Any:
    if frame is None:
        return None
    text = json.dumps(frame.get("payload"))
    payload = text if len(text) < 300 else text[:300] + f"... ({len(text)} chars)"
    return {k: v for k, v in frame.items() if k != "payload"} | {"payload": payload}
