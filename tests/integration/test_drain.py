"""``--drain-grace`` (``PondOptions.drain_grace``) on SIGTERM, on both transports: for the
grace period ``/readyz`` answers 503 ``draining`` while a joined client keeps getting
broadcasts and a new client can still connect and join (a balancer may not have noticed
yet); then every socket is closed with 1001 and the process exits."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
import time
from pathlib import Path

import httpx
import orjson
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

ROOT = Path(__file__).resolve().parents[2]
GRACE = 2.0
LISTENING = re.compile(r"(?:listening on ws|running on http)://127\.0\.0\.1:(\d+)")


def _frame(action: str, event: str, payload: object) -> str:
    message = {
        "action": action,
        "event": event,
        "channelName": "/room/1",
        "requestId": "r",
        "payload": payload,
    }
    return orjson.dumps(message).decode()


async def _member(port: int) -> ClientConnection:
    ws = await connect(f"ws://127.0.0.1:{port}/socket", ping_interval=None)
    await ws.recv()  # CONNECTION
    await ws.send(_frame("JOIN_CHANNEL", "JOIN_CHANNEL", {}))
    while orjson.loads(await ws.recv())["event"] != "ACKNOWLEDGE":
        pass
    return ws


async def _shouted(ws: ClientConnection, text: str) -> None:
    async with asyncio.timeout(5):
        while True:
            frame = orjson.loads(await ws.recv())
            if frame["event"] == "shouted" and frame["payload"] == {"text": text}:
                return


async def _closed(ws: ClientConnection) -> tuple[int | None, float]:
    try:
        while True:
            await ws.recv()
    except ConnectionClosed:
        pass
    return ws.close_code, time.monotonic()


async def _port(stderr: asyncio.StreamReader, lines: list[str]) -> int:
    async with asyncio.timeout(20):
        while line := await stderr.readline():
            lines.append(line.decode(errors="replace").rstrip())
            if found := LISTENING.search(lines[-1]):
                return int(found.group(1))
    raise AssertionError("\n".join(lines))


@pytest.mark.parametrize("asgi", [False, True], ids=["standalone", "asgi"])
async def test_sigterm_drains_then_closes_everyone_1001(asgi: bool) -> None:
    command = [sys.executable, "-m", "pondsocket", "serve", "tests.integration.drain_app:pond"]
    command += ["--port", "0", "--drain-grace", str(GRACE), *(["--asgi"] if asgi else [])]
    proc = await asyncio.create_subprocess_exec(
        *command,
        cwd=ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stderr is not None
    lines: list[str] = []
    try:
        port = await _port(proc.stderr, lines)
        base = f"http://127.0.0.1:{port}"
        first = await _member(port)
        async with httpx.AsyncClient(base_url=base) as http:
            assert (await http.get("/readyz")).status_code == 200
            started = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            closing = asyncio.ensure_future(_closed_after_traffic(first, port))
            ready = await http.get("/readyz")
            while ready.status_code == 200 and time.monotonic() - started < 1:
                await asyncio.sleep(0.02)
                ready = await http.get("/readyz")
            assert ready.status_code == 503
            assert ready.json() == {"status": "not ready", "reason": "draining"}
            assert (await http.get("/healthz")).status_code == 200  # alive while draining
        async with asyncio.timeout(GRACE + 15):
            (code, closed_at), late_code = await closing
        assert (code, late_code) == (1001, 1001)
        assert closed_at - started >= GRACE * 0.9, "closed before the grace period ended"
        async with asyncio.timeout(15):
            await proc.wait()
        log = "\n".join(lines)
        assert "aborting them" not in log
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def _closed_after_traffic(
    first: ClientConnection, port: int
) -> tuple[tuple[int | None, float], int | None]:
    """During the drain: a newcomer connects and joins, both see each other's shouts; then
    both are closed by the server."""
    await asyncio.sleep(0.3)
    late = await _member(port)
    await late.send(_frame("BROADCAST", "shout", {"text": "from the newcomer"}))
    await _shouted(first, "from the newcomer")
    await first.send(_frame("BROADCAST", "shout", {"text": "from the first"}))
    await _shouted(late, "from the first")
    first_closed, late_closed = await asyncio.gather(_closed(first), _closed(late))
    return first_closed, late_closed[0]
