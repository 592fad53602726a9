"""Throughput and latency of any PubSub backend, through the same interface PondSocket uses.

    python benchmarks/pubsub_bench.py URL [--count 20000] [--rate 1000] [--size 100]

URL picks the backend (``memory://``, ``redis://127.0.0.1:6379``, ``nats://127.0.0.1:4222``,
``amqp://guest:guest@127.0.0.1/``, ``kafka://127.0.0.1:9092``, ...). Two instances in this
process (a publisher and a subscriber, as two nodes would be) on a fresh topic:

* **throughput**: ``count`` messages published as fast as ``publish()`` accepts them, timed
  until the subscriber has received them all (msg/s; lost messages are reported);
* **latency**: ``--rate`` messages per second for ``--seconds``, each carrying its send
  time; p50/p99/max one-way latency in ms (same clock: same process).

The two instances share one CPU budget with the broker on a small machine; compare rows of
one run rather than absolutes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import time
import uuid
from typing import Any

from pondsocket.pubsub import InMemoryPubSub, PubSub
from pondsocket.pubsub.memory import InMemoryBroker
from pondsocket.pubsub.urls import connect_url


async def open_pair(url: str) -> tuple[PubSub, PubSub]:
    if url.startswith("memory:"):
        broker = InMemoryBroker()
        return InMemoryPubSub(broker), InMemoryPubSub(broker)
    return await connect_url(url), await connect_url(url)


async def throughput(pub: PubSub, sub: PubSub, count: int, size: int) -> dict[str, Any]:
    topic = f"bench.{uuid.uuid4().hex}"
    received = 0
    done = asyncio.Event()

    async def handler(_topic: str, _data: bytes) -> None:
        nonlocal received
        received += 1
        if received == count:
            done.set()

    subscription = await sub.subscribe(topic, handler)
    await asyncio.sleep(0.5)  # the broker-side subscription must be live
    payload = b"x" * size
    start = time.perf_counter()
    for _ in range(count):
        await pub.publish(topic, payload)
    published = time.perf_counter() - start
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(done.wait(), timeout=max(30.0, count / 500))
    elapsed = time.perf_counter() - start
    await subscription.cancel()
    return {
        "publish_msgs_per_s": round(count / published),
        "delivered_msgs_per_s": round(received / elapsed),
        "lost": count - received,
    }


async def latency(pub: PubSub, sub: PubSub, rate: int, seconds: float, size: int) -> dict[str, Any]:
    topic = f"bench.{uuid.uuid4().hex}"
    samples: list[float] = []

    async def handler(_topic: str, data: bytes) -> None:
        sent = float(data[:20])
        samples.append((time.perf_counter() - sent) * 1000)

    subscription = await sub.subscribe(topic, handler)
    await asyncio.sleep(0.5)
    total = int(rate * seconds)
    start = time.perf_counter()
    for i in range(total):
        target = start + i / rate
        delay = target - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        stamp = f"{time.perf_counter():<20.6f}".encode()
        await pub.publish(topic, stamp + b"x" * max(0, size - 20))
    await asyncio.sleep(1.0)
    await subscription.cancel()
    if not samples:
        return {"lost": total}
    ordered = sorted(samples)
    return {
        "p50_ms": round(statistics.median(ordered), 3),
        "p99_ms": round(ordered[int(len(ordered) * 0.99) - 1], 3),
        "max_ms": round(ordered[-1], 3),
        "lost": total - len(samples),
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("url")
    parser.add_argument("--count", type=int, default=20_000)
    parser.add_argument("--rate", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--size", type=int, default=100)
    args = parser.parse_args()
    pub, sub = await open_pair(args.url)
    try:
        result = {
            "url": args.url,
            "size": args.size,
            "throughput": await throughput(pub, sub, args.count, args.size),
            "latency": await latency(pub, sub, args.rate, args.seconds, args.size),
        }
    finally:
        await pub.close()
        await sub.close()
    print(json.dumps(result))


if __name__ == "__main__":
    asyncio.run(main())
