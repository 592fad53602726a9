"""Two PondSocket nodes joined through Kafka (Tansu), the shared scenario of
``tests/nodes_suite.py``; every channel of the namespace shares one Kafka topic."""

from __future__ import annotations

from pondsocket.pubsub.kafka import KafkaPubSub
from tests.kafka.conftest import KafkaFactory
from tests.nodes_suite import two_nodes

ROOMS = [f"/room/{i}" for i in range(4)]


async def test_two_nodes_over_kafka(kafka_factory: KafkaFactory) -> None:
    async with kafka_factory() as bus_a, kafka_factory() as bus_b:

        def one_kafka_topic(bus: KafkaPubSub = bus_a) -> None:
            expected = {f"{bus.options.mapper.topic_prefix}pondsocket.kc"}
            assert set(bus._readers) == expected

        await two_nodes(bus_a, bus_b, ROOMS, namespace="kc", check=one_kafka_topic)
