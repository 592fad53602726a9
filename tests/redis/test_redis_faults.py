"""Faults against a throwaway redis-server: SIGKILL and restart under traffic, a full
outbox during an outage, a dropped subscriber connection, a frozen (half-open) server,
reader crashes, closing during an outage, messages Redis refuses. The reconnection time is
printed (``pytest -s``); the only time limits are generous bounds against hangs."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import pytest

from pondsocket.pubsub import BusState
from pondsocket.pubsub.redis import PubSubUnavailableError, RedisPubSub
from tests.pubsub_conformance import Inbox, quiet
from tests.redis.conftest import wait_until
from tests.redis.servers import RedisServer

pytestmark = pytest.mark.slow

HANG_BOUND = 15.0  # seconds; a bound against hangs, not a performance target


class States:
    """Records BusState notifications with their time."""

    def __init__(self, bus: RedisPubSub) -> None:
        self.seen: list[tuple[BusState, float]] = []
        bus.add_state_listener(lambda state: self.seen.append((state, time.monotonic())))

    @property
    def states(self) -> list[BusState]:
        return [state for state, _ in self.seen]

    async def wait(self, *expected: BusState) -> float:
        """Wait until exactly ``expected`` was notified; returns when the last one came."""
        await wait_until(
            lambda: len(self.seen) >= len(expected), f"states {expected}", timeout=HANG_BOUND
        )
        assert self.states == list(expected)
        return self.seen[-1][1]


@asynccontextmanager
async def connected_url(url: str, **options: Any) -> AsyncIterator[RedisPubSub]:
    bus = await RedisPubSub.connect(url, **options)
    try:
        yield bus
    finally:
        await bus.close()


def connected(server: RedisServer, **options: Any) -> AbstractAsyncContextManager[RedisPubSub]:
    return connected_url(server.url, **options)


def deduplicated(values: list[int]) -> list[int]:
    """First occurrences only: a batch cut off by the outage may be sent again whole."""
    return list(dict.fromkeys(values))


async def test_sigkill_and_restart_under_traffic(redis_server: RedisServer) -> None:
    async with connected(redis_server, health_check_interval=1.0) as bus:
        states = States(bus)
        exact, pattern, gone, traffic = Inbox(), Inbox(), Inbox(), Inbox()
        await bus.subscribe("pond.exact", exact)
        await bus.subscribe("pond.room.*", pattern)
        gone_subscription = await bus.subscribe("pond.gone", gone)
        await bus.subscribe("pond.traffic", traffic)

        sent: list[int] = []

        async def produce() -> None:
            for i in range(1_000_000):
                await bus.publish("pond.traffic", b"%d" % i)
                sent.append(i)
                await asyncio.sleep(0.005)

        producer = asyncio.create_task(produce())
        await traffic.wait_for(20)

        redis_server.kill()
        await states.wait(BusState.DISCONNECTED)
        assert not bus.connected
        # While Redis is down: publishes are accepted (buffered), subscription changes
        # are recorded and return at once.
        for i in range(5):
            await bus.publish("pond.exact", b"during-%d" % i)
            await bus.publish("pond.room.a", b"during-%d" % i)
        new = Inbox()
        async with asyncio.timeout(1):
            await bus.subscribe("pond.new", new)
            await gone_subscription.cancel()
        await asyncio.sleep(1.0)

        spawned_at = time.monotonic()
        answered_at = await redis_server.astart()
        reconnected_at = await states.wait(BusState.DISCONNECTED, BusState.RECONNECTED)
        print(
            f"\nRECONNECTED {reconnected_at - answered_at:+.3f} s after the restarted Redis "
            f"first answered PING (polled every 5 ms; {answered_at - spawned_at:.3f} s after "
            "it was spawned)"
        )
        assert bus.connected

        # Buffered during the outage: delivered after the subscriptions were restored.
        assert [d for _, d in await exact.wait_for(5)] == [b"during-%d" % i for i in range(5)]
        assert [d for _, d in await pattern.wait_for(5)] == [b"during-%d" % i for i in range(5)]
        # Published after the restart: delivered to every kind of subscription.
        await bus.publish("pond.exact", b"after")
        await bus.publish("pond.room.b", b"after")
        await bus.publish("pond.new", b"after")
        await bus.publish("pond.gone", b"after")
        assert (await exact.wait_for(6))[-1] == ("pond.exact", b"after")
        assert (await pattern.wait_for(6))[-1] == ("pond.room.b", b"after")
        assert await new.wait_for(1) == [("pond.new", b"after")]

        producer.cancel()
        await asyncio.gather(producer, return_exceptions=True)
        last = sent[-1]
        await wait_until(
            lambda: any(d == b"%d" % last for _, d in traffic.items), "the last traffic message"
        )
        received = deduplicated([int(d) for _, d in traffic.items])
        assert received == sorted(received)  # per-topic order survived the outage
        await quiet()
        assert gone.items == []
        assert bus.stats.disconnects == 1 and bus.stats.reconnects == 1
        assert bus.stats.reader_restarts == 0


async def test_full_outbox_during_an_outage_fails_loudly(redis_server: RedisServer) -> None:
    async with connected(redis_server, outbox_size=3, publish_timeout=0.3) as bus:
        states = States(bus)
        inbox = Inbox()
        await bus.subscribe("pond.t", inbox)
        redis_server.kill()
        await states.wait(BusState.DISCONNECTED)
        accepted = 0
        with pytest.raises(PubSubUnavailableError, match=r"outbox has been full.*unreachable"):
            for i in range(10):
                await bus.publish("pond.t", b"%d" % i)
                accepted += 1
        # The outbox (3) plus the batch the flusher took and holds until Redis is back:
        assert 3 < accepted <= 3 + bus.options.publish_batch_size
        assert bus.stats.publish_rejected == 1
        await redis_server.astart()
        await states.wait(BusState.DISCONNECTED, BusState.RECONNECTED)
        items = await inbox.wait_for(accepted)
        assert [d for _, d in items] == [b"%d" % i for i in range(accepted)]


async def test_client_kill_of_the_subscriber_connection(redis_server: RedisServer) -> None:
    async with connected(redis_server) as bus:
        states = States(bus)
        exact, pattern = Inbox(), Inbox()
        await bus.subscribe("pond.exact", exact)
        await bus.subscribe("pond.room.*", pattern)
        # Redis drops the subscriber connection; the client is not told beforehand.
        redis_server.cli("client", "kill", "type", "pubsub")
        await states.wait(BusState.DISCONNECTED, BusState.RECONNECTED)
        await bus.publish("pond.exact", b"1")
        await bus.publish("pond.room.x", b"2")
        assert await exact.wait_for(1) == [("pond.exact", b"1")]
        assert await pattern.wait_for(1) == [("pond.room.x", b"2")]
        sub, psub = _subscriptions(redis_server)
        assert (sub, psub) == (1, 1)  # restored once, not duplicated


async def test_frozen_server_is_detected_by_health_checks(redis_server: RedisServer) -> None:
    async with connected(redis_server, health_check_interval=0.5, connect_timeout=1.0) as bus:
        states = States(bus)
        inbox = Inbox()
        await bus.subscribe("pond.t", inbox)
        redis_server.freeze()  # SIGSTOP: the TCP connection stays open, nothing answers
        try:
            await states.wait(BusState.DISCONNECTED)
            assert bus.stats.health_check_failures >= 1
        finally:
            redis_server.thaw()
        await states.wait(BusState.DISCONNECTED, BusState.RECONNECTED)
        await bus.publish("pond.t", b"after")
        assert await inbox.wait_for(1) == [("pond.t", b"after")]


async def test_reader_crash_is_logged_counted_and_restarted(
    redis_server: RedisServer,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with connected(redis_server) as bus:
        states = States(bus)
        inbox = Inbox()
        await bus.subscribe("pond.t", inbox)
        dispatch: Callable[..., None] = bus._dispatch

        def explode_once(kind: Any, wire: bytes, channel: bytes, data: bytes) -> None:
            if data == b"boom":
                monkeypatch.setattr(bus, "_dispatch", dispatch)
                raise RuntimeError("injected reader bug")
            dispatch(kind, wire, channel, data)

        monkeypatch.setattr(bus, "_dispatch", explode_once)
        await bus.publish("pond.t", b"boom")
        await states.wait(BusState.DISCONNECTED, BusState.RECONNECTED)
        assert bus.stats.reader_restarts == 1
        assert any(
            r.levelno == logging.ERROR
            and r.exc_info
            and "injected reader bug" in str(r.exc_info[1])
            for r in caplog.records
        )
        await bus.publish("pond.t", b"after")
        assert await inbox.wait_for(1) == [("pond.t", b"after")]


async def test_reader_task_that_dies_is_restarted(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    async with connected(redis_server, backoff_cap=0.2) as bus:
        states = States(bus)
        inbox = Inbox()
        await bus.subscribe("pond.t", inbox)
        session = next(iter(bus._sessions.values()))

        class Broken:
            def compute(self, failures: int) -> float:
                session._backoff = original
                raise RuntimeError("injected: the reader task itself dies")

        original, session._backoff = session._backoff, Broken()  # type: ignore[assignment]
        redis_server.cli("client", "kill", "type", "pubsub")
        await states.wait(BusState.DISCONNECTED, BusState.RECONNECTED)
        assert bus.stats.reader_restarts == 1
        assert any("died; restarting" in r.getMessage() for r in caplog.records)
        await bus.publish("pond.t", b"after")
        assert await inbox.wait_for(1) == [("pond.t", b"after")]


def _subscriptions(server: RedisServer) -> tuple[int, int]:
    """(channels, patterns) held by the server's pub/sub clients, from CLIENT LIST."""
    sub = psub = 0
    for line in server.cli("client", "list", "type", "pubsub").splitlines():
        fields = dict(item.split("=", 1) for item in line.split() if "=" in item)
        sub += int(fields["sub"])
        psub += int(fields["psub"])
    return sub, psub


def _our_tasks() -> list[asyncio.Task[Any]]:
    return [t for t in asyncio.all_tasks() if t.get_name().startswith("pondsocket-redis")]


async def test_close_during_an_outage_is_bounded_and_leaves_nothing_running(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    bus = await RedisPubSub.connect(redis_server.url, close_timeout=0.5)
    states = States(bus)
    await bus.subscribe("pond.t", Inbox())
    await bus.subscribe("pond.*", Inbox())
    assert _our_tasks()
    redis_server.kill()
    await states.wait(BusState.DISCONNECTED)
    for i in range(5):
        await bus.publish("pond.t", b"%d" % i)
    async with asyncio.timeout(HANG_BOUND):
        await bus.close()
    await bus.close()  # idempotent
    assert any("5 message(s) not published" in r.getMessage() for r in caplog.records)
    assert _our_tasks() == []
    assert states.states == [BusState.DISCONNECTED]  # no RECONNECTED after close


async def test_close_with_redis_frozen_gives_up_on_a_pipeline_that_hangs(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    # close_timeout would allow 30 s: a pipeline nobody answers is given up on sooner.
    bus = await RedisPubSub.connect(redis_server.url, close_timeout=30.0)
    await bus.subscribe("pond.t", Inbox())
    redis_server.freeze()
    try:
        for i in range(5):
            await bus.publish("pond.t", b"%d" % i)
        await asyncio.sleep(0.1)  # the flusher's pipeline is under way, unanswered
        started = time.monotonic()
        async with asyncio.timeout(HANG_BOUND):
            await bus.close()
        took = time.monotonic() - started
    finally:
        redis_server.thaw()
    assert took < 10.0, took  # about CLOSE_STALL (1 s); it was close_timeout
    assert any("5 message(s) not published" in r.getMessage() for r in caplog.records)
    assert _our_tasks() == []


async def test_messages_redis_refuses_are_counted_not_retried(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    # An ACL user allowed to use the channels "ok.*" only: PUBLISH elsewhere gets NOPERM.
    redis_server.cli(
        "acl", "setuser", "limited", "on", ">secret", "resetchannels", "&ok.*", "+@all"
    )
    url = f"redis://limited:secret@127.0.0.1:{redis_server.port}"
    async with connected_url(url) as bus:
        inbox = Inbox()
        await bus.subscribe("ok.t", inbox)
        await bus.publish("ok.t", b"1")
        await bus.publish("forbidden", b"x")
        await bus.publish("ok.t", b"2")
        assert [d for _, d in await inbox.wait_for(2)] == [b"1", b"2"]
        await wait_until(lambda: bus.outbox_pending == 0, "the outbox to drain")
        assert bus.stats.published == 2 and bus.stats.publish_errors == 1
        assert any("refused 1 of" in r.getMessage() for r in caplog.records)
