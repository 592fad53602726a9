"""Log volume under attack: what a hostile client or broker can make the server write is
bounded (one line per interval per kind, the first traceback kept), and says the cause."""

from __future__ import annotations

import asyncio
import logging

import pytest
from websockets.asyncio.client import connect

from pondsocket import EventContext, PondSocket
from pondsocket.pubsub import InMemoryPubSub
from pondsocket.pubsub.memory import InMemoryBroker
from pondsocket.testing import TestClient
from pondsocket.transports.standalone import StandaloneServer


def chat() -> PondSocket:
    pond = PondSocket()
    endpoint = pond.create_endpoint("/socket", lambda ctx: ctx.accept())
    lobby = endpoint.create_channel("/chat/:room", lambda ctx: ctx.accept())

    @lobby.on_message("message")
    def message(ctx: EventContext) -> None:  # the README's handler
        ctx.broadcast("message", {"text": ctx.payload["text"]})

    return pond


async def test_a_handler_failing_on_every_message_logs_one_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    pond = chat()
    conn = await TestClient(pond).connect("/socket")
    await conn.join("/chat/lobby")
    with caplog.at_level(logging.INFO, "pondsocket"):
        for _ in range(500):
            await conn.send("/chat/lobby", "message", {})
    records = [r for r in caplog.records if r.name.startswith("pondsocket")]
    assert pond.metrics.handler_errors == 500
    assert len(records) <= 2, [r.getMessage() for r in records]
    assert records[0].exc_info is not None and "KeyError" in caplog.text
    assert len(caplog.text.splitlines()) < 30  # one traceback, not 500
    errors = conn.frames_for("/chat/lobby", event="HANDLER_ERROR")
    assert len(errors) == 500  # every client still hears about each failure


async def test_invalid_envelopes_are_one_line_per_interval(
    caplog: pytest.LogCaptureFixture,
) -> None:
    broker = InMemoryBroker()
    bus = InMemoryPubSub(broker)
    pond = PondSocket(pubsub=bus)
    endpoint = pond.create_endpoint("/socket", lambda ctx: ctx.accept())
    endpoint.create_channel("/chat/:room", lambda ctx: ctx.accept())
    conn = await TestClient(pond).connect("/socket")
    await conn.join("/chat/lobby")
    channel = endpoint.get_channel("/chat/lobby")
    assert channel is not None
    topic = pond.cluster.topic_of(channel)
    attacker = InMemoryPubSub(broker)
    await asyncio.sleep(0.05)
    with caplog.at_level(logging.WARNING, "pondsocket"):
        for i in range(2000):
            await attacker.publish(topic, b'{"protocol": "pondsocket.distributed", "n": %d}' % i)
        await asyncio.sleep(0.1)
    assert pond.cluster.stats.invalid == 2000
    lines = [r for r in caplog.records if "invalid envelope" in r.getMessage()]
    assert len(lines) == 1, len(lines)
    await pond.shutdown(timeout=1)
    await attacker.close()
    await bus.close()


async def test_the_standalone_server_logs_nothing_per_connection(
    caplog: pytest.LogCaptureFixture,
) -> None:
    pond = chat()
    async with StandaloneServer(pond, "127.0.0.1", 0) as server:
        with caplog.at_level(logging.INFO):
            for _ in range(50):
                async with connect(f"ws://127.0.0.1:{server.port}/socket") as ws:
                    await ws.recv()
            await asyncio.sleep(0.1)
    per_connection = [r for r in caplog.records if "connection" in r.getMessage().lower()]
    assert per_connection == [], [r.getMessage() for r in per_connection[:5]]
