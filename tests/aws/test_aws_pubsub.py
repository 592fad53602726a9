"""SnsSqsPubSub against a moto server: the shared conformance suite plus the URL form,
message encoding and size limits, batching, and cleanup on close."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiobotocore.session import get_session  # type: ignore[import-untyped]

from pondsocket.pubsub import BusState, PubSubClosedError
from pondsocket.pubsub.aws import MessageTooLargeError, PubSubUnavailableError, SnsSqsPubSub
from pondsocket.pubsub.aws_support import SNS_LIMIT, parse_url
from pondsocket.pubsub.urls import connect_url
from tests.aws.conftest import AwsFactory, wait_until
from tests.aws.moto_server import MotoServer, free_port
from tests.pubsub_conformance import *  # noqa: F403
from tests.pubsub_conformance import Inbox, quiet


def admin(server: MotoServer, service: str) -> Any:
    """A plain aiobotocore client of the moto server, to look behind the backend's back."""
    return get_session().create_client(
        service, region_name="us-east-1", endpoint_url=server.endpoint
    )


def test_url_options() -> None:
    options = parse_url(
        "sns+sqs://eu-west-1?endpoint=http://127.0.0.1:5000&topic=chat&wait_time_seconds=5"
        "&publish_timeout=1.5"
    )
    assert options == {
        "region": "eu-west-1",
        "endpoint_url": "http://127.0.0.1:5000",
        "topic": "chat",
        "wait_time_seconds": 5,
        "publish_timeout": 1.5,
    }
    with pytest.raises(ValueError, match="bogus"):
        parse_url("sns+sqs://us-east-1?bogus=1")


async def test_connect_url_builds_the_backend(moto: MotoServer) -> None:
    bus = await connect_url(moto.url("urltest", wait_time_seconds=1))
    try:
        assert isinstance(bus, SnsSqsPubSub)
        assert bus.topic_arn.endswith(":urltest")
        inbox = Inbox()
        await bus.subscribe("pond.url", inbox)
        await bus.publish("pond.url", b"hi")
        assert await inbox.wait_for(1) == [("pond.url", b"hi")]
    finally:
        await bus.close()


async def test_invalid_options_are_rejected(moto: MotoServer) -> None:
    with pytest.raises(ValueError, match="max_message_size"):
        await SnsSqsPubSub.connect(moto.url("t"), max_message_size=SNS_LIMIT + 1)
    with pytest.raises(ValueError, match="topic"):
        await SnsSqsPubSub.connect(moto.url("bad.name"))
    with pytest.raises(TypeError):
        await SnsSqsPubSub.connect(moto.url("t"), no_such_option=1)


async def test_unreachable_endpoint_fails_connect() -> None:
    url = f"sns+sqs://us-east-1?endpoint=http://127.0.0.1:{free_port()}&topic=t"
    with pytest.raises(PubSubUnavailableError, match="cannot set up"):
        await SnsSqsPubSub.connect(url, connect_timeout=2)


async def test_binary_empty_and_odd_topics_round_trip(aws_factory: AwsFactory) -> None:
    async with aws_factory() as bus:
        inbox = Inbox()
        await bus.subscribe("pond.bin.*", inbox)
        odd_topic = "pond.bin.\x00ctl\ud800"
        sent = [
            ("pond.bin.a", bytes(range(256))),
            ("pond.bin.b", b""),
            ("pond.bin.c", "héllo ✓".encode()),
            (odd_topic, b"\x00"),
        ]
        for topic, data in sent:
            await bus.publish(topic, data)
        assert sorted(await inbox.wait_for(4)) == sorted(sent)  # topics: no order across


async def test_message_size_limit(aws_factory: AwsFactory) -> None:
    async with aws_factory() as bus:
        inbox = Inbox()
        await bus.subscribe("pond.big", inbox)
        with pytest.raises(MessageTooLargeError) as caught:
            await bus.publish("pond.big", b"x" * SNS_LIMIT)
        assert "pond.big" in str(caught.value) and str(SNS_LIMIT) in str(caught.value)
        assert bus.outbox_pending == 0
        with pytest.raises(MessageTooLargeError):  # binary: base64 makes it 4/3 larger
            await bus.publish("pond.big", b"\xff" * 200_000)
        just_under = b"y" * (SNS_LIMIT - 100)
        await bus.publish("pond.big", just_under)
        await bus.publish("pond.big", b"small")
        items = await inbox.wait_for(2)
        assert [data for _, data in items] == [just_under, b"small"]


async def test_message_size_limit_is_configurable(aws_factory: AwsFactory) -> None:
    async with aws_factory(max_message_size=100) as bus:
        await bus.publish("pond.t", b"x" * 50)
        with pytest.raises(MessageTooLargeError):
            await bus.publish("pond.t", b"x" * 100)


async def test_publishes_are_batched(aws_factory: AwsFactory) -> None:
    async with aws_factory() as publisher, aws_factory() as receiver:
        inbox = Inbox()
        await receiver.subscribe("pond.batch.*", inbox)
        for i in range(300):
            await publisher.publish(f"pond.batch.{i % 3}", b"%d" % i)
        items = await inbox.wait_for(300, timeout=30)
        for lane in range(3):  # per topic, in publish order
            got = [int(d) for t, d in items if t == f"pond.batch.{lane}"]
            assert got == list(range(lane, 300, 3))
        await wait_until(lambda: publisher.stats.published == 300, "SNS to take every message")
        assert publisher.stats.publish_batches < 150, publisher.stats
        await wait_until(lambda: receiver.stats.deleted == 300, "every message to be deleted")


async def test_full_outbox_raises_after_publish_timeout(aws_factory: AwsFactory) -> None:
    async with aws_factory(outbox_size=1, publish_timeout=0.2, publish_concurrency=1) as bus:
        bus._link_up.clear()  # as during an outage: the publisher holds its messages
        await bus.publish("pond.t", b"1")
        with pytest.raises(PubSubUnavailableError, match="unreachable"):
            await bus.publish("pond.t", b"2")
        assert bus.stats.publish_rejected == 1
        bus._link_up.set()
        await wait_until(lambda: bus.outbox_pending == 0, "the outbox to drain")


async def test_close_deletes_the_queue_and_subscription(moto: MotoServer) -> None:
    bus = await SnsSqsPubSub.connect(moto.url("closetest", wait_time_seconds=1))
    queue_url, subscription = bus.queue_url, bus.subscription_arn
    async with admin(moto, "sqs") as sqs, admin(moto, "sns") as sns:
        assert queue_url in (await sqs.list_queues()).get("QueueUrls", [])
        await bus.close()
        await bus.close()
        assert queue_url not in (await sqs.list_queues()).get("QueueUrls", [])
        listed = await sns.list_subscriptions_by_topic(TopicArn=bus.topic_arn)
        assert subscription not in [s["SubscriptionArn"] for s in listed["Subscriptions"]]
    with pytest.raises(PubSubClosedError):
        await bus.publish("pond.t", b"x")


async def test_vanished_queue_is_recreated(moto: MotoServer) -> None:
    bus = await SnsSqsPubSub.connect(moto.url("vanish", wait_time_seconds=1), backoff_cap=0.3)
    states: list[BusState] = []
    bus.add_state_listener(states.append)
    try:
        inbox = Inbox()
        await bus.subscribe("pond.v", inbox)
        old = bus.queue_url
        async with admin(moto, "sqs") as sqs:
            await sqs.delete_queue(QueueUrl=old)
        await wait_until(
            lambda: states == [BusState.DISCONNECTED, BusState.RECONNECTED], "recovery"
        )
        assert bus.queue_url != old and bus.stats.recreated >= 1
        await bus.publish("pond.v", b"again")
        assert await inbox.wait_for(1) == [("pond.v", b"again")]
    finally:
        await bus.close()


async def test_foreign_messages_are_ignored(aws_factory: AwsFactory, moto: MotoServer) -> None:
    async with aws_factory() as bus:
        inbox = Inbox()
        await bus.subscribe("pond.f", inbox)
        async with admin(moto, "sns") as sns:
            await sns.publish(TopicArn=bus.topic_arn, Message="not ours")
        await bus.publish("pond.f", b"ours")
        assert await inbox.wait_for(1) == [("pond.f", b"ours")]
        await wait_until(lambda: bus.stats.foreign == 1, "the foreign message")
        await quiet()
        assert len(inbox.items) == 1


async def test_full_handler_queue_drops_for_that_handler_only(aws_factory: AwsFactory) -> None:
    async with aws_factory(queue_size=2) as bus:
        release = asyncio.Event()

        async def stuck(topic: str, data: bytes) -> None:
            await release.wait()

        fast = Inbox()
        await bus.subscribe("pond.q", stuck)
        await bus.subscribe("pond.q", fast)
        for i in range(10):  # one at a time: the fast handler never falls behind
            await bus.publish("pond.q", b"%d" % i)
            await fast.wait_for(i + 1)
        assert bus.dropped == 7  # stuck: one in its handler, two queued, the rest dropped
        release.set()
