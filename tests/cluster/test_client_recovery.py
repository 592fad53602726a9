"""The Python client on a history channel of a two-node Redis cluster, over real sockets:
a sender on node ``a`` broadcasts numbered messages while the client on node ``b``
reads them with ``async for``; through a Redis outage (SIGKILL, 3 s, restart with its
append-only file) and through a SIGKILL and restart of node ``b`` itself (the client
reconnects and recovers from the position it last saw) it gets every number once, in
order."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable

import pytest

from pondsocket.client import ChannelState, Message, PondClient, Recovery
from tests.cluster.conftest import Cluster
from tests.cluster.helpers import NodeProcess, WsClient

pytestmark = pytest.mark.slow

CHANNEL = "/history/client"
INTERVAL = 0.01  # 100 msg/s
TIMEOUT = 30.0


async def _send(sender: WsClient, stop: asyncio.Event) -> int:
    sent = 0
    while not stop.is_set():
        await sender.send("say", {"n": sent}, CHANNEL)
        sent += 1
        await asyncio.sleep(INTERVAL)
    return sent


async def _read(channel: AsyncIterable[Message], into: list[int]) -> None:
    async for message in channel:
        if message.event == "say":
            into.append(message.payload["n"])


async def _wait_for(got: list[int], count: int) -> None:
    try:
        async with asyncio.timeout(TIMEOUT):
            while len(got) < count:
                await asyncio.sleep(0.05)
    except TimeoutError:
        missing = sorted(set(range(count)) - set(got))
        raise AssertionError(f"{len(got)}/{count} received; missing {missing[:20]}") from None


async def _setup(cluster: Cluster) -> tuple[NodeProcess, NodeProcess, WsClient, PondClient]:
    a, b = await cluster.start("a", "b")
    b.keep_port = True
    sender = await cluster.client(a, "sender", join=False)
    assert (await sender.join(CHANNEL))["event"] == "ACKNOWLEDGE"
    client = PondClient(b.url, query={"name": "reader"}, backoff_initial=0.1, backoff_max=0.5)
    return a, b, sender, client


@pytest.mark.parametrize("fault_cluster", [True], ids=["persistent"], indirect=True)
async def test_client_gets_everything_through_a_redis_outage(fault_cluster: Cluster) -> None:
    redis = fault_cluster.redis
    assert redis is not None
    _, _, sender, client = await _setup(fault_cluster)
    got: list[int] = []
    async with client:
        channel = await client.channel(CHANNEL).join()
        reader = asyncio.create_task(_read(channel, got))
        stop = asyncio.Event()
        sending = asyncio.create_task(_send(sender, stop))
        try:
            await asyncio.sleep(1.0)
            redis.kill()
            await asyncio.sleep(3.0)
            await redis.start()
            await asyncio.sleep(2.0)
        finally:
            stop.set()
            sent = await sending
        await _wait_for(got, sent)
        reader.cancel()
    assert got == list(range(sent)), "every message once, in order"
    assert sent > 400


@pytest.mark.parametrize("fault_cluster", [True], ids=["persistent"], indirect=True)
async def test_client_recovers_through_a_restart_of_its_node(fault_cluster: Cluster) -> None:
    _, b, sender, client = await _setup(fault_cluster)
    got: list[int] = []
    recoveries: list[Recovery] = []
    async with client:
        channel = client.channel(CHANNEL)
        channel.on_recovery(recoveries.append)
        await channel.join()
        reader = asyncio.create_task(_read(channel, got))
        stop = asyncio.Event()
        sending = asyncio.create_task(_send(sender, stop))
        try:
            await asyncio.sleep(1.0)
            await b.kill()
            await channel.state.wait_for(ChannelState.STALLED, timeout=TIMEOUT)
            await asyncio.sleep(1.0)  # node a goes on recording meanwhile
            await b.start()
            await channel.state.wait_for(ChannelState.JOINED, timeout=TIMEOUT)
            await asyncio.sleep(1.0)
        finally:
            stop.set()
            sent = await sending
        await _wait_for(got, sent)
        reader.cancel()
    assert got == list(range(sent)), "every message once, in order"
    assert client.reconnects >= 1
    rejoin = recoveries[-1]
    assert rejoin.requested and rejoin.recovered, rejoin
    assert rejoin.missed > 0, "the restart was long enough to miss messages"
