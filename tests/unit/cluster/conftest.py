"""The ``cluster`` fixture: it makes nodes (tests/unit/cluster/nodes.py) that share one
in-memory broker, and shuts every one of them down after the test."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest
from tests.unit.cluster.nodes import Node

from pondsocket.pubsub.memory import InMemoryBroker


@pytest.fixture
async def cluster() -> AsyncIterator[Callable[[str], Node]]:
    broker = InMemoryBroker()
    nodes: list[Node] = []

    def make(node_id: str) -> Node:
        node = Node(broker, node_id)
        nodes.append(node)
        return node

    yield make
    for node in nodes:
        await node.pond.shutdown(timeout=1)
        await node.pubsub.close()
