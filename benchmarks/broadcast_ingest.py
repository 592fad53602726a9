"""Client broadcasts into Redis: how many broadcasts per second can one node take from its
clients and publish to the cluster, without disconnecting anyone?

    python benchmarks/broadcast_ingest.py [--clients 40] [--seconds 5] [--procs 2]

Runs the benchmark server (standalone transport) joined to Redis; ``--clients`` websockets
clients, spread over ``--procs`` processes, each in its own room, send ``send`` events as
fast as a window of 20 in flight allows (each event is broadcast to its room, so back to
its sender, and published to Redis as a USER_MESSAGE). A Redis subscriber in this process
counts the envelopes that reach Redis; the clients report disconnections.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import subprocess
import sys
import time
import uuid
from multiprocessing.queues import Queue
from typing import Any, cast

from redis.asyncio import Redis

WINDOW = 20


def client_proc(
    port: int, first: int, count: int, seconds: float, out: Queue[tuple[int, int]]
) -> None:
    async def one(index: int) -> tuple[int, bool]:
        from websockets.asyncio.client import connect

        room = f"/room/{index}"
        sent = 0
        async with connect(f"ws://127.0.0.1:{port}/socket", compression=None) as ws:
            await ws.recv()
            await ws.send(
                json.dumps(
                    {
                        "action": "JOIN_CHANNEL",
                        "event": "JOIN_CHANNEL",
                        "channelName": room,
                        "requestId": "j",
                        "payload": {},
                    }
                )
            )
            await ws.recv()  # ACK
            body = json.dumps(
                {
                    "action": "BROADCAST",
                    "event": "send",
                    "channelName": room,
                    "requestId": "s",
                    "payload": {"x": "y" * 64},
                }
            )
            in_flight = 0
            end = time.perf_counter() + seconds
            while time.perf_counter() < end:
                while in_flight < WINDOW:
                    await ws.send(body)
                    in_flight += 1
                    sent += 1
                await ws.recv()  # our own broadcast coming back frees a slot
                in_flight -= 1
            return sent, ws.close_code is None

    async def main() -> None:
        results = await asyncio.gather(
            *(one(first + i) for i in range(count)), return_exceptions=True
        )
        sent = sum(r[0] for r in results if isinstance(r, tuple))
        dropped = sum(1 for r in results if not isinstance(r, tuple) or not r[1])
        out.put((sent, dropped))

    asyncio.run(main())


async def count_envelopes(url: str, namespace: str, seconds: float, started: asyncio.Event) -> int:
    redis = Redis.from_url(url)
    pubsub = redis.pubsub()
    await pubsub.psubscribe(f"pondsocket:v1:{namespace}:socket:*")
    started.set()
    total = 0
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.5)
        if message is not None and b'"USER_MESSAGE"' in message["data"]:
            total += 1
    # Any: aclose() is untyped before redis-py 8.2 and typed from it
    await cast(Any, pubsub).aclose()
    await redis.aclose()
    return total


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clients", type=int, default=40)
    parser.add_argument("--procs", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--redis", default="redis://127.0.0.1:6379")
    args = parser.parse_args()
    namespace = f"ingest{uuid.uuid4().hex[:8]}"
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pondsocket_bench.server",
            "--redis",
            args.redis,
            "--namespace",
            namespace,
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        port = int((server.stdout.readline() if server.stdout else "").split()[1])
        started = asyncio.Event()
        counter = asyncio.create_task(
            count_envelopes(args.redis, namespace, args.seconds + 3, started)
        )
        await started.wait()
        out: Queue[tuple[int, int]] = multiprocessing.Queue()
        per = args.clients // args.procs
        procs = [
            multiprocessing.Process(
                target=client_proc, args=(port, i * per, per, args.seconds, out)
            )
            for i in range(args.procs)
        ]
        for p in procs:
            p.start()
        results = [await asyncio.to_thread(out.get, True, args.seconds + 60) for _ in procs]
        for p in procs:
            p.join(10)
        published = await counter
        sent = sum(r[0] for r in results)
        print(
            json.dumps(
                {
                    "clients": args.clients,
                    "seconds": args.seconds,
                    "client_broadcasts_per_s": round(sent / args.seconds),
                    "envelopes_in_redis_per_s": round(published / args.seconds),
                    "disconnected_clients": sum(r[1] for r in results),
                }
            )
        )
    finally:
        server.terminate()
        server.wait(10)


if __name__ == "__main__":
    asyncio.run(main())
