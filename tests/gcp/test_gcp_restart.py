"""The emulator killed and restarted on the same port (it keeps everything in memory, so
the topic and the subscriptions are gone): DISCONNECTED, then RECONNECTED once the backend
has recreated them, and delivery works again."""

from __future__ import annotations

import asyncio
import time
import uuid
from functools import partial

import pytest

from pondsocket.pubsub import BusState
from pondsocket.pubsub.gcp import GooglePubSub
from tests.gcp.conftest import Emulator, wait_until
from tests.pubsub_conformance import Inbox

pytestmark = pytest.mark.slow


@pytest.mark.timeout(120)
async def test_emulator_restart(emulator: Emulator) -> None:
    url = f"gcppubsub://restart-{uuid.uuid4().hex[:8]}?emulator={emulator.host}"
    a = await GooglePubSub.connect(url, health_check_interval=0.5)
    b = await GooglePubSub.connect(url, health_check_interval=0.5)
    states: dict[str, list[tuple[BusState, float]]] = {"a": [], "b": []}

    def record(name: str, state: BusState) -> None:
        states[name].append((state, time.monotonic()))

    for name, bus in (("a", a), ("b", b)):
        bus.add_state_listener(partial(record, name))
    try:
        inbox = Inbox()
        await b.subscribe("pond.r.*", inbox)
        await a.publish("pond.r.1", b"before")
        await inbox.wait_for(1)

        killed = time.monotonic()
        emulator.kill()
        await wait_until(
            lambda: all(s and s[-1][0] is BusState.DISCONNECTED for s in states.values()),
            "DISCONNECTED on both nodes",
        )
        detected = max(s[-1][1] for s in states.values()) - killed
        await asyncio.sleep(1.0)
        startup = await asyncio.to_thread(emulator.start)
        restarted = time.monotonic()
        await wait_until(
            lambda: all(s[-1][0] is BusState.RECONNECTED for s in states.values()),
            "RECONNECTED on both nodes",
            timeout=60,
        )
        back = max(s[-1][1] for s in states.values()) - restarted
        assert a.stats.recreated + b.stats.recreated >= 2  # topic and subscriptions were gone

        await a.publish("pond.r.2", b"after")
        items = await inbox.wait_for(2, timeout=20)
        assert items[-1] == ("pond.r.2", b"after")
        print(
            f"\nemulator restart: DISCONNECTED {detected:.2f} s after the kill; emulator up "
            f"in {startup:.2f} s; RECONNECTED {back:.2f} s after it listened"
        )
    finally:
        await a.close()
        await b.close()


async def test_a_stopped_pull_ending_late_is_not_an_outage(emulator: Emulator) -> None:
    # The client's pull thread can outlive the stop timeout; its end must not make the
    # supervisor tear down the pull that replaced it (a spurious second outage).
    url = f"gcppubsub://late-{uuid.uuid4().hex[:8]}?emulator={emulator.host}"
    bus = await GooglePubSub.connect(url, health_check_interval=0.2)
    states: list[BusState] = []
    bus.add_state_listener(states.append)
    try:
        current = bus._pull
        assert current is not None
        bus._pull_ended(object())  # some earlier pull, long replaced
        await asyncio.sleep(0.6)
        assert states == [] and bus._pull is current and bus.connected
        bus._pull_ended(current)  # the live pull ending is an outage
        await wait_until(lambda: BusState.DISCONNECTED in states, "DISCONNECTED")
    finally:
        await bus.close()
