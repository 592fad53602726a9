"""Two PondSocket nodes joined through the machine's NATS (the shared scenario of
``tests/nodes_suite.py``), on channel names with NATS's special characters."""

from __future__ import annotations

from pondsocket.pubsub.nats import NatsPubSub
from tests.nats.conftest import unique_prefix
from tests.nodes_suite import two_nodes

ROOMS = ["/room/lobby", "/room/a.b", "/room/x*y"]  # '.' and '*' are special in NATS


async def test_two_nodes_over_nats(machine_nats: str) -> None:
    prefix = unique_prefix()
    bus_a = await NatsPubSub.connect(machine_nats, subject_prefix=prefix)
    bus_b = await NatsPubSub.connect(machine_nats, subject_prefix=prefix)
    try:
        await two_nodes(bus_a, bus_b, ROOMS, namespace="nt")
    finally:
        await bus_a.close()
        await bus_b.close()
