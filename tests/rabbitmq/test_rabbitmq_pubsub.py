"""RabbitMQPubSub against the machine's RabbitMQ: the shared conformance suite plus
encoding on the wire, long topics, size limits, reference-counted bindings, publisher
confirms on and off, and the outbox."""

from __future__ import annotations

import subprocess

import pytest

from pondsocket.pubsub.rabbitmq import (
    MessageTooLargeError,
    PubSubUnavailableError,
    RabbitMQPubSub,
    TopicTooLongError,
)
from pondsocket.pubsub.rabbitmq_support import binding_key
from tests.pubsub_conformance import *  # noqa: F403
from tests.pubsub_conformance import Inbox, quiet
from tests.rabbitmq.conftest import RabbitFactory, wait_until

MiB = 1024 * 1024


def broker_bindings(exchange: str, queue: str) -> set[str]:
    """The routing keys RabbitMQ has bound from ``exchange`` to ``queue`` (rabbitmqctl)."""
    out = subprocess.run(
        ["rabbitmqctl", "-q", "list_bindings", "source_name", "destination_name", "routing_key"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    keys = set()
    for line in out.splitlines():
        parts = line.split("\t")
        if len(parts) == 3 and parts[0] == exchange and parts[1] == queue:
            keys.add(parts[2])
    return keys


async def test_special_characters_round_trip(rabbit_factory: RabbitFactory) -> None:
    topics = ["pond:a.b", "pond:a:b", "pond:#", "pond:*", "pond:~2E", "pond::", "pond:é/ü"]
    async with rabbit_factory() as a, rabbit_factory() as b:
        inboxes = {topic: Inbox() for topic in topics}
        for topic, inbox in inboxes.items():
            await b.subscribe(topic, inbox)
        for topic in topics:
            await a.publish(topic, topic.encode())
        for topic, inbox in inboxes.items():
            assert await inbox.wait_for(1) == [(topic, topic.encode())]
        await quiet()
        assert all(len(inbox.items) == 1 for inbox in inboxes.values())


async def test_long_topics_use_the_hash_key(rabbit_factory: RabbitFactory) -> None:
    long_topic = "pond:v1:default:" + "r" * 400
    sibling = long_topic + "z"
    async with rabbit_factory() as a, rabbit_factory() as b:
        exact, prefix = Inbox(), Inbox()
        await b.subscribe(long_topic, exact)
        await b.subscribe("pond:v1:.*", prefix)
        await a.publish(long_topic, b"1")
        await a.publish(sibling, b"2")
        assert await exact.wait_for(1) == [(long_topic, b"1")]
        assert sorted(await prefix.wait_for(2)) == [(long_topic, b"1"), (sibling, b"2")]
        await quiet()
        assert len(exact.items) == 1
        with pytest.raises(TopicTooLongError):
            await a.publish("t" * 3000, b"x")
        with pytest.raises(TopicTooLongError):
            await a.subscribe("t" * 3000, Inbox())


async def test_message_size_limit(rabbit_factory: RabbitFactory) -> None:
    async with rabbit_factory() as bus:  # default max_message_size: 1 MiB
        inbox = Inbox()
        await bus.subscribe("pond.big", inbox)
        with pytest.raises(MessageTooLargeError) as caught:
            await bus.publish("pond.big", b"x" * (2 * MiB))
        assert caught.value.size == 2 * MiB and caught.value.limit == MiB
        assert "pond.big" in str(caught.value) and bus.outbox_pending == 0
        just_under = bytes(range(256)) * (MiB // 256 - 1)
        await bus.publish("pond.big", just_under)
        await bus.publish("pond.big", b"small")
        items = await inbox.wait_for(2)
        assert [data for _, data in items] == [just_under, b"small"]
    async with rabbit_factory(max_message_size=10) as bus:
        await bus.publish("pond.t", b"0123456789")
        with pytest.raises(MessageTooLargeError):
            await bus.publish("pond.t", b"0123456789x")


async def test_bindings_are_reference_counted(
    rabbit_factory: RabbitFactory, exchange_name: str
) -> None:
    async with rabbit_factory() as bus:
        first, second, shared = Inbox(), Inbox(), Inbox()
        sub1 = await bus.subscribe("pond:t", first)
        sub2 = await bus.subscribe("pond:t", second)
        # two prefix patterns with the same binding key share one binding
        await bus.subscribe("pond:room.*", shared)
        room2 = await bus.subscribe("pond:rooms.*", shared)
        assert binding_key("pond:room.*") == binding_key("pond:rooms.*")
        keys = broker_bindings(exchange_name, bus.queue_name)
        assert {"pond.t", "pond.*.#"} <= keys
        await sub1.cancel()
        assert "pond.t" in broker_bindings(exchange_name, bus.queue_name)
        await sub2.cancel()
        await room2.cancel()
        keys = broker_bindings(exchange_name, bus.queue_name)
        assert "pond.t" not in keys and "pond.*.#" in keys
        await bus.unsubscribe("pond:room.*")
        assert not broker_bindings(exchange_name, bus.queue_name) & {"pond.t", "pond.*.#"}
        assert bus.bound_keys == frozenset()


async def test_unmatched_messages_are_filtered_on_the_node(rabbit_factory: RabbitFactory) -> None:
    async with rabbit_factory() as bus:
        inbox = Inbox()
        await bus.subscribe("pond:room.*", inbox)  # binds pond.*.#: coarser than the prefix
        await bus.publish("pond:other", b"no")
        await bus.publish("pond:room", b"yes")
        assert await inbox.wait_for(1) == [("pond:room", b"yes")]
        await wait_until(lambda: bus.stats.filtered == 1, "the filtered message")


@pytest.mark.parametrize("confirms", [True, False], ids=["confirms", "no-confirms"])
async def test_order_and_counts_with_and_without_confirms(
    rabbit_factory: RabbitFactory, confirms: bool
) -> None:
    async with rabbit_factory(publisher_confirms=confirms, publish_batch_size=50) as bus:
        inbox = Inbox()
        await bus.subscribe("pond.order", inbox)
        for i in range(2000):
            await bus.publish("pond.order", b"%d" % i)
        items = await inbox.wait_for(2000, timeout=30)
        assert [data for _, data in items] == [b"%d" % i for i in range(2000)]
        await wait_until(lambda: bus.stats.published == 2000, "every publish")
        assert bus.stats.publish_errors == 0 and bus.outbox_pending == 0


async def test_full_outbox_raises_after_publish_timeout(rabbit_factory: RabbitFactory) -> None:
    async with rabbit_factory(outbox_size=3, publish_batch_size=1, publish_timeout=0.2) as bus:
        inbox = Inbox()
        await bus.subscribe("pond.t", inbox)
        bus._link_up.clear()  # hold the flusher as during an outage
        accepted = 0
        with pytest.raises(PubSubUnavailableError, match="outbox"):
            for i in range(10):
                await bus.publish("pond.t", b"%d" % i)
                accepted += 1
        # outbox_size, plus the batch the flusher holds (publish_batch_size)
        assert 3 <= accepted <= 4 and bus.outbox_pending == accepted
        assert bus.stats.publish_rejected == 1
        bus._link_up.set()
        items = await inbox.wait_for(accepted)
        assert [data for _, data in items] == [b"%d" % i for i in range(accepted)]


async def test_connect_errors(machine_rabbitmq: str) -> None:
    with pytest.raises(PubSubUnavailableError):
        await RabbitMQPubSub.connect("amqp://guest:guest@127.0.0.1:1/", connect_timeout=2)
    with pytest.raises(ValueError, match="exchange"):
        await RabbitMQPubSub.connect(machine_rabbitmq, exchange="amq.topic")
    with pytest.raises(TypeError):
        await RabbitMQPubSub.connect(42)  # type: ignore[arg-type]


async def test_close_deletes_the_queue(rabbit_factory: RabbitFactory, exchange_name: str) -> None:
    async with rabbit_factory() as bus:
        await bus.subscribe("pond:t", Inbox())
        name = bus.queue_name
    assert not broker_bindings(exchange_name, name)
