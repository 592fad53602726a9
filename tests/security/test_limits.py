"""Resource limits, tried as an attacker would: many channels, a join flood, many
connections in total and from one address (over real sockets), a forged
``X-Forwarded-For``, and slow handshakes on the standalone server and under uvicorn."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import resource
import sys
import time
from collections.abc import AsyncIterator

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus

from pondsocket import ConnectionContext, PondOptions, PondSocket
from pondsocket.core.limits import auto_max_connections
from pondsocket.testing import TestClient
from pondsocket.transports.standalone import StandaloneServer


def app(options: PondOptions | None = None) -> PondSocket:
    pond = PondSocket(options)
    endpoint = pond.create_endpoint("/socket", lambda ctx: ctx.accept())
    endpoint.create_channel("/room/:id", lambda ctx: ctx.accept())
    return pond


async def test_channels_per_connection_are_bounded() -> None:
    pond = app(PondOptions(max_channels_per_connection=5))
    conn = await TestClient(pond).connect("/socket")
    for i in range(5):
        assert (await conn.join(f"/room/{i}"))["event"] == "ACKNOWLEDGE"
    refused = await conn.join("/room/5")
    assert (refused["action"], refused["event"]) == ("SYSTEM", "UNAUTHORIZED")
    assert refused["payload"]["code"] == "TOO_MANY_CHANNELS"
    assert pond.metrics.joins_limited == 1
    await conn.leave("/room/0")  # a place is free again
    assert (await conn.join("/room/5"))["event"] == "ACKNOWLEDGE"


def test_the_default_channel_limit_is_128() -> None:
    assert PondOptions().max_channels_per_connection == 128


async def test_a_join_flood_is_refused_apart_from_the_message_rate() -> None:
    pond = app(PondOptions(join_rate_limit=2.0, join_rate_burst=3, rate_limit=None))
    conn = await TestClient(pond).connect("/socket")
    answers = [(await conn.join(f"/room/{i}"))["payload"] for i in range(5)]
    assert [a.get("code") for a in answers] == [None, None, None, "RATE_LIMITED", "RATE_LIMITED"]
    assert pond.metrics.joins_limited == 2
    await asyncio.sleep(0.6)  # 2 joins/s: one more token
    assert (await conn.join("/room/9"))["event"] == "ACKNOWLEDGE"


@contextlib.asynccontextmanager
async def served(pond: PondSocket) -> AsyncIterator[str]:
    async with StandaloneServer(pond, "127.0.0.1", 0) as server:
        yield f"ws://127.0.0.1:{server.port}/socket"


async def status_of(url: str, **kwargs: object) -> int | ClientConnection:
    try:
        return await connect(url, **kwargs)  # type: ignore[arg-type]
    except InvalidStatus as exc:
        return exc.response.status_code


async def test_connections_in_total_are_bounded_with_one_log_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    pond = app(PondOptions(max_connections=5, max_connections_per_address=None))
    async with served(pond) as url:
        clients = [await connect(url) for _ in range(5)]
        with caplog.at_level(logging.WARNING, "pondsocket.limits"):
            refused = [await status_of(url) for _ in range(20)]
        assert refused == [503] * 20
        assert pond.metrics.connections_limited == 20
        lines = [r for r in caplog.records if "max_connections (5)" in r.getMessage()]
        assert len(lines) == 1
        await clients.pop().close()
        await asyncio.sleep(0.1)
        again = await status_of(url)
        assert not isinstance(again, int)  # the freed place is taken
        for client in [*clients, again]:
            await client.close()


async def test_connections_per_address_are_bounded_and_proxies_are_trusted_only_if_listed() -> None:
    pond = app(PondOptions(max_connections_per_address=3))
    seen: list[object] = []
    endpoint = pond.endpoints[0]
    original = endpoint._handler

    def record(ctx: ConnectionContext) -> object:
        seen.append(ctx.client)
        return original(ctx)

    endpoint._handler = record
    async with served(pond) as url:
        mine = [await connect(url) for _ in range(3)]
        assert await status_of(url) == 429
        # A trusted proxy (loopback, the default) speaking for other clients: not counted
        # against its own address.
        proxied = [
            await connect(url, additional_headers={"X-Forwarded-For": f"203.0.113.{i}"})
            for i in range(5)
        ]
        assert ("203.0.113.4", 0) in seen
        forwarded = await connect(url, additional_headers={"Forwarded": 'for="[2001:db8::7]:99"'})
        assert seen[-1] == ("2001:db8::7", 0)
        for client in [*mine, *proxied, forwarded]:
            await client.close()
    # Not listed: the header is the client's word and is ignored.
    pond = app(PondOptions(max_connections_per_address=1, trusted_proxies=None))
    async with served(pond) as url:
        first = await connect(url)
        spoof = {"X-Forwarded-For": "198.51.100.1"}
        assert await status_of(url, additional_headers=spoof) == 429
        await first.close()


def test_auto_max_connections_keeps_descriptors_aside() -> None:
    assert auto_max_connections(20_000) == 18_000
    assert auto_max_connections(256) == 192
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert PondSocket().limits.max_total == auto_max_connections(soft)


SERVER = """
import logging, resource, sys
resource.setrlimit(resource.RLIMIT_NOFILE, (256, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
from pondsocket import PondOptions, PondSocket
pond = PondSocket(PondOptions(max_connections_per_address=None))
pond.create_endpoint("/socket", lambda ctx: ctx.accept())
pond.run("127.0.0.1", int(sys.argv[1]), handle_sigterm=True)
"""


async def test_a_descriptor_exhaustion_attack_is_refused_before_the_limit(
    unused_tcp_port: int,
) -> None:
    # 19,984 connections used to exhaust the process's descriptors, silently. A server
    # with `ulimit -n 256` now takes 192 (auto) and refuses the rest with 503.
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        SERVER,
        str(unused_tcp_port),
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    url = f"ws://127.0.0.1:{unused_tcp_port}/socket"
    clients: list[ClientConnection] = []
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                clients.append(await connect(url))
                break
            except OSError:
                assert time.monotonic() < deadline, "the server did not start"
                await asyncio.sleep(0.1)
        statuses: list[int] = []
        for _ in range(300):
            result = await status_of(url, open_timeout=5)
            if isinstance(result, int):
                statuses.append(result)
            else:
                clients.append(result)
        assert len(clients) == 192
        assert statuses == [503] * (301 - 192)
        await clients.pop().close()
        await asyncio.sleep(0.2)
        clients.append(await connect(url))  # still serving
    finally:
        for client in clients:
            await client.close()
        proc.terminate()
        _, err = await proc.communicate()
    log = err.decode()
    assert log.count("max_connections (192) reached") == 1, log[-2000:]
    assert "ulimit -n" in log


async def test_a_slow_connection_handler_is_cut_at_the_handshake_timeout() -> None:
    pond = PondSocket(PondOptions(handshake_timeout=0.3))

    async def never(ctx: ConnectionContext) -> None:
        await asyncio.sleep(3600)

    pond.create_endpoint("/socket", never)
    async with served(pond) as url:
        started = time.monotonic()
        assert await status_of(url) == 408
        assert time.monotonic() - started < 3
        assert pond.limits.total == 0


async def raw_partial_request(port: int) -> float:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /socket HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # never finished
    started = time.monotonic()
    async with asyncio.timeout(20):
        await reader.read()
    writer.close()
    return time.monotonic() - started


async def test_half_sent_handshakes_are_closed_on_standalone_and_uvicorn(
    unused_tcp_port: int,
) -> None:
    import uvicorn

    pond = app(PondOptions(handshake_timeout=1.0))
    async with StandaloneServer(pond, "127.0.0.1", 0) as server:
        assert await raw_partial_request(server.port) < 6
    # uvicorn alone held such a request for more than 60 s.
    asgi_pond = app(PondOptions(handshake_timeout=1.0))
    config = asgi_pond.asgi.uvicorn_config(
        host="127.0.0.1", port=unused_tcp_port, log_level="warning", lifespan="on"
    )
    uv = uvicorn.Server(config)
    task = asyncio.create_task(uv.serve())
    try:
        while not uv.started:
            await asyncio.sleep(0.05)
        held = await asyncio.gather(*(raw_partial_request(unused_tcp_port) for _ in range(50)))
        assert max(held) < 4
        async with connect(f"ws://127.0.0.1:{unused_tcp_port}/socket") as ws:  # still serving
            assert b"CONNECTION" in str(await ws.recv()).encode()
    finally:
        uv.should_exit = True
        await task
