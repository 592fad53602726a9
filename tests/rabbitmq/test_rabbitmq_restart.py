"""The machine's broker application restarted (``rabbitmqctl stop_app`` / ``start_app``)
under traffic: DISCONNECTED then RECONNECTED, bindings restored (checked with
``rabbitmqctl list_bindings``), messages flow afterwards, and publishes made during the
outage are buffered in the outbox and delivered. The broker is always restarted in a
``finally``. Run with ``-s`` to see the time from broker-back to RECONNECTED."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import time

import pytest

from pondsocket.pubsub import BusState
from tests.pubsub_conformance import Inbox
from tests.rabbitmq.conftest import RabbitFactory, port_open, unavailable, wait_until
from tests.rabbitmq.test_rabbitmq_pubsub import broker_bindings

pytestmark = pytest.mark.slow


def rabbitmqctl(*args: str, timeout: float = 120) -> None:
    subprocess.run(["rabbitmqctl", *args], check=True, capture_output=True, timeout=timeout)


async def test_broker_restart(rabbit_factory: RabbitFactory, exchange_name: str) -> None:
    if shutil.which("rabbitmqctl") is None or os.geteuid() != 0:
        unavailable("restarting the broker needs rabbitmqctl as root")
    async with rabbit_factory(reconnect_interval=0.5) as bus:
        seen: list[tuple[BusState, float]] = []
        bus.add_state_listener(lambda state: seen.append((state, time.monotonic())))
        exact, pattern, traffic = Inbox(), Inbox(), Inbox()
        await bus.subscribe("pond:exact", exact)
        await bus.subscribe("pond:room:.*", pattern)
        await bus.subscribe("pond:traffic", traffic)
        keys_before = broker_bindings(exchange_name, bus.queue_name)
        assert {"pond.exact", "pond.room.*.#", "pond.traffic"} <= keys_before
        await bus.publish("pond:traffic", b"before")
        await traffic.wait_for(1)

        stopped = False
        try:
            await asyncio.to_thread(rabbitmqctl, "stop_app")
            stopped = True
            await wait_until(lambda: len(seen) >= 1, "DISCONNECTED", timeout=30)
            assert [s for s, _ in seen] == [BusState.DISCONNECTED] and not bus.connected
            for i in range(5):  # buffered in the outbox meanwhile
                await bus.publish("pond:exact", b"during-%d" % i)
            late = Inbox()
            async with asyncio.timeout(1):  # returns at once during the outage
                await bus.subscribe("pond:late", late)
            start = time.monotonic()
            await asyncio.to_thread(rabbitmqctl, "start_app")
            stopped = False
            back = time.monotonic()
            await wait_until(port_open, "the broker to listen again", timeout=60)
        finally:
            if stopped:
                await asyncio.to_thread(rabbitmqctl, "start_app")
        await wait_until(lambda: len(seen) >= 2, "RECONNECTED", timeout=60)
        assert [s for s, _ in seen] == [BusState.DISCONNECTED, BusState.RECONNECTED]
        print(
            f"\nstart_app took {back - start:.2f} s; RECONNECTED {seen[1][1] - start:.2f} s "
            f"after it was called ({seen[1][1] - back:+.2f} s from its return)"
        )
        assert bus.connected and bus.stats.reconnects == 1

        keys_after = broker_bindings(exchange_name, bus.queue_name)
        assert keys_before | {"pond.late"} <= keys_after
        items = await exact.wait_for(5, timeout=15)
        assert [d for _, d in items] == [b"during-%d" % i for i in range(5)]
        await bus.publish("pond:room:1", b"after")
        await bus.publish("pond:late", b"after")
        await pattern.wait_for(1)
        await late.wait_for(1)
