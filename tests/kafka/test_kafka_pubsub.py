"""KafkaPubSub specifics against a real Tansu broker: the namespace mapping, topic
creation, message-size limit, node-unique consumption, reference counting, URL parsing."""

from __future__ import annotations

import pytest
from aiokafka.admin import AIOKafkaAdminClient  # type: ignore[import-untyped]

from pondsocket.pubsub.kafka import (
    KafkaPubSub,
    MessageTooLargeError,
    PatternSpansTopicsError,
    PubSubUnavailableError,
    TopicMapper,
)
from pondsocket.pubsub.kafka_support import legal_topic_name, parse_url
from tests.kafka.conftest import KafkaFactory, wait_until
from tests.kafka.tansu import Tansu, free_port
from tests.pubsub_conformance import Inbox, quiet

MiB = 1024 * 1024


def test_namespace_mapping() -> None:
    mapper = TopicMapper(topic_prefix="x.")
    assert mapper.for_topic("pondsocket:v1:default:socket:/room/1") == "x.pondsocket.default"
    assert mapper.for_topic("pondsocket:v1:default:__heartbeat__") == "x.pondsocket.default"
    assert mapper.for_topic("pondsocket:v1:other:socket:/a") == "x.pondsocket.other"
    assert mapper.for_topic("pond.t1") == "x.pondsocket-other"
    assert mapper.for_pattern("pondsocket:v1:default:socket:.*") == "x.pondsocket.default"
    assert mapper.for_pattern("pondsocket:v1:default:.*") == "x.pondsocket.default"
    assert mapper.for_pattern("other:room.*") == "x.pondsocket-other"  # cannot be a layout
    for spanning in ("pond.*", "pond:.*", "pond:v.*", "pond:v1.*", "pond:v1:de.*"):
        with pytest.raises(PatternSpansTopicsError):
            mapper.for_pattern(spanning)
    single = TopicMapper(kafka_topic="all")
    assert single.for_pattern("pond.*") == single.for_topic("pondsocket:v1:a:b") == "all"


def test_illegal_kafka_names_are_made_legal() -> None:
    name = legal_topic_name("pond/sock et.ns")
    assert name.startswith("pond_sock_et.ns-") and name != legal_topic_name("pond_sock_et.ns")
    assert len(legal_topic_name("n" * 400)) <= 249
    assert legal_topic_name("fine.name-1_x") == "fine.name-1_x"


def test_url_parsing() -> None:
    assert parse_url("kafka://h1:9093,h2") == "h1:9093,h2:9092"
    assert parse_url("kafka://127.0.0.1:1234/") == "127.0.0.1:1234"
    with pytest.raises(ValueError):
        parse_url("kafka://")


async def test_namespace_topics_are_created_and_carry_their_namespace(
    kafka_factory: KafkaFactory, tansu: Tansu
) -> None:
    async with kafka_factory() as a, kafka_factory() as b:
        default, other = Inbox(), Inbox()
        await b.subscribe("pondsocket:v1:default:socket:/room/1", default)
        await b.subscribe("pondsocket:v1:other:.*", other)
        await a.publish("pondsocket:v1:default:socket:/room/1", b"d")
        await a.publish("pondsocket:v1:other:socket:/x", b"o")
        await a.publish("pondsocket:v1:default:socket:/room/2", b"not subscribed")
        assert await default.wait_for(1) == [("pondsocket:v1:default:socket:/room/1", b"d")]
        assert await other.wait_for(1) == [("pondsocket:v1:other:socket:/x", b"o")]
        await quiet()
        assert len(default.items) == 1
        prefix = a.options.mapper.topic_prefix
        admin = AIOKafkaAdminClient(bootstrap_servers=f"127.0.0.1:{tansu.port}")
        await admin.start()
        try:
            topics = {t for t in await admin.list_topics() if t.startswith(prefix)}
        finally:
            await admin.close()
        assert topics == {f"{prefix}pondsocket.default", f"{prefix}pondsocket.other"}
        with pytest.raises(PatternSpansTopicsError):
            await b.subscribe("pondsocket:v1:.*", Inbox())


async def test_every_node_sees_every_message(kafka_factory: KafkaFactory) -> None:
    async with kafka_factory() as a, kafka_factory() as b, kafka_factory() as c:
        inboxes = [Inbox(), Inbox(), Inbox()]
        for bus, inbox in zip((a, b, c), inboxes, strict=True):
            await bus.subscribe("pondsocket:v1:default:hb", inbox)
        for i in range(20):
            await a.publish("pondsocket:v1:default:hb", b"%d" % i)
        for inbox in inboxes:
            items = await inbox.wait_for(20)
            assert [d for _, d in items] == [b"%d" % i for i in range(20)]


async def test_many_publishes_are_batched_and_acknowledged(kafka_factory: KafkaFactory) -> None:
    async with kafka_factory(linger_ms=10) as bus:
        inbox = Inbox()
        await bus.subscribe("pondsocket:v1:default:batch", inbox)
        for i in range(3000):
            await bus.publish("pondsocket:v1:default:batch", b"%d" % i)
        items = await inbox.wait_for(3000, timeout=30)
        assert [d for _, d in items] == [b"%d" % i for i in range(3000)]
        await wait_until(lambda: bus.stats.published == 3000, "Kafka to acknowledge all")
        assert bus.stats.publish_errors == 0 and bus.stats.buffered == 0


async def test_message_size_limit(kafka_factory: KafkaFactory) -> None:
    topic = "pondsocket:v1:default:big"
    async with kafka_factory() as bus:  # default max_message_size: 1 MiB
        inbox = Inbox()
        await bus.subscribe(topic, inbox)
        with pytest.raises(MessageTooLargeError) as caught:
            await bus.publish(topic, b"x" * (2 * MiB))
        assert caught.value.limit == MiB and caught.value.size == 2 * MiB + len(topic)
        assert topic in str(caught.value) and str(MiB) in str(caught.value)
        just_under = bytes(range(256)) * (MiB // 256 - 1)
        await bus.publish(topic, just_under)
        await bus.publish(topic, b"small")
        items = await inbox.wait_for(2)
        assert [d for _, d in items] == [just_under, b"small"]
    async with kafka_factory(max_message_size=40) as bus:
        await bus.publish("pondsocket:v1:default:t", b"0" * 17)  # 23 + 17 bytes
        with pytest.raises(MessageTooLargeError):
            await bus.publish("pondsocket:v1:default:t", b"0" * 18)


async def test_last_handler_gone_stops_the_reader(kafka_factory: KafkaFactory) -> None:
    async with kafka_factory() as bus:
        first, second = Inbox(), Inbox()
        sub1 = await bus.subscribe("pondsocket:v1:ns1:a", first)
        sub2 = await bus.subscribe("pondsocket:v1:ns1:.*", second)
        assert set(bus._readers) == {bus.options.mapper.for_topic("pondsocket:v1:ns1:a")}
        await sub1.cancel()
        assert bus._readers, "another pattern still needs the Kafka topic"
        await sub2.cancel()
        assert not bus._readers
        inbox = Inbox()
        await bus.subscribe("pondsocket:v1:ns1:a", inbox)
        await bus.publish("pondsocket:v1:ns1:a", b"again")
        assert await inbox.wait_for(1) == [("pondsocket:v1:ns1:a", b"again")]
        assert first.items == [] and second.items == []


async def test_connect_to_nothing_fails_clearly() -> None:
    with pytest.raises(PubSubUnavailableError, match="cannot reach Kafka"):
        await KafkaPubSub.connect(
            f"kafka://127.0.0.1:{free_port()}", request_timeout_ms=1000, probe_timeout=1
        )
