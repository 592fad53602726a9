"""Raw broker figures: any PubSub backend publish -> handler, and ``redis-benchmark PUBLISH``.

Two instances of the backend named by the URL in this process (a publisher and
a subscriber, as two nodes would be) on a fresh topic, as in ``benchmarks/pubsub_bench.py``:

* throughput: ``count`` messages published as fast as ``publish()`` accepts them, timed
  until the subscriber has them all;
* latency: ``rate`` msg/s for ``seconds``, each carrying its ``monotonic_ns()`` send time.

``redis-benchmark`` (when installed) gives the physical reference of the same Redis:
PUBLISH without a subscriber, unpipelined and with ``-P 16``.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import shutil
import time
import uuid
from typing import Any
from urllib.parse import urlsplit

from pondsocket.pubsub.base import PubSub
from pondsocket.pubsub.urls import connect_url
from pondsocket_bench.stats import Histogram, bucket, summary_ms

_STAMP = 20  # bytes of zero-padded monotonic_ns at the start of a latency message


async def _throughput(pub: PubSub, sub: PubSub, count: int, size: int) -> dict[str, Any]:
    topic = f"bench.{uuid.uuid4().hex}"
    received = 0
    done = asyncio.Event()

    async def handler(_topic: str, _data: bytes) -> None:
        nonlocal received
        received += 1
        if received >= count:
            done.set()

    subscription = await sub.subscribe(topic, handler)
    await asyncio.sleep(0.3)  # the broker-side subscription must be live
    payload = b"x" * size
    start = time.perf_counter()
    for _ in range(count):
        await pub.publish(topic, payload)
    published = time.perf_counter() - start
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(max(10.0, count / 1000)):
            await done.wait()
    elapsed = time.perf_counter() - start
    await subscription.cancel()
    return {
        "published": count,
        "publish_msgs_per_s": round(count / published) if published else None,
        "delivered_msgs_per_s": round(received / elapsed) if elapsed else None,
        "lost": count - received,
    }


async def _latency(
    pub: PubSub, sub: PubSub, rate: float, seconds: float, size: int
) -> dict[str, Any]:
    topic = f"bench.{uuid.uuid4().hex}"
    hist: Histogram = {}
    received = 0
    total = max(1, int(rate * seconds))
    done = asyncio.Event()

    async def handler(_topic: str, data: bytes) -> None:
        nonlocal received
        received += 1
        if received >= total:
            done.set()
        key = bucket((time.monotonic_ns() - int(data[:_STAMP])) // 1000)
        hist[key] = hist.get(key, 0) + 1

    subscription = await sub.subscribe(topic, handler)
    await asyncio.sleep(0.3)
    pad = b"x" * max(0, size - _STAMP)
    start = time.monotonic()
    for i in range(total):
        delay = start + i / rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        await pub.publish(topic, b"%020d" % time.monotonic_ns() + pad)
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(3.0):
            await done.wait()
    await subscription.cancel()
    return {"sent": total, "lost": total - received, **summary_ms(hist)}


async def measure(
    url: str, *, count: int, rate: float, seconds: float, size: int
) -> dict[str, Any]:
    """Throughput and latency of the backend at ``url`` (any scheme of pubsub/urls.py)."""
    pub = await connect_url(url)
    try:
        sub = await connect_url(url)
        try:
            return {
                "throughput": await _throughput(pub, sub, count, size),
                "latency": await _latency(pub, sub, rate, seconds, size),
            }
        finally:
            await sub.close()
    finally:
        await pub.close()


async def redis_benchmark(
    url: str, *, requests: int, size: int, pipeline: int = 1, timeout: float = 120.0
) -> dict[str, Any] | None:
    """``redis-benchmark -q PUBLISH`` (no subscriber) against ``url``; None if not installed."""
    binary = shutil.which("redis-benchmark")
    if binary is None:
        return None
    parts = urlsplit(url)
    args = [binary, "-h", parts.hostname or "127.0.0.1", "-p", str(parts.port or 6379)]
    if parts.password:
        args += ["-a", parts.password, "--no-auth-warning"]
    args += ["-n", str(requests), "-c", "50", "-P", str(pipeline), "-q"]
    args += ["PUBLISH", f"bench.{uuid.uuid4().hex}", "x" * size]
    process = await asyncio.create_subprocess_exec(
        *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    try:
        async with asyncio.timeout(timeout):
            output, _ = await process.communicate()
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()
        raise
    rates = re.findall(rb"([\d.]+) requests per second", output)
    return {
        "command": f"redis-benchmark -h {args[2]} -p {args[4]} -n {requests} -c 50 "
        f"-P {pipeline} -q PUBLISH <topic> <{size} B>",
        "pipeline": pipeline,
        "requests": requests,
        "msgs_per_s": round(float(rates[-1])) if rates else None,
        "status": process.returncode,
    }
