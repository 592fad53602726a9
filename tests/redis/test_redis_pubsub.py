"""RedisPubSub against the machine's Redis: the shared conformance suite plus batching,
message-size limits, glob characters in topics, reference counting and handler isolation."""

from __future__ import annotations

import asyncio
import logging
import uuid

import pytest
from redis.asyncio import Redis

from pondsocket.pubsub import PubSubClosedError
from pondsocket.pubsub.redis import (
    MessageTooLargeError,
    PubSubUnavailableError,
    RedisPubSub,
    ShardedPatternError,
)
from tests.pubsub_conformance import *  # noqa: F403
from tests.pubsub_conformance import Inbox, quiet
from tests.redis.conftest import RedisFactory, wait_until
from tests.redis.servers import free_port

MiB = 1024 * 1024


async def test_publishes_are_batched_into_pipelines(redis_factory: RedisFactory) -> None:
    async with redis_factory(publish_batch_size=50) as bus:
        inbox = Inbox()
        await bus.subscribe("pond.batch", inbox)
        for i in range(2000):
            await bus.publish("pond.batch", b"%d" % i)
        items = await inbox.wait_for(2000, timeout=30)
        assert [data for _, data in items] == [b"%d" % i for i in range(2000)]
        await wait_until(lambda: bus.stats.published == 2000, "Redis to confirm every publish")
        # 2000 messages, at most 50 a pipeline, far fewer pipelines than messages:
        assert 40 <= bus.stats.publish_batches <= 100, bus.stats
        assert bus.stats.publish_errors == 0


async def test_batch_size_one_sends_one_pipeline_per_message(redis_factory: RedisFactory) -> None:
    async with redis_factory(publish_batch_size=1) as bus:
        inbox = Inbox()
        await bus.subscribe("pond.single", inbox)
        for i in range(30):
            await bus.publish("pond.single", b"%d" % i)
        await inbox.wait_for(30)
        await wait_until(lambda: bus.stats.published == 30, "Redis to confirm every publish")
        assert bus.stats.publish_batches == 30


async def test_message_size_limit(redis_factory: RedisFactory) -> None:
    async with redis_factory() as bus:  # default max_message_size: 1 MiB
        inbox = Inbox()
        await bus.subscribe("pond.big", inbox)
        with pytest.raises(MessageTooLargeError) as caught:
            await bus.publish("pond.big", b"x" * (2 * MiB))
        message = str(caught.value)
        assert str(2 * MiB) in message and str(MiB) in message and "pond.big" in message
        assert caught.value.size == 2 * MiB and caught.value.limit == MiB
        assert bus.outbox_pending == 0
        just_under = bytes(range(256)) * (MiB // 256 - 1) + b"end"
        assert len(just_under) < MiB
        await bus.publish("pond.big", just_under)
        await bus.publish("pond.big", b"small")
        items = await inbox.wait_for(2)
        assert [data for _, data in items] == [just_under, b"small"]
        await wait_until(lambda: bus.stats.published == 2, "Redis to confirm both publishes")
        assert bus.stats.publish_errors == 0


async def test_message_size_limit_is_configurable(redis_factory: RedisFactory) -> None:
    async with redis_factory(max_message_size=10) as bus:
        await bus.publish("pond.t", b"0123456789")
        with pytest.raises(MessageTooLargeError):
            await bus.publish("pond.t", b"0123456789x")


async def test_glob_characters_in_exact_topics_are_literal(redis_factory: RedisFactory) -> None:
    async with redis_factory() as bus:
        inboxes = {topic: Inbox() for topic in ("room[1]", "a?b", "back\\slash", "st*r")}
        for topic, inbox in inboxes.items():
            await bus.subscribe(topic, inbox)
        for topic in ("room1", "axb", "backslash", "stxr", "st*r*"):  # glob look-alikes
            await bus.publish(topic, b"no")
        for topic in inboxes:
            await bus.publish(topic, topic.encode())
        for topic, inbox in inboxes.items():
            assert await inbox.wait_for(1) == [(topic, topic.encode())]
        await quiet()
        assert all(len(inbox.items) == 1 for inbox in inboxes.values())


async def test_glob_characters_in_prefixes_are_literal(redis_factory: RedisFactory) -> None:
    async with redis_factory() as bus:
        inbox = Inbox()
        await bus.subscribe("p[x]?*\\.*", inbox)  # prefix: p[x]?*\
        for topic in ("px?*\\tail", "p[x]a*\\tail", "p[x]?", "p[y]?*\\tail", "xp[x]?*\\"):
            await bus.publish(topic, b"no")
        await bus.publish("p[x]?*\\", b"1")
        await bus.publish("p[x]?*\\tail", b"2")
        await bus.publish("p[x]?*\\[z]", b"3")
        items = await inbox.wait_for(3)
        await quiet()
        assert items == [("p[x]?*\\", b"1"), ("p[x]?*\\tail", b"2"), ("p[x]?*\\[z]", b"3")]


async def test_exact_and_pattern_subscriptions_each_get_one_copy(
    redis_factory: RedisFactory,
) -> None:
    async with redis_factory() as bus:
        exact, pattern = Inbox(), Inbox()
        await bus.subscribe("pond.room.1", exact)
        await bus.subscribe("pond.room.*", pattern)
        await bus.publish("pond.room.1", b"x")
        assert await exact.wait_for(1) == [("pond.room.1", b"x")]
        assert await pattern.wait_for(1) == [("pond.room.1", b"x")]
        await quiet()
        assert len(exact.items) == len(pattern.items) == 1


async def test_slow_handler_does_not_delay_other_handlers(redis_factory: RedisFactory) -> None:
    async with redis_factory() as bus:
        release = asyncio.Event()
        slow = Inbox()

        async def stuck(topic: str, data: bytes) -> None:
            await release.wait()
            await slow(topic, data)

        same_topic, other_topic, by_pattern = Inbox(), Inbox(), Inbox()
        await bus.subscribe("pond.slow", stuck)
        await bus.subscribe("pond.slow", same_topic)
        await bus.subscribe("pond.other", other_topic)
        await bus.subscribe("pond.*", by_pattern)
        for i in range(50):
            await bus.publish("pond.slow", b"%d" % i)
            await bus.publish("pond.other", b"%d" % i)
        await same_topic.wait_for(50)
        await other_topic.wait_for(50)
        await by_pattern.wait_for(100)
        assert slow.items == []
        release.set()
        items = await slow.wait_for(50)  # queued, in order, nothing lost
        assert [data for _, data in items] == [b"%d" % i for i in range(50)]
        assert bus.stats.dropped == 0


async def test_a_full_handler_queue_drops_and_counts(
    redis_factory: RedisFactory, caplog: pytest.LogCaptureFixture
) -> None:
    async with redis_factory(queue_size=5) as bus:
        release = asyncio.Event()

        async def stuck(topic: str, data: bytes) -> None:
            await release.wait()

        fast = Inbox()
        await bus.subscribe("pond.slow", stuck)
        await bus.subscribe("pond.slow", fast)
        for i in range(50):
            await bus.publish("pond.slow", b"%d" % i)
            await fast.wait_for(i + 1)  # one at a time: the fast queue never fills
        # The stuck handler holds 1 message and queues 5: the other 44 are dropped for it.
        assert bus.stats.dropped == bus.dropped == 44
        assert any(
            "behind" in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records
        )
        release.set()


async def test_broker_subscription_is_reference_counted(
    redis_factory: RedisFactory, machine_redis: str
) -> None:
    name = f"pondsocket-test-{uuid.uuid4().hex[:8]}"
    async with (
        redis_factory(client_options={"client_name": name}) as bus,
        Redis.from_url(machine_redis) as redis,
    ):

        async def subscriptions() -> tuple[int, int]:
            """(channels, patterns) held by the bus's connections, from CLIENT LIST."""
            ours = [c for c in await redis.client_list() if c["name"] == name]
            assert ours, f"no connection named {name}"
            return sum(int(c["sub"]) for c in ours), sum(int(c["psub"]) for c in ours)

        async def settle(expected: tuple[int, int]) -> None:
            async with asyncio.timeout(5):
                while await subscriptions() != expected:
                    await asyncio.sleep(0.01)

        first = await bus.subscribe("pond.rc", Inbox())
        second = await bus.subscribe("pond.rc", Inbox())
        await bus.subscribe("pond.rc.*", Inbox())
        await bus.subscribe("pond.rc.*", Inbox())
        assert await subscriptions() == (1, 1)  # one broker subscription per pattern
        await first.cancel()
        await quiet(0.1)
        assert await subscriptions() == (1, 1)  # a handler is left
        await second.cancel()
        await settle((0, 1))
        await bus.unsubscribe("pond.rc.*")  # drops both pattern handlers
        await settle((0, 0))


async def test_handler_may_cancel_its_own_subscription(redis_factory: RedisFactory) -> None:
    async with redis_factory() as bus:
        seen: list[bytes] = []
        done = asyncio.Event()
        subscription = None

        async def once(topic: str, data: bytes) -> None:
            seen.append(data)
            assert subscription is not None
            done.set()
            await subscription.cancel()

        subscription = await bus.subscribe("pond.once", once)
        await bus.publish("pond.once", b"1")
        await asyncio.wait_for(done.wait(), 5)
        await bus.publish("pond.once", b"2")
        await quiet()
        assert seen == [b"1"]


async def test_close_publishes_what_was_accepted(redis_factory: RedisFactory) -> None:
    async with redis_factory() as receiver:
        inbox = Inbox()
        await receiver.subscribe("pond.flush", inbox)
        async with redis_factory() as sender:
            for i in range(500):
                await sender.publish("pond.flush", b"%d" % i)
            await sender.close()
            assert sender.outbox_pending == 0 and sender.stats.published == 500
        items = await inbox.wait_for(500)
        assert [data for _, data in items] == [b"%d" % i for i in range(500)]


async def test_a_client_passed_in_stays_open(machine_redis: str) -> None:
    async with Redis.from_url(machine_redis, decode_responses=True) as client:
        bus = await RedisPubSub.connect(client, channel_prefix="test:own:")
        inbox = Inbox()
        await bus.subscribe("pond.t", inbox)
        await bus.publish("pond.t", b"\xff\x00bytes")  # decode_responses does not apply
        assert await inbox.wait_for(1) == [("pond.t", b"\xff\x00bytes")]
        await bus.close()
        assert await client.ping()
        with pytest.raises(PubSubClosedError):
            await bus.publish("pond.t", b"x")


async def test_unreachable_redis_fails_fast() -> None:
    with pytest.raises(PubSubUnavailableError, match="cannot connect to Redis"):
        await RedisPubSub.connect(f"redis://127.0.0.1:{free_port()}", connect_timeout=2)


async def test_option_errors(machine_redis: str) -> None:
    with pytest.raises(ValueError, match="sharded=True needs Redis Cluster"):
        await RedisPubSub.connect(machine_redis, sharded=True)
    with pytest.raises(ValueError, match="publish_batch_size"):
        await RedisPubSub.connect(machine_redis, publish_batch_size=0)
    with pytest.raises(TypeError):
        await RedisPubSub.connect(42)  # type: ignore[arg-type]
    assert issubclass(ShardedPatternError, ValueError)
