"""The benchmark scenarios. Each runs its server and load-generator processes, measures,
and returns one result row (a flat dict); every child is stopped before it returns.

* ``fanout``: subscribers on one channel, one sender; deliveries/s, server CPU per
  delivery, one-way latency. ``lost`` counts deliveries that never came (subscribers
  closed or frames dropped); only a run with 0 lost has ``sustained_per_s`` (the rate the
  room sustains with nobody dropped) and ``server_us_per_delivery``.
* ``cross-node``: two servers clustered over Redis; subscribers on B, sender on A.
* ``idle``: joined idle connections; server RSS per connection, connect+join time.
* ``join-storm``: connects+joins per second and server CPU per join.
* ``pubsub``: raw ``RedisPubSub`` throughput/latency next to ``redis-benchmark``.
"""

from __future__ import annotations

import asyncio
import math
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from pondsocket_bench import pubsub
from pondsocket_bench.cpu import CpuMeter, cpu_seconds, rss_bytes
from pondsocket_bench.loadgen import LoadConfig
from pondsocket_bench.procs import Child, ChildError, Children
from pondsocket_bench.progress import Progress
from pondsocket_bench.stats import from_json, merge, summary_ms

CHANNEL = "/room/1"
SUBSCRIBERS_PER_LOADGEN = 250  # one picows process tops out near 25k deliveries/s
CONNECTIONS_PER_LOADGEN = 5000
MAX_AUTO_LOADGENS = 4


@dataclass
class Settings:
    duration: float = 5.0
    size: int = 100
    presence: bool = False
    subscribers: int = 500
    rate: float | None = None  # fanout: None = as fast as the window allows; cross-node: 1000
    window: int = 10
    connections: int = 1000
    concurrency: int = 100
    loadgens: int | None = None
    redis: str = "redis://127.0.0.1:6379"
    pubsub: str | None = None
    """Backend URL for the pubsub scenario (default: ``redis``)."""
    count: int = 20_000
    connect_timeout: float = 10.0
    drain_timeout: float = 30.0
    """How long deliveries still arriving after the sender stopped are waited for (a
    second without any ends it sooner): what is late is not counted as lost."""
    drain_idle: float = 3.0
    """The drain ends early once no delivery has been counted for this long. A second was
    too short on a shared 2-core machine: a load generator starved that long had its last
    window of deliveries counted as lost."""

    @property
    def child_max_seconds(self) -> float:
        """Children exit by themselves after this, whatever happens to the orchestrator."""
        return 2 * self.duration + 300.0


@dataclass
class Run:
    settings: Settings
    children: Children
    progress: Progress
    label: str


Scenario = Callable[[Run, str], Awaitable[dict[str, Any]]]


def _url(port: int) -> str:
    return f"ws://127.0.0.1:{port}/socket"


def _split(total: int, parts: int) -> list[int]:
    parts = max(1, min(parts, total))
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def _auto_loadgens(run: Run, total: int, per_process: int) -> int:
    if run.settings.loadgens:
        return run.settings.loadgens
    return max(1, min(MAX_AUTO_LOADGENS, math.ceil(total / per_process)))


def _load(run: Run, port: int, **changes: Any) -> LoadConfig:
    s = run.settings
    config = LoadConfig(
        url=_url(port),
        channel=CHANNEL,
        concurrency=s.concurrency,
        duration=s.duration,
        window=s.window,
        size=s.size,
        connect_timeout=s.connect_timeout,
        max_seconds=s.child_max_seconds,
    )
    for key, value in changes.items():
        setattr(config, key, value)
    return config


async def _subscribers(
    run: Run, port: int, total: int, processes: int
) -> tuple[list[Child], list[dict[str, Any]]]:
    """Start load generators holding ``total`` joined connections; wait until all are up."""
    run.progress.say(f"{run.label}: connecting {total} clients from {processes} process(es)")
    children = [
        await run.children.loadgen(f"loadgen{i}", _load(run, port, connections=count))
        for i, count in enumerate(_split(total, processes))
    ]
    s = run.settings
    timeout = 30 + s.connect_timeout * math.ceil(total / max(1, s.concurrency))
    ready = [await child.expect("READY", min(timeout, s.child_max_seconds)) for child in children]
    connected = sum(r["connected"] for r in ready)
    failed = sum(r["failed"] for r in ready)
    if failed:
        errors = {r["last_error"] for r in ready if r["last_error"]}
        run.progress.say(f"{run.label}: {failed} connection(s) failed: {'; '.join(errors)}")
    if connected == 0:
        raise ChildError("no client could connect and join")
    return children, ready


async def _sender(run: Run, port: int, rate: float) -> Child:
    sender = await run.children.loadgen("sender", _load(run, port, role="send", rate=rate))
    ready = await sender.expect("READY", 30 + run.settings.connect_timeout)
    if ready["connected"] != 1:
        raise ChildError(f"the sender could not connect and join: {ready['last_error']}")
    return sender


async def _traffic(
    run: Run, receivers: list[Child], sender: Child, connections: int, meter: CpuMeter
) -> dict[str, Any]:
    """GO to everyone, wait for the sender to finish and the deliveries to drain, STOP,
    and merge the load generators' results. ``connections``: members of the channel."""
    s = run.settings
    everyone = [*receivers, sender]
    meter.start()
    for child in everyone:
        child.tell("GO")

    def describe(elapsed: float) -> str:
        return f"{elapsed:4.0f} s  {sum(c.progress for c in everyone):,} deliveries"

    ticker = asyncio.create_task(run.progress.ticker(describe))
    try:
        sent = (await sender.expect("SENT", s.duration + 60))["sent"]
        # Drain: until every delivery is counted, or nothing moved for drain_idle (so `lost`
        # is what never comes: closed subscribers, dropped frames), at most drain_timeout.
        expected = sent * connections
        deadline = time.monotonic() + s.drain_timeout
        last, still_since = -1, time.monotonic()
        while time.monotonic() < deadline:
            total = sum(c.progress for c in everyone)
            now = time.monotonic()
            if total >= expected:
                break
            if total != last:
                last, still_since = total, now
            elif now - still_since > s.drain_idle:
                break
            await asyncio.sleep(0.05)
        meter.stop()
        for child in everyone:
            child.tell("STOP")
        results = [await child.expect("RESULT", 30) for child in everyone]
    finally:
        ticker.cancel()
        await asyncio.gather(ticker, return_exceptions=True)
    deliveries = sum(r["deliveries"] for r in results)
    firsts = [r["first_ns"] for r in results if r["first_ns"]]
    lasts = [r["last_ns"] for r in results if r["last_ns"]]
    span = (max(lasts) - min(firsts)) / 1e9 if firsts else 0.0
    hist = merge(from_json(r["latency_hist"]) for r in results)
    minimums = [r["latency_min_ns"] for r in results if r["latency_min_ns"] is not None]
    return {
        "sent": sent,
        "connections": connections,
        "deliveries": deliveries,
        "expected": expected,
        "lost": expected - deliveries,
        "seconds": round(span, 3),
        "deliveries_per_s": round(deliveries / span) if span > 0 else None,
        **summary_ms(hist),
        "min_ms": round(min(minimums) / 1e6, 3) if minimums else None,
        "errors": sum(r["errors"] for r in results),
        "disconnects": sum(r["disconnects"] for r in results),
        "last_error": next((r["last_error"] for r in results if r["last_error"]), None),
    }


def _per(cpu_s: float, count: int) -> float | None:
    """CPU microseconds per unit of work."""
    return round(cpu_s * 1e6 / count, 2) if count > 0 else None


def _pct(meter: CpuMeter, names: list[str]) -> float:
    """CPU of the named processes over the measured window, in % of one core."""
    used = sum(meter.used[name] for name in names)
    return round(100 * used / meter.wall, 1) if meter.wall > 0 else 0.0


# -- scenarios -----------------------------------------------------------------


async def fanout(run: Run, transport: str) -> dict[str, Any]:
    s = run.settings
    server, port = await run.children.server(
        "server", transport, presence=s.presence, max_seconds=s.child_max_seconds
    )
    processes = _auto_loadgens(run, s.subscribers, SUBSCRIBERS_PER_LOADGEN)
    receivers, ready = await _subscribers(run, port, s.subscribers, processes)
    sender = await _sender(run, port, s.rate or 0.0)
    members = sum(r["connected"] for r in ready) + 1  # the sender receives its own too
    loadgens = {f"loadgen{i}": c.pid for i, c in enumerate([*receivers, sender])}
    meter = CpuMeter({"server": server.pid, **loadgens})
    rate = f"{s.rate:g} msg/s" if s.rate else f"window {s.window}"
    run.progress.say(f"{run.label}: sending for {s.duration:g} s ({rate})")
    traffic = await _traffic(run, receivers, sender, members, meter)
    # A run that lost deliveries (subscribers closed as slow, frames dropped) bought its
    # speed by dropping readers: its per-delivery figures are not counted (None), only the
    # rate a room sustains with nobody dropped is.
    whole = traffic["lost"] == 0 and traffic["disconnects"] == 0
    return {
        "subscribers": members - 1,
        "loadgens": len(receivers),
        "rate": s.rate or "max",
        "size": s.size,
        "presence": s.presence,
        **traffic,
        "sustained_per_s": traffic["deliveries_per_s"] if whole else None,
        "server_cpu_s": round(meter.used["server"], 3),
        "server_cpu_pct": _pct(meter, ["server"]),
        "server_us_per_delivery": (
            _per(meter.used["server"], traffic["deliveries"]) if whole else None
        ),
        "loadgen_cpu_pct": _pct(meter, list(loadgens)),
    }


async def cross_node(run: Run, transport: str) -> dict[str, Any]:
    s = run.settings
    redis_pid = await redis_server_pid(s.redis)
    namespace = f"bench-{uuid.uuid4().hex[:12]}"  # apart from any other cluster on this Redis
    common: dict[str, Any] = {
        "presence": s.presence,
        "max_seconds": s.child_max_seconds,
        "redis": s.redis,
        "namespace": namespace,
    }
    server_a, port_a = await run.children.server("server-a", transport, **common)
    server_b, port_b = await run.children.server("server-b", transport, **common)
    processes = _auto_loadgens(run, s.subscribers, SUBSCRIBERS_PER_LOADGEN)
    receivers, ready = await _subscribers(run, port_b, s.subscribers, processes)
    rate = s.rate or 1000.0
    sender = await _sender(run, port_a, rate)
    await asyncio.sleep(1.0)  # both nodes' channel subscriptions live on Redis
    members = sum(r["connected"] for r in ready) + 1
    pids = {"server_a": server_a.pid, "server_b": server_b.pid}
    loadgens = {f"loadgen{i}": c.pid for i, c in enumerate([*receivers, sender])}
    if redis_pid is not None:
        pids["redis"] = redis_pid
    meter = CpuMeter({**pids, **loadgens})
    run.progress.say(f"{run.label}: sending on A for {s.duration:g} s at {rate:g} msg/s")
    traffic = await _traffic(run, receivers, sender, members, meter)
    servers = meter.used["server_a"] + meter.used["server_b"]
    return {
        "subscribers": members - 1,
        "loadgens": len(receivers),
        "rate": rate,
        "size": s.size,
        "presence": s.presence,
        **traffic,
        "loss_pct": round(100 * traffic["lost"] / traffic["expected"], 3)
        if traffic["expected"]
        else None,
        "server_cpu_s": round(servers, 3),
        "server_a_cpu_pct": _pct(meter, ["server_a"]),
        "server_b_cpu_pct": _pct(meter, ["server_b"]),
        "server_us_per_delivery": _per(servers, traffic["deliveries"]),
        "redis_cpu_pct": _pct(meter, ["redis"]) if redis_pid is not None else None,
        "loadgen_cpu_pct": _pct(meter, list(loadgens)),
    }


async def _connect_storm(run: Run, transport: str) -> tuple[Child, int, dict[str, Any]]:
    """Connect and join ``connections`` clients; returns the server, its RSS before, and
    the figures."""
    s = run.settings
    server, port = await run.children.server(
        "server", transport, presence=s.presence, max_seconds=s.child_max_seconds
    )
    await asyncio.sleep(0.5)
    rss_before = rss_bytes(server.pid)
    processes = _auto_loadgens(run, s.connections, CONNECTIONS_PER_LOADGEN)
    meter = CpuMeter({"server": server.pid})
    meter.start()
    _, ready = await _subscribers(run, port, s.connections, processes)
    meter.stop()
    connected = sum(r["connected"] for r in ready)
    seconds = max(r["seconds"] for r in ready)
    hist = merge(from_json(r["join_hist"]) for r in ready)
    latency = summary_ms(hist)
    return (
        server,
        rss_before,
        {
            "connections": connected,
            "failed": sum(r["failed"] for r in ready),
            "last_error": next((r["last_error"] for r in ready if r.get("last_error")), None),
            "loadgens": processes,
            "concurrency": s.concurrency,
            "presence": s.presence,
            "seconds": round(seconds, 3),
            "joins_per_s": round(connected / seconds) if seconds > 0 else None,
            "join_p50_ms": latency["p50_ms"],
            "join_p99_ms": latency["p99_ms"],
            "server_cpu_s": round(meter.used["server"], 3),
            "server_us_per_join": _per(meter.used["server"], connected),
            "loadgen_us_per_join": _per(sum(r.get("cpu_s", 0.0) for r in ready), connected),
            "rss_before_mib": round(rss_before / 2**20, 1),
        },
    )


async def idle(run: Run, transport: str) -> dict[str, Any]:
    server, before, result = await _connect_storm(run, transport)
    await asyncio.sleep(1.0)  # let the joins settle
    rss_after = rss_bytes(server.pid)
    connected = result["connections"]
    return {
        **result,
        "rss_after_mib": round(rss_after / 2**20, 1),
        "rss_per_connection_kib": round((rss_after - before) / 1024 / connected, 2)
        if connected
        else None,
    }


async def join_storm(run: Run, transport: str) -> dict[str, Any]:
    _, _, result = await _connect_storm(run, transport)
    return result


async def pubsub_raw(run: Run, transport: str) -> dict[str, Any]:
    s = run.settings
    url = s.pubsub or s.redis
    is_redis = url.startswith("redis://")
    if is_redis:
        await redis_server_pid(url)  # fails early when Redis is unreachable
    rate = s.rate or 1000.0
    run.progress.say(f"{run.label}: {url}, {s.count} messages, then {rate:g} msg/s")
    measured = await pubsub.measure(url, count=s.count, rate=rate, seconds=s.duration, size=s.size)
    result: dict[str, Any] = {"url": url, "size": s.size, "count": s.count, "rate": rate}
    result.update({f"throughput_{k}": v for k, v in measured["throughput"].items()})
    result.update({f"latency_{k}": v for k, v in measured["latency"].items()})
    references = []
    for pipeline in (1, 16) if is_redis else ():
        run.progress.say(f"{run.label}: redis-benchmark PUBLISH -P {pipeline}")
        reference = await pubsub.redis_benchmark(
            url, requests=s.count, size=s.size, pipeline=pipeline
        )
        if reference is not None:
            references.append(reference)
    result["redis_benchmark"] = references
    for reference in references:
        result[f"redis_benchmark_p{reference['pipeline']}_msgs_per_s"] = reference["msgs_per_s"]
    return result


async def redis_server_pid(url: str) -> int | None:
    """Ping Redis (raises if unreachable); its pid when its /proc entry is readable here."""
    import redis.asyncio as aioredis

    client = aioredis.from_url(url, socket_connect_timeout=3, socket_timeout=5)
    try:
        info = await client.info("server")
    except Exception as exc:
        raise ChildError(f"Redis is unreachable at {url}: {exc}") from None
    finally:
        await client.aclose()
    try:
        pid = int(info["process_id"])
        cpu_seconds(pid)
    except (KeyError, ValueError, OSError):
        return None
    return pid


SCENARIOS: dict[str, Scenario] = {
    "fanout": fanout,
    "cross-node": cross_node,
    "idle": idle,
    "join-storm": join_storm,
    "pubsub": pubsub_raw,
}
TRANSPORT_FREE = frozenset({"pubsub"})
"""Scenarios that do not involve a WebSocket transport (run once)."""
