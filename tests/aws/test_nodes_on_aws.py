"""Two PondSocket nodes joined through SNS/SQS on a moto server (the shared scenario of
``tests/nodes_suite.py``)."""

from __future__ import annotations

import uuid

from pondsocket.pubsub.aws import SnsSqsPubSub
from tests.aws.moto_server import MotoServer
from tests.nodes_suite import two_nodes

ROOMS = [f"/room/{i}" for i in range(3)]


async def test_two_nodes_over_sns_sqs(moto: MotoServer) -> None:
    url = moto.url(f"pondsocket-aws-{uuid.uuid4().hex[:8]}", wait_time_seconds=2)
    bus_a = await SnsSqsPubSub.connect(url)
    bus_b = await SnsSqsPubSub.connect(url)
    try:
        await two_nodes(bus_a, bus_b, ROOMS, namespace="aws", timeout=15.0)
    finally:
        await bus_a.close()
        await bus_b.close()
