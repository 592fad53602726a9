"""NatsPubSub against throwaway nats-server processes killed and restarted on the same
port: state notifications, restored subscriptions, the outage buffer and its limit."""

from __future__ import annotations

import time
from typing import TypedDict

import pytest

from pondsocket.pubsub.base import BusState
from pondsocket.pubsub.nats import NatsPubSub, PubSubUnavailableError
from tests.nats.conftest import unique_prefix, wait_until
from tests.nats.servers import NatsServer
from tests.pubsub_conformance import Inbox, quiet

pytestmark = pytest.mark.slow


class ReconnectOptions(TypedDict):
    reconnect_wait: float
    reconnect_jitter: float
    connect_timeout: float


FAST: ReconnectOptions = {"reconnect_wait": 0.1, "reconnect_jitter": 0.05, "connect_timeout": 2.0}


async def test_restart_notifies_and_restores_subscriptions(nats_server: NatsServer) -> None:
    prefix = unique_prefix()
    node = await NatsPubSub.connect(nats_server.url, subject_prefix=prefix, **FAST)
    other = await NatsPubSub.connect(nats_server.url, subject_prefix=prefix, **FAST)
    states: dict[str, list[BusState]] = {"node": [], "other": []}
    node.add_state_listener(states["node"].append)
    other.add_state_listener(states["other"].append)
    try:
        exact, pattern = Inbox(), Inbox()
        await node.subscribe("pond:room:1", exact)
        await node.subscribe("pond:ro.*", pattern)  # a partial-token prefix: pond.> + filter
        await other.publish("pond:room:1", b"before")
        await exact.wait_for(1)
        await pattern.wait_for(1)

        nats_server.kill()
        await wait_until(lambda: not node.connected and not other.connected, "DISCONNECTED")
        assert states == {"node": [BusState.DISCONNECTED], "other": [BusState.DISCONNECTED]}
        await node.publish("pond:room:1", b"during")  # buffered by nats-py
        assert node.pending_bytes > 0

        restarted = await nats_server.astart()
        await wait_until(lambda: node.connected and other.connected, "RECONNECTED")
        print(f"\nrestart -> RECONNECTED: {time.monotonic() - restarted:.3f} s")
        for seen in states.values():
            assert seen == [BusState.DISCONNECTED, BusState.RECONNECTED]
        assert node.stats.disconnects == node.stats.reconnects == 1

        await other.publish("pond:room:1", b"after")
        await other.publish("pond:roomy", b"after-pattern")
        await other.publish("pond:x", b"filtered")
        await exact.wait_for(3)
        await pattern.wait_for(4)
        await quiet()
        assert [d for _, d in exact.items] == [b"before", b"during", b"after"]
        assert [d for _, d in pattern.items] == [b"before", b"during", b"after", b"after-pattern"]
    finally:
        await node.close()
        await other.close()


async def test_full_outage_buffer_is_a_loud_error(nats_server: NatsServer) -> None:
    bus = await NatsPubSub.connect(
        nats_server.url, subject_prefix=unique_prefix(), pending_size=2000, **FAST
    )
    try:
        nats_server.kill()
        await wait_until(lambda: not bus.connected, "DISCONNECTED")
        with pytest.raises(PubSubUnavailableError, match="pending_size 2000") as caught:
            for _ in range(100):
                await bus.publish("pond:t", b"x" * 100)
        assert "pond:t" in str(caught.value)
        assert bus.stats.publish_rejected == 1
        assert 0 < bus.pending_bytes <= 2000
    finally:
        await bus.close()
    assert bus.client.is_closed


async def test_no_reconnect_when_disabled(nats_server: NatsServer) -> None:
    bus = await NatsPubSub.connect(
        nats_server.url, subject_prefix=unique_prefix(), max_reconnect_attempts=0, **FAST
    )
    states: list[BusState] = []
    bus.add_state_listener(states.append)
    try:
        nats_server.kill()
        await wait_until(lambda: bus.client.is_closed, "the client to give up")
        assert states == [BusState.DISCONNECTED]
        with pytest.raises(PubSubUnavailableError, match="closed"):
            await bus.publish("pond:t", b"x")
    finally:
        await bus.close()
