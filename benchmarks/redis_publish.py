"""Publish throughput of RedisPubSub (pipelined outbox) against plain redis-py calls.

    python benchmarks/redis_publish.py [--url redis://127.0.0.1:6379] [--count 50000] [--uvloop]

Prints messages per second:

* ``redis-py await publish()``: one round trip per message (the unbatched baseline);
* ``RedisPubSub batch=N``: ``await bus.publish()`` in a loop, timed until Redis has
  confirmed the last message (``bus.stats.published``); N is ``publish_batch_size``;
* ``... + subscriber``: the same with a second RedisPubSub subscribed to the topic,
  timed until it has received every message (both in this process, sharing its CPU).

Channels use a random prefix; nothing else on the Redis is disturbed. Results on a noisy
2-vCPU VM vary by 20-40% between runs: compare rows, not absolutes.
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid

from redis.asyncio import Redis

from pondsocket.pubsub.redis import RedisPubSub


async def unbatched(url: str, count: int, payload: bytes, prefix: str) -> float:
    async with Redis.from_url(url) as client:
        start = time.perf_counter()
        for _ in range(count):
            await client.publish(f"{prefix}bench", payload)
        return count / (time.perf_counter() - start)


async def batched(url: str, count: int, payload: bytes, prefix: str, batch: int) -> float:
    bus = await RedisPubSub.connect(url, channel_prefix=prefix, publish_batch_size=batch)
    try:
        start = time.perf_counter()
        for _ in range(count):
            await bus.publish("bench", payload)
        while bus.stats.published < count:
            await asyncio.sleep(0.001)
        return count / (time.perf_counter() - start)
    finally:
        await bus.close()


async def end_to_end(url: str, count: int, payload: bytes, prefix: str) -> float:
    sender = await RedisPubSub.connect(url, channel_prefix=prefix)
    receiver = await RedisPubSub.connect(url, channel_prefix=prefix, queue_size=count)
    received = 0
    done = asyncio.Event()

    async def handler(topic: str, data: bytes) -> None:
        nonlocal received
        received += 1
        if received == count:
            done.set()

    try:
        await receiver.subscribe("bench", handler)
        start = time.perf_counter()
        for _ in range(count):
            await sender.publish("bench", payload)
        await asyncio.wait_for(done.wait(), 120)
        return count / (time.perf_counter() - start)
    finally:
        await sender.close()
        await receiver.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="redis://127.0.0.1:6379")
    parser.add_argument("--count", type=int, default=50_000, help="messages per batched run")
    parser.add_argument("--uvloop", action="store_true", help="run on uvloop")
    args = parser.parse_args()
    print(f"event loop: {type(asyncio.get_running_loop()).__module__}")
    prefix = f"bench:{uuid.uuid4().hex[:8]}:"
    for size in (100, 1024):
        payload = b"x" * size
        print(f"\n{size} B payload")
        rate = await unbatched(args.url, max(args.count // 10, 1000), payload, prefix)
        print(f"  {'redis-py await publish() (unbatched)':40} {rate:>10,.0f} msg/s")
        for batch in (1, 10, 100, 500):
            rate = await batched(args.url, args.count, payload, prefix, batch)
            print(f"  {f'RedisPubSub batch={batch}':40} {rate:>10,.0f} msg/s")
        rate = await end_to_end(args.url, args.count, payload, prefix)
        print(f"  {'RedisPubSub batch=100 + subscriber':40} {rate:>10,.0f} msg/s delivered")


if __name__ == "__main__":
    import sys

    if "--uvloop" in sys.argv:
        import uvloop

        uvloop.run(main())
    else:
        asyncio.run(main())
