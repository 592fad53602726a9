"""SIGTERM to a ``pondsocket serve --redis`` node whose Redis is gone (killed: refused
connections; frozen: a half-open link nothing answers) while a client floods: the node
must not wait on the broker. Every client gets 1001 and the process exits within a few
seconds (it took 10-20 s when a session waited for room in the cluster outbox, the
outbox flush waited 5 s and the Redis publisher's close another 5 s). The time is printed
(``pytest -s``)."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
import time
from pathlib import Path

import orjson
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from tests.redis.servers import RedisServer

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
EXIT_BOUND = 4.0
"""Seconds from SIGTERM to exit. The fixed costs with a frozen broker are one flush stall
(1 s) and the process's own exit; before the fix this was 10-20 s."""
LISTENING = re.compile(r"(?:listening on ws|running on http)://127\.0\.0\.1:(\d+)")


class Node:
    """A ``pondsocket serve`` subprocess; its stderr is collected as it comes."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.lines: list[str] = []
        self.port: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._reader = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        assert self.proc.stderr is not None
        while line := await self.proc.stderr.readline():
            text = line.decode(errors="replace").rstrip()
            self.lines.append(text)
            found = LISTENING.search(text)
            if found and not self.port.done():
                self.port.set_result(int(found.group(1)))
        if not self.port.done():
            self.port.set_exception(AssertionError("\n".join(self.lines[-30:])))

    async def stop(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()
        await self._reader


async def _serve(url: str, asgi: bool) -> Node:
    command = [sys.executable, "-m", "pondsocket", "serve", "tests.redis.flood_app:pond"]
    command += ["--port", "0", "--redis", url, "--ping-interval", "0"]
    proc = await asyncio.create_subprocess_exec(
        *command,
        *(["--asgi"] if asgi else []),
        cwd=ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    return Node(proc)


def _message(action: str, event: str, room: str, payload: object) -> str:
    frame = {
        "action": action,
        "event": event,
        "channelName": room,
        "requestId": "r",
        "payload": payload,
    }
    return orjson.dumps(frame).decode()


async def _member(port: int, room: str) -> ClientConnection:
    ws = await connect(f"ws://127.0.0.1:{port}/socket", ping_interval=None, close_timeout=10)
    await ws.recv()  # CONNECTION
    await ws.send(_message("JOIN_CHANNEL", "JOIN_CHANNEL", room, {}))
    assert orjson.loads(await ws.recv())["event"] == "ACKNOWLEDGE"
    return ws


async def _flood(ws: ClientConnection) -> None:
    frame = _message("BROADCAST", "shout", "/room/flood", {"text": "x" * 200})
    try:
        while True:
            for _ in range(100):
                await ws.send(frame)
            await asyncio.sleep(0)  # send() yields only when its buffer is full
    except ConnectionClosed:
        pass


async def _until_closed(ws: ClientConnection) -> int | None:
    try:
        while True:
            await ws.recv()
    except ConnectionClosed:
        pass
    return ws.close_code


@pytest.mark.parametrize(
    ("fault", "asgi"),
    [("killed", False), ("frozen", False), ("frozen", True)],
    ids=["killed-standalone", "frozen-standalone", "frozen-asgi"],
)
async def test_sigterm_with_the_broker_gone_closes_everyone_1001_and_exits_quickly(
    redis_server: RedisServer, fault: str, asgi: bool
) -> None:
    node = await _serve(redis_server.url, asgi)
    try:
        async with asyncio.timeout(20):
            port = await node.port
        idle = await _member(port, "/room/idle")
        flooder = await _member(port, "/room/flood")
        flooding = asyncio.ensure_future(_flood(flooder))
        await asyncio.sleep(0.5)  # the broker is taking the flood
        if fault == "killed":
            redis_server.kill()
        else:
            redis_server.freeze()
        await asyncio.sleep(1.5)  # the queues towards the broker fill, the flooder is held
        assert not flooding.done(), (flooder.close_code, "\n".join(node.lines[-20:]))
        closes = [asyncio.ensure_future(_until_closed(ws)) for ws in (idle, flooder)]
        started = time.monotonic()
        node.proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(30):  # a bound against hangs; the assertion is below
            returncode = await node.proc.wait()
        took = time.monotonic() - started
        print(
            f"\n{fault} broker, {'asgi' if asgi else 'standalone'}: exit {took:.2f} s after SIGTERM"
        )
        async with asyncio.timeout(10):
            codes = await asyncio.gather(*closes)
            await flooding
        log = "\n".join(node.lines[-20:])
        assert codes == [1001, 1001], log
        assert took < EXIT_BOUND, f"exit took {took:.1f} s after SIGTERM\n{log}"
        if not asgi:  # uvicorn re-raises the SIGTERM it handled: -15 there
            assert returncode == 0, log
        assert "aborting them" not in log  # no connection outlived the graceful close
    finally:
        redis_server.thaw()
        await node.stop()
