"""Two PondSocket nodes joined through RabbitMQ (the shared scenario of
``tests/nodes_suite.py``), on channel names with AMQP routing-key characters."""

from __future__ import annotations

from pondsocket.pubsub.rabbitmq import RabbitMQPubSub
from tests.nodes_suite import two_nodes

ROOMS = ["/room/1", "/room/a.b", "/room/x:y"]


async def test_two_nodes_over_rabbitmq(machine_rabbitmq: str, exchange_name: str) -> None:
    bus_a = await RabbitMQPubSub.connect(machine_rabbitmq, exchange=exchange_name)
    bus_b = await RabbitMQPubSub.connect(machine_rabbitmq, exchange=exchange_name)
    try:
        await two_nodes(bus_a, bus_b, ROOMS, namespace="rmq")
    finally:
        await bus_a.close()
        await bus_b.close()
