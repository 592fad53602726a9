"""Messages across a Redis restart under traffic, on a channel with history and on one
without, in the same run: two node processes, a client on each sending 100 msg/s into
both channels, Redis SIGKILLed for 3 s and restarted on its port (with its append-only
file, as a Redis that holds history must run). Figures are printed (``-s``)."""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.cluster.conftest import Cluster
from tests.cluster.helpers import ROOM, WsClient
from tests.support import eventually

pytestmark = pytest.mark.slow

HISTORY_ROOM = "/history/1"
INTERVAL = 0.01  # 100 msg/s per client and channel
OUTAGE = 3.0


async def _chatter(client: WsClient, stop: asyncio.Event) -> int:
    sent = 0
    while not stop.is_set():
        for channel in (ROOM, HISTORY_ROOM):
            await client.send("say", {"chatter": client.name, "n": sent}, channel)
        sent += 1
        await asyncio.sleep(INTERVAL)
    return sent


def received(client: WsClient, channel: str, sender: str) -> list[int]:
    return [
        f["payload"]["n"]
        for f in client.frames
        if f["channelName"] == channel
        and f["event"] == "say"
        and f["payload"].get("chatter") == sender
    ]


@pytest.mark.parametrize("fault_cluster", [True], ids=["persistent"], indirect=True)
async def test_redis_restart_loses_nothing_on_history_channels(fault_cluster: Cluster) -> None:
    server = fault_cluster.redis
    assert server is not None
    a, b = await fault_cluster.start("a", "b")
    alice = await fault_cluster.client(a, "alice")
    bob = await fault_cluster.client(b, "bob")
    for client in (alice, bob):
        answer = await client.join(HISTORY_ROOM)
        assert answer["event"] == "ACKNOWLEDGE"
    for client in (alice, bob):
        await client.wait_presence(["alice", "bob"])
        await client.wait_presence(["alice", "bob"], channel=HISTORY_ROOM)

    stop = asyncio.Event()
    chatter = [asyncio.create_task(_chatter(c, stop)) for c in (alice, bob)]
    try:
        await asyncio.sleep(1.0)
        server.kill()
        await asyncio.sleep(OUTAGE)
        await server.start()
        await asyncio.sleep(3.0)
    finally:
        stop.set()
        sent_alice, sent_bob = await asyncio.gather(*chatter)
    done = time.monotonic()

    def complete() -> bool:
        return (
            len(received(bob, HISTORY_ROOM, "alice")) >= sent_alice
            and len(received(alice, HISTORY_ROOM, "bob")) >= sent_bob
        )

    try:
        await eventually(complete, "every history message on the other node", timeout=30)
    except AssertionError:
        got_b, got_a = received(bob, HISTORY_ROOM, "alice"), received(alice, HISTORY_ROOM, "bob")
        raise AssertionError(
            f"a->b {len(got_b)} of {sent_alice}, missing {_missing(got_b, sent_alice)}; "
            f"b->a {len(got_a)} of {sent_bob}, missing {_missing(got_a, sent_bob)}"
        ) from None
    settled = time.monotonic() - done
    plain_lost = (
        sent_alice - len(set(received(bob, ROOM, "alice"))),
        sent_bob - len(set(received(alice, ROOM, "bob"))),
    )
    print(
        f"\nRedis restart ({OUTAGE:.0f} s) under 2 x 100 msg/s: without history "
        f"{plain_lost[0]} of {sent_alice} lost a->b, {plain_lost[1]} of {sent_bob} b->a; "
        f"with history 0 lost, all delivered {settled:.2f} s after the traffic stopped"
    )
    for receiver, sender, sent in ((bob, "alice", sent_alice), (alice, "bob", sent_bob)):
        assert received(receiver, HISTORY_ROOM, sender) == list(range(sent))  # in order, once
        # and each message sent by a member comes back to it once too
        assert received(receiver, HISTORY_ROOM, receiver.name) == list(
            range(sent_alice if receiver is alice else sent_bob)
        )
    offsets = [
        f["payload"]["_position"]["offset"]
        for f in bob.frames
        if f["channelName"] == HISTORY_ROOM and f["event"] == "say"
    ]
    assert offsets == sorted(set(offsets))
    lost = [f for f in bob.frames if f["event"] == "continuity_lost"]
    assert all(f["channelName"] == ROOM for f in lost)  # only the channel without history


def _missing(got: list[int], sent: int) -> str:
    gone = sorted(set(range(sent)) - set(got))
    return f"{len(gone)} ({gone[:3]}...{gone[-3:]})" if gone else "none"
