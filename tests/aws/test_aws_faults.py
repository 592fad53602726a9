"""SnsSqsPubSub when the emulator goes away: the moto server is killed (losing every
topic, queue and subscription, as it keeps them in memory) and started again on the same
port. The backend must report DISCONNECTED, recreate its topology, report RECONNECTED,
and deliver again."""

from __future__ import annotations

import asyncio
import time

import pytest

from pondsocket.pubsub import BusState
from pondsocket.pubsub.aws import SnsSqsPubSub
from tests.aws.conftest import wait_until
from tests.aws.moto_server import MotoServer
from tests.pubsub_conformance import Inbox

pytestmark = pytest.mark.slow


async def test_emulator_restart(own_moto: MotoServer) -> None:
    url = own_moto.url("restart", wait_time_seconds=1)
    a = await SnsSqsPubSub.connect(url, backoff_cap=0.5)
    b = await SnsSqsPubSub.connect(url, backoff_cap=0.5)
    states: dict[str, list[BusState]] = {"a": [], "b": []}
    a.add_state_listener(states["a"].append)
    b.add_state_listener(states["b"].append)
    try:
        inbox = Inbox()
        await b.subscribe("pond.r.*", inbox)
        await a.publish("pond.r.before", b"1")
        await inbox.wait_for(1)

        own_moto.stop()
        await wait_until(lambda: states["b"] == [BusState.DISCONNECTED], "b DISCONNECTED")
        await a.publish("pond.r.probe", b"lost?")  # a notices on its first failed call
        await wait_until(lambda: states["a"] == [BusState.DISCONNECTED], "a DISCONNECTED")
        await asyncio.sleep(1.0)
        started = time.monotonic()
        await asyncio.to_thread(own_moto.start)
        answered = time.monotonic()
        both = [BusState.DISCONNECTED, BusState.RECONNECTED]
        await wait_until(lambda: states["a"] == both and states["b"] == both, "RECONNECTED", 30)
        reconnected = time.monotonic()
        print(
            f"\nmoto restart: server answered after {answered - started:.2f} s; both nodes "
            f"RECONNECTED {reconnected - answered:.2f} s later "
            f"(a: {a.stats.recreated} recreated, b: {b.stats.recreated} recreated)"
        )
        assert a.stats.recreated >= 1 and b.stats.recreated >= 1

        await a.publish("pond.r.after", b"2")  # "lost?", held during the outage, may come too
        await wait_until(lambda: ("pond.r.after", b"2") in inbox.items, "delivery after restart")
    finally:
        await a.close()
        await b.close()
