"""The PubSub conformance suite: every backend runs these tests against a real broker.

A backend's test module defines a ``pubsub_factory`` fixture (an async context manager
factory yielding fresh, connected instances that share one broker) and then does
``from tests.pubsub_conformance import *``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import pytest

from pondsocket.pubsub import PubSub, PubSubClosedError

Factory = Callable[[], AbstractAsyncContextManager[PubSub]]
__all__ = [
    "test_close_is_idempotent_and_later_calls_raise",
    "test_exact_topic_delivery_in_order",
    "test_handler_errors_do_not_stop_delivery",
    "test_invalid_patterns_are_rejected",
    "test_prefix_pattern_matches_only_its_prefix",
    "test_slow_handler_does_not_block_others",
    "test_star_inside_a_topic_is_literal",
    "test_subscription_cancel_is_per_handler",
    "test_two_instances_see_each_other",
    "test_unsubscribe_drops_every_handler_of_the_pattern",
]


class Inbox:
    def __init__(self) -> None:
        self.items: list[tuple[str, bytes]] = []
        self._changed = asyncio.Event()

    async def __call__(self, topic: str, data: bytes) -> None:
        self.items.append((topic, data))
        self._changed.set()

    async def wait_for(self, count: int, timeout: float = 5.0) -> list[tuple[str, bytes]]:
        async with asyncio.timeout(timeout):
            while len(self.items) < count:
                self._changed.clear()
                await self._changed.wait()
        return self.items


async def quiet(delay: float = 0.3) -> None:
    """Give a backend time to (wrongly) deliver something; used only for 'nothing arrives'."""
    await asyncio.sleep(delay)


async def test_exact_topic_delivery_in_order(pubsub_factory: Factory) -> None:
    async with pubsub_factory() as bus:
        inbox = Inbox()
        await bus.subscribe("pond.t1", inbox)
        for i in range(50):
            await bus.publish("pond.t1", str(i).encode())
        await bus.publish("pond.t2", b"other")
        items = await inbox.wait_for(50)
        assert [data for _, data in items] == [str(i).encode() for i in range(50)]
        await quiet()
        assert all(topic == "pond.t1" for topic, _ in inbox.items)


async def test_prefix_pattern_matches_only_its_prefix(pubsub_factory: Factory) -> None:
    async with pubsub_factory() as bus:
        inbox = Inbox()
        await bus.subscribe("pond:room.*", inbox)
        await bus.publish("pond:room:a", b"1")
        await bus.publish("pond:roomy", b"2")  # the prefix is the text before ".*"
        await bus.publish("pond:room/b:c", b"3")
        await bus.publish("other:room:a", b"no")
        await bus.publish("pond:roo", b"no")
        items = await inbox.wait_for(3)
        await quiet()
        assert sorted(items) == [
            ("pond:room/b:c", b"3"),
            ("pond:room:a", b"1"),
            ("pond:roomy", b"2"),
        ]


async def test_subscription_cancel_is_per_handler(pubsub_factory: Factory) -> None:
    async with pubsub_factory() as bus:
        first, second = Inbox(), Inbox()
        sub = await bus.subscribe("pond.t", first)
        await bus.subscribe("pond.t", second)
        await sub.cancel()
        await bus.publish("pond.t", b"x")
        await second.wait_for(1)
        await quiet()
        assert first.items == []


async def test_unsubscribe_drops_every_handler_of_the_pattern(pubsub_factory: Factory) -> None:
    async with pubsub_factory() as bus:
        first, second, other = Inbox(), Inbox(), Inbox()
        await bus.subscribe("pond.t", first)
        await bus.subscribe("pond.t", second)
        await bus.subscribe("pond.u", other)
        await bus.unsubscribe("pond.t")
        await bus.publish("pond.t", b"x")
        await bus.publish("pond.u", b"y")
        await other.wait_for(1)
        await quiet()
        assert first.items == [] and second.items == []


async def test_handler_errors_do_not_stop_delivery(
    pubsub_factory: Factory, caplog: pytest.LogCaptureFixture
) -> None:
    async with pubsub_factory() as bus:
        inbox = Inbox()

        async def explode(topic: str, data: bytes) -> None:
            if data == b"bad":
                raise RuntimeError("handler bug")
            await inbox(topic, data)

        await bus.subscribe("pond.t", explode)
        for data in (b"a", b"bad", b"b"):
            await bus.publish("pond.t", data)
        items = await inbox.wait_for(2)
        assert [d for _, d in items] == [b"a", b"b"]
        assert any("pond.t" in r.getMessage() and r.exc_info for r in caplog.records)


async def test_slow_handler_does_not_block_others(pubsub_factory: Factory) -> None:
    async with pubsub_factory() as bus:
        release = asyncio.Event()
        fast = Inbox()

        async def stuck(topic: str, data: bytes) -> None:
            await release.wait()

        await bus.subscribe("pond.t", stuck)
        await bus.subscribe("pond.t", fast)
        for i in range(20):
            await bus.publish("pond.t", str(i).encode())
        await fast.wait_for(20)
        release.set()


async def test_two_instances_see_each_other(pubsub_factory: Factory) -> None:
    async with pubsub_factory() as a, pubsub_factory() as b:
        inbox = Inbox()
        await b.subscribe("pond.shared.*", inbox)
        await asyncio.sleep(0.1)  # broker-side subscription must be active before publishing
        await a.publish("pond.shared.x", b"hello")
        assert await inbox.wait_for(1) == [("pond.shared.x", b"hello")]


async def test_invalid_patterns_are_rejected(pubsub_factory: Factory) -> None:
    async with pubsub_factory() as bus:
        for pattern in ("", ".*"):
            with pytest.raises(ValueError):
                await bus.subscribe(pattern, Inbox())


async def test_star_inside_a_topic_is_literal(pubsub_factory: Factory) -> None:
    async with pubsub_factory() as bus:
        inbox = Inbox()
        await bus.subscribe("pond.files/*", inbox)
        await bus.publish("pond.files/x", b"no")
        await bus.publish("pond.files/*", b"yes")
        assert await inbox.wait_for(1) == [("pond.files/*", b"yes")]
        await quiet()
        assert len(inbox.items) == 1


async def test_close_is_idempotent_and_later_calls_raise(pubsub_factory: Factory) -> None:
    async with pubsub_factory() as bus:
        await bus.close()
        await bus.close()
        calls: list[Any] = [
            bus.publish("pond.t", b"x"),
            bus.subscribe("pond.t", Inbox()),
            bus.unsubscribe("pond.t"),
        ]
        for call in calls:
            with pytest.raises(PubSubClosedError):
                await call
