"""NatsPubSub against the machine's NATS: the shared conformance suite plus message-size
limits, special characters in topics, prefix filtering, reference counting, subject
prefixes, and a client passed in by the caller."""

from __future__ import annotations

import asyncio

import pytest

import nats
from pondsocket.pubsub import PubSubClosedError
from pondsocket.pubsub.base import BusState
from pondsocket.pubsub.nats import (
    MessageTooLargeError,
    NatsPubSub,
    PubSubUnavailableError,
    TopicTooLongError,
)
from tests.nats.conftest import NatsFactory, unique_prefix, wait_until
from tests.nats.servers import free_port
from tests.pubsub_conformance import *  # noqa: F403
from tests.pubsub_conformance import Inbox, quiet


async def test_message_size_limit_defaults_to_the_server_max_payload(
    nats_factory: NatsFactory,
) -> None:
    async with nats_factory() as bus:
        limit = bus.client.max_payload
        assert bus.max_message_size == limit > 0
        inbox = Inbox()
        await bus.subscribe("pond.big", inbox)
        with pytest.raises(MessageTooLargeError) as caught:
            await bus.publish("pond.big", b"x" * (limit + 1))
        assert caught.value.size == limit + 1 and caught.value.limit == limit
        assert str(limit) in str(caught.value) and "pond.big" in str(caught.value)
        exactly = bytes(range(256)) * (limit // 256) + b"e" * (limit % 256)
        await bus.publish("pond.big", exactly)
        await bus.publish("pond.big", b"small")
        items = await inbox.wait_for(2)
        assert [data for _, data in items] == [exactly, b"small"]


async def test_message_size_limit_is_configurable(nats_factory: NatsFactory) -> None:
    async with nats_factory(max_message_size=10) as bus:
        await bus.publish("pond.t", b"0123456789")
        with pytest.raises(MessageTooLargeError):
            await bus.publish("pond.t", b"0123456789x")


async def test_message_size_above_the_server_limit_is_refused(machine_nats: str) -> None:
    with pytest.raises(ValueError, match="max_payload"):
        await NatsPubSub.connect(machine_nats, max_message_size=10**10)


async def test_special_characters_in_topics_are_literal(nats_factory: NatsFactory) -> None:
    topics = ["room.1", "a*b", "a>b", "x y", "a::b", ":lead", "trail:", "~7E", "é:日本"]
    async with nats_factory() as bus:
        inboxes = {topic: Inbox() for topic in topics}
        for topic, inbox in inboxes.items():
            await bus.subscribe(topic, inbox)
        for topic in ("room:1", "a", "ab", "x", "a:b", "lead", "trail", "~"):  # look-alikes
            await bus.publish(topic, b"no")
        for topic in topics:
            await bus.publish(topic, topic.encode())
        for topic, inbox in inboxes.items():
            assert await inbox.wait_for(1) == [(topic, topic.encode())]
        await quiet()
        assert all(len(inbox.items) == 1 for inbox in inboxes.values())


async def test_prefix_inside_a_token_is_filtered_on_the_node(nats_factory: NatsFactory) -> None:
    async with nats_factory() as bus:
        inbox = Inbox()
        await bus.subscribe("pond:ro.*", inbox)  # NATS wildcard: pond.> (wider)
        for topic in ("pond:x", "pond:r", "pond", "pond:", "pond:rx:ro"):
            await bus.publish(topic, b"no")
        for topic in ("pond:ro", "pond:room", "pond:ro:a:b", "pond:ro.x"):
            await bus.publish(topic, b"yes")
        items = await inbox.wait_for(4)
        await quiet()
        assert [topic for topic, _ in items] == ["pond:ro", "pond:room", "pond:ro:a:b", "pond:ro.x"]
        assert bus.stats.filtered == 4  # "pond" alone is outside pond.> already


async def test_prefix_at_a_token_boundary_needs_no_filtering(nats_factory: NatsFactory) -> None:
    async with nats_factory() as bus:
        inbox = Inbox()
        await bus.subscribe("pond:room:.*", inbox)
        for topic in ("pond:room", "pond:roomy", "pond:room.x"):
            await bus.publish(topic, b"no")
        await bus.publish("pond:room:", b"1")
        await bus.publish("pond:room:a:b", b"2")
        items = await inbox.wait_for(2)
        await quiet()
        assert items == [("pond:room:", b"1"), ("pond:room:a:b", b"2")]
        assert bus.stats.filtered == 0  # NATS did not send anything else


async def test_one_nats_subscription_per_pattern(nats_factory: NatsFactory) -> None:
    async with nats_factory() as bus:
        before = len(bus.client._subs)
        first, second = Inbox(), Inbox()
        sub1 = await bus.subscribe("pond.t", first)
        sub2 = await bus.subscribe("pond.t", second)
        assert len(bus.client._subs) == before + 1
        await sub1.cancel()
        assert len(bus.client._subs) == before + 1  # still one handler
        await sub2.cancel()
        assert len(bus.client._subs) == before  # the last one gone: unsubscribed
        await sub2.cancel()  # twice is harmless


async def test_exact_and_pattern_subscriptions_each_get_one_copy(
    nats_factory: NatsFactory,
) -> None:
    async with nats_factory() as bus:
        exact, pattern = Inbox(), Inbox()
        await bus.subscribe("pond:room:1", exact)
        await bus.subscribe("pond:room.*", pattern)
        await bus.publish("pond:room:1", b"x")
        assert await exact.wait_for(1) == [("pond:room:1", b"x")]
        assert await pattern.wait_for(1) == [("pond:room:1", b"x")]
        await quiet()
        assert len(exact.items) == len(pattern.items) == 1


async def test_full_handler_queue_drops_and_counts(
    nats_factory: NatsFactory, caplog: pytest.LogCaptureFixture
) -> None:
    async with nats_factory(queue_size=5) as bus:
        release = asyncio.Event()

        async def stuck(topic: str, data: bytes) -> None:
            await release.wait()

        await bus.subscribe("pond.q", stuck)
        for i in range(50):
            await bus.publish("pond.q", b"%d" % i)
        await wait_until(lambda: bus.stats.received == 50, "NATS to deliver all 50")
        # 5 queued, and 1 more if the worker took the first before the burst arrived:
        assert bus.dropped == bus.stats.dropped in (44, 45)
        assert any("behind" in r.getMessage() for r in caplog.records)
        release.set()


async def test_subject_prefixes_isolate_applications(machine_nats: str) -> None:
    one = await NatsPubSub.connect(machine_nats, subject_prefix=unique_prefix())
    two = await NatsPubSub.connect(machine_nats, subject_prefix=unique_prefix())
    try:
        inbox = Inbox()
        await two.subscribe("pond.*", inbox)
        await one.publish("pond.x", b"other app")
        await two.publish("pond.y", b"mine")
        assert await inbox.wait_for(1) == [("pond.y", b"mine")]
        await quiet()
        assert len(inbox.items) == 1
    finally:
        await one.close()
        await two.close()


async def test_overlong_topic_is_refused_before_sending(nats_factory: NatsFactory) -> None:
    async with nats_factory() as bus:
        with pytest.raises(TopicTooLongError):
            await bus.publish(":" * 5000, b"x")
        inbox = Inbox()
        await bus.subscribe("pond.t", inbox)  # the connection is still fine
        await bus.publish("pond.t", b"ok")
        await inbox.wait_for(1)


async def test_a_client_passed_in_is_not_closed(machine_nats: str) -> None:
    events: list[str] = []

    async def disconnected() -> None:
        events.append("theirs")

    client = await nats.connect(machine_nats, disconnected_cb=disconnected)
    try:
        bus = await NatsPubSub.connect(client, subject_prefix=unique_prefix())
        states: list[BusState] = []
        bus.add_state_listener(states.append)
        inbox = Inbox()
        await bus.subscribe("pond.t", inbox)
        await bus.publish("pond.t", b"x")
        await inbox.wait_for(1)
        await client._disconnected_cb()  # type: ignore[misc]  # both callbacks run
        assert events == ["theirs"] and states == [BusState.DISCONNECTED]
        await bus.close()
        assert client.is_connected and not client._subs
        assert client._disconnected_cb is disconnected  # ours removed
        with pytest.raises(PubSubClosedError):
            await bus.publish("pond.t", b"x")
    finally:
        await client.close()


async def test_unreachable_nats_raises_at_connect() -> None:
    with pytest.raises(PubSubUnavailableError, match="cannot connect to NATS"):
        await NatsPubSub.connect(f"nats://127.0.0.1:{free_port()}", connect_timeout=0.5)


async def test_stats_count_publishes_and_receipts(nats_factory: NatsFactory) -> None:
    async with nats_factory() as bus:
        inbox = Inbox()
        await bus.subscribe("pond.s", inbox)
        for _ in range(10):
            await bus.publish("pond.s", b"x")
        await inbox.wait_for(10)
        await wait_until(lambda: bus.stats.received == 10, "ten receipts")
        assert bus.stats.published == 10 and bus.connected
