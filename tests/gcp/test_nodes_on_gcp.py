"""Two PondSocket nodes joined through the Pub/Sub emulator (the shared scenario of
``tests/nodes_suite.py``)."""

from __future__ import annotations

import uuid

from pondsocket.pubsub.gcp import GooglePubSub
from tests.gcp.conftest import Emulator
from tests.nodes_suite import two_nodes

ROOMS = [f"/room/{i}" for i in range(3)]


async def test_two_nodes_over_google_pubsub(emulator: Emulator) -> None:
    url = f"gcppubsub://nodes-{uuid.uuid4().hex[:8]}?emulator={emulator.host}&namespace=gc"
    bus_a = await GooglePubSub.connect(url)
    bus_b = await GooglePubSub.connect(url)
    try:
        await two_nodes(bus_a, bus_b, ROOMS, namespace="gc")
    finally:
        await bus_a.close()
        await bus_b.close()
