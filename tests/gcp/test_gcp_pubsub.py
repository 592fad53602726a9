"""GooglePubSub against the official emulator: the shared conformance suite plus message
size, URL options, ordering under load, and the node subscription's lifecycle."""

from __future__ import annotations

import pytest

from pondsocket.pubsub.gcp import GooglePubSub, MessageTooLargeError
from pondsocket.pubsub.gcp_support import PUBSUB_MAX_MESSAGE, parse_url
from tests.gcp.conftest import Emulator, GoogleFactory, wait_until
from tests.pubsub_conformance import *  # noqa: F403
from tests.pubsub_conformance import Inbox, quiet

MB = 1_000_000


def test_url_options() -> None:
    options = parse_url(
        "gcppubsub://my-project?emulator=127.0.0.1:8085&topic=pond-x&publish_timeout=2.5"
        "&max_outstanding=7"
    )
    assert options == {
        "project": "my-project",
        "emulator": "127.0.0.1:8085",
        "topic": "pond-x",
        "publish_timeout": 2.5,
        "max_outstanding": 7,
    }
    with pytest.raises(ValueError, match="unknown"):
        parse_url("gcppubsub://p?colour=blue")


async def test_ordering_survives_batching_and_threads(gcp_factory: GoogleFactory) -> None:
    async with gcp_factory() as a, gcp_factory() as b:
        inboxes = [Inbox(), Inbox()]
        await a.subscribe("pond.order", inboxes[0])
        await b.subscribe("pond.order", inboxes[1])
        for i in range(2000):
            await a.publish("pond.order", b"%d" % i)
        for inbox in inboxes:
            items = await inbox.wait_for(2000, timeout=30)
            assert [data for _, data in items] == [b"%d" % i for i in range(2000)]
        await wait_until(lambda: a.stats.published == 2000, "Pub/Sub to confirm every publish")
        assert a.outstanding == 0 and a.stats.publish_errors == 0


async def test_message_size_limit(gcp_factory: GoogleFactory) -> None:
    async with gcp_factory() as bus:
        inbox = Inbox()
        await bus.subscribe("pond.big", inbox)
        with pytest.raises(MessageTooLargeError) as caught:
            await bus.publish("pond.big", b"x" * (PUBSUB_MAX_MESSAGE + 1))
        assert "pond.big" in str(caught.value) and str(PUBSUB_MAX_MESSAGE + 1) in str(caught.value)
        big = bytes(range(256)) * (5 * MB // 256)
        await bus.publish("pond.big", big)
        await bus.publish("pond.big", b"small")
        items = await inbox.wait_for(2, timeout=20)
        assert [data for _, data in items] == [big, b"small"]
    with pytest.raises(ValueError):
        await GooglePubSub.connect("gcppubsub://p", max_message_size=PUBSUB_MAX_MESSAGE + 1)


async def test_message_size_limit_is_configurable(gcp_factory: GoogleFactory) -> None:
    async with gcp_factory(max_message_size=10) as bus:
        await bus.publish("pond.t", b"0123456789")
        with pytest.raises(MessageTooLargeError):
            await bus.publish("pond.t", b"0123456789x")


async def test_exact_and_pattern_subscriptions_each_get_one_copy(
    gcp_factory: GoogleFactory,
) -> None:
    async with gcp_factory() as bus:
        exact, pattern = Inbox(), Inbox()
        await bus.subscribe("pond.room.1", exact)
        await bus.subscribe("pond.room.*", pattern)
        await bus.publish("pond.room.1", b"x")
        assert await exact.wait_for(1) == [("pond.room.1", b"x")]
        assert await pattern.wait_for(1) == [("pond.room.1", b"x")]
        await quiet()
        assert len(exact.items) == len(pattern.items) == 1


async def test_node_subscription_is_deleted_on_close(
    gcp_factory: GoogleFactory, emulator: Emulator
) -> None:
    async with gcp_factory() as a, gcp_factory() as b:
        assert a.topic_path == b.topic_path  # one topic per namespace
        assert a.subscription_path != b.subscription_path  # one subscription per node

        def listed() -> set[str]:
            project = a.topic_path.split("/")[1]
            return {
                s.name
                for s in b._subscriber.list_subscriptions(
                    request={"project": f"projects/{project}"}
                )
            }

        assert {a.subscription_path, b.subscription_path} <= listed()
        await a.close()
        remaining = listed()
        assert a.subscription_path not in remaining and b.subscription_path in remaining


async def test_namespaces_use_separate_topics(gcp_factory: GoogleFactory) -> None:
    async with gcp_factory(namespace="one") as a, gcp_factory(namespace="two") as b:
        assert a.topic_path.endswith("/topics/pondsocket-one")
        assert b.topic_path.endswith("/topics/pondsocket-two")
        inbox = Inbox()
        await b.subscribe("pond.x", inbox)
        await a.publish("pond.x", b"other namespace")
        await quiet(0.5)
        assert inbox.items == []
