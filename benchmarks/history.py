"""What channel history costs, measured in one process against a baseline run in the same
process:

1. Server CPU per delivery of a broadcast into a room of ``--members`` members: a channel
   without history, with ``MemoryHistory``, and with ``RedisHistory`` (the machine's Redis).
2. Recovery: ``--clients`` clients rejoin with a position ``--missed`` broadcasts back; the
   time until every one has its replay and its ``recovery`` signal, and what Redis did
   (commands, from ``INFO commandstats``).

    python benchmarks/history.py [--members 100] [--messages 5000] [--clients 100] [--missed 1000]

Members are in-process connections whose outlet only counts frames, so the figures are the
server's work: encoding, fan-out, history bookkeeping and the store's client.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import time
import uuid
from typing import Any

import orjson
from redis.asyncio import Redis

from pondsocket import PondSocket
from pondsocket.cluster import ClusterOptions
from pondsocket.core.request import ConnectionRequest
from pondsocket.core.session import Session
from pondsocket.history.memory import MemoryHistory
from pondsocket.history.redis import RedisHistory
from pondsocket.history.store import HistoryStore

REDIS = "redis://127.0.0.1:6379"
ROOM = "/room/bench"


class CountingOutlet:
    def __init__(self) -> None:
        self.frames = 0
        self.signal: dict[str, Any] | None = None
        self.session: Session | None = None

    def send(self, frame: bytes) -> None:
        self.frames += 1
        if b'"event":"recovery"' in frame:
            self.signal = orjson.loads(frame)["payload"]

    def close(self, code: int, reason: str) -> None:
        pass


def build(history: HistoryStore | None, size: int) -> PondSocket:
    pond = PondSocket(history=history, cluster=ClusterOptions(namespace=uuid.uuid4().hex[:8]))
    endpoint = pond.create_endpoint("/socket", lambda ctx: ctx.accept())
    lobby = endpoint.create_channel("/room/:id", lambda ctx: ctx.accept())
    if history is not None:
        lobby.history(size=size, ttl=600)
    return pond


async def member(pond: PondSocket, params: dict[str, Any] | None = None) -> CountingOutlet:
    endpoint = pond.endpoints[0]
    found = pond.match("/socket")
    assert found is not None
    request = ConnectionRequest.from_raw("/socket", "", [], ("127.0.0.1", 1))
    ctx = await endpoint.handshake(request, found[1])
    outlet = CountingOutlet()
    session: Session = endpoint.open(ctx, outlet)
    outlet.session = session
    join = {
        "action": "JOIN_CHANNEL",
        "event": "JOIN_CHANNEL",
        "channelName": ROOM,
        "requestId": uuid.uuid4().hex,
        "payload": params or {},
    }
    await session.receive(orjson.dumps(join))
    return outlet


async def fan_out(history: HistoryStore | None, members: int, messages: int) -> float:
    """Server CPU seconds per delivery."""
    pond = build(history, size=1000)
    outlets = [await member(pond) for _ in range(members)]
    await asyncio.sleep(0.2)  # the joins' recovery signals
    channel = pond.endpoints[0].get_channel(ROOM)
    assert channel is not None
    before = [o.frames for o in outlets]
    payload = {"text": "hello world " * 8}
    gc.collect()
    start = time.process_time()
    for i in range(messages):
        channel.broadcast("msg", {**payload, "n": i})
        if i % 500 == 499:
            await asyncio.sleep(0)  # let the history writer run, as a server loop would
    while sum(o.frames for o in outlets) - sum(before) < members * messages:
        await asyncio.sleep(0.001)
    cpu = time.process_time() - start
    await close(pond, outlets)
    return cpu / (members * messages)


async def close(pond: PondSocket, outlets: list[CountingOutlet]) -> None:
    for outlet in outlets:
        if outlet.session is not None:
            await outlet.session.close()
    await pond.shutdown()


async def redis_commands(client: Redis) -> int:
    info = await client.info("commandstats")
    return sum(int(v["calls"]) for v in info.values() if isinstance(v, dict))


async def recovery(clients: int, missed: int) -> tuple[float, float, int]:
    """Seconds until every client is caught up, CPU seconds, Redis commands used."""
    client = Redis.from_url(REDIS)
    store = RedisHistory(client, prefix="pondsocket-bench:history")
    pond = build(store, size=missed)
    first = await member(pond)
    await asyncio.sleep(0.2)
    assert first.signal is not None
    start_at = {"offset": first.signal["offset"], "epoch": first.signal["epoch"]}
    channel = pond.endpoints[0].get_channel(ROOM)
    assert channel is not None
    for i in range(missed):
        channel.broadcast("msg", {"n": i})
    while first.frames < missed + 3:  # CONNECTION, ACK, signal
        await asyncio.sleep(0.01)
    commands = await redis_commands(client)
    gc.collect()
    wall, cpu = time.perf_counter(), time.process_time()
    outlets = await asyncio.gather(*(member(pond, {"recover": start_at}) for _ in range(clients)))
    while not all(o.signal is not None for o in outlets):
        await asyncio.sleep(0.001)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    used = await redis_commands(client) - commands - 1  # the INFO itself
    assert all(o.signal and o.signal["recovered"] for o in outlets)
    assert all(o.frames == missed + 3 for o in outlets)
    await close(pond, [first, *outlets])
    await client.aclose()
    return wall, cpu, used


async def main(args: argparse.Namespace) -> None:
    print(f"fan-out: {args.members} members, {args.messages} broadcasts, CPU per delivery")
    rounds: dict[str, list[float]] = {"none": [], "memory": [], "redis": []}
    for _ in range(args.rounds):  # interleaved: the machine's noise hits each alike
        rounds["none"].append(await fan_out(None, args.members, args.messages))
        rounds["memory"].append(await fan_out(MemoryHistory(), args.members, args.messages))
        redis = RedisHistory.from_url(REDIS, prefix="pondsocket-bench:history")
        rounds["redis"].append(await fan_out(redis, args.members, args.messages))
        await redis.close()
    base = min(rounds["none"])
    for name, values in rounds.items():
        best = min(values)
        print(f"  {name:7s} {best * 1e6:6.3f} µs/delivery  ({best / base:.2f}x no history)")
    wall, cpu, used = await recovery(args.clients, args.missed)
    print(
        f"recovery: {args.clients} clients x {args.missed} missed broadcasts (Redis):"
        f" all caught up in {wall * 1000:.0f} ms, {cpu * 1000:.0f} ms CPU,"
        f" {used} Redis commands ({used / args.clients:.1f} per client)"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--members", type=int, default=100)
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--missed", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    asyncio.run(main(parser.parse_args()))
