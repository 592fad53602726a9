"""Workers: fan-out and connects/s of ``pondsocket serve --workers 1`` and ``--workers 2``,
in one run, on Redis.

    python benchmarks/workers.py [--workers 1,2] [--subscribers 500] [--duration 5]
        [--rate 0] [--connections 2000] [--concurrency 100] [--loadgens N]
        [--redis redis://127.0.0.1:6379] [--repeat 1] [--json FILE]

For each worker count the benchmark app (``pondsocket_bench.server:create_app``) is
served by the real command, ``pondsocket serve --workers N --redis URL`` (standalone
transport, a fresh cluster namespace per server, so 1 worker is also a node on Redis and
the two runs differ only in the number of processes), and driven by the load generator of
``pondsocket bench`` (picows clients in their own processes):

* fan-out: ``--subscribers`` join ``/room/1`` (the kernel spreads them over the workers),
  one more connection sends for ``--duration`` s, as fast as a window of 10 unconfirmed
  messages allows (or at ``--rate`` msg/s); every broadcast reaches the members of the
  sender's worker directly and the others through Redis. ``0-loss deliv/s`` is only
  given when nothing was lost. The sender's window is refilled by its own worker's
  deliveries, so with 2 workers the other worker may fall behind: its backlog shows as
  latency (p50/p99), not as loss.
* connects: ``--connections`` clients connect and join (``--concurrency`` in flight) on a
  fresh server; ``connects/s`` = connections / the time it took.

``srv CPU%`` adds up the supervisor and every worker (% of one core); ``busy%`` adds the
load generators and Redis; ``others%`` is what the rest of the machine used meanwhile
(another job: ``/proc/stat`` minus the processes measured). On a machine with as many
cores as workers the load generators compete with the workers for the same cores, so
compare rows of one run only. Results table on stdout, progress on stderr; ``--json``
writes every row.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import sys
import uuid
from dataclasses import dataclass
from typing import Any

from pondsocket_bench.cpu import CpuMeter
from pondsocket_bench.limits import raise_open_file_limit
from pondsocket_bench.procs import Child, ChildError, Children
from pondsocket_bench.progress import Progress
from pondsocket_bench.scenarios import (
    CONNECTIONS_PER_LOADGEN,
    SUBSCRIBERS_PER_LOADGEN,
    Run,
    Settings,
    _auto_loadgens,
    _pct,
    _per,
    _sender,
    _subscribers,
    _traffic,
    redis_server_pid,
)
from pondsocket_bench.stats import from_json, merge, summary_ms

APP = "pondsocket_bench.server:create_app"
TICKS = os.sysconf("SC_CLK_TCK")
# The supervisor's line names the pids of its workers; a single process names none.
LISTENING = re.compile(r"PondSocket listening on ws://[^ ]+:(\d+) \((.*)\)")
PIDS = re.compile(r"pids ([\d, ]+);")


class MachineMeter(CpuMeter):
    """A :class:`CpuMeter` that also reads what the whole machine used meanwhile, so the
    CPU of processes outside the benchmark (another job on the machine) can be told."""

    machine = 0.0
    """CPU seconds every process of the machine used between start and stop."""

    def start(self) -> None:
        self._machine_start = _machine_busy()
        super().start()

    def stop(self) -> dict[str, float]:
        used = super().stop()
        self.machine = _machine_busy() - self._machine_start
        return used

    def others_pct(self, ours: float) -> float:
        """% of one core used by processes other than ``ours`` CPU seconds' worth."""
        return round(100 * max(0.0, self.machine - ours) / self.wall, 1) if self.wall else 0.0


def _machine_busy() -> float:
    """CPU seconds the machine has been busy (``/proc/stat``: all but idle and iowait)."""
    with open("/proc/stat") as stat:
        fields = [int(v) for v in stat.readline().split()[1:9]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields
    return (user + nice + system + irq + softirq + steal) / TICKS


@dataclass
class Server:
    child: Child
    port: int
    pids: dict[str, int]
    """Every process of the server: the supervisor (if any) and each worker."""
    log: asyncio.Task[None]
    """Shows its warnings and errors on our stderr."""


async def start_server(run: Run, workers: int) -> Server:
    """``pondsocket serve APP --workers N --redis ...`` once it listens (every worker)."""
    namespace = f"bench-workers-{uuid.uuid4().hex[:10]}"
    args = ["serve", APP, "--workers", str(workers), "--redis", run.settings.redis]
    args += ["--namespace", namespace, "--port", "0", "--log-level", "info"]
    child = await run.children.spawn(
        "server", "pondsocket", args, stdin=False, stderr=asyncio.subprocess.PIPE
    )
    stderr = child.process.stderr
    assert stderr is not None
    async with asyncio.timeout(60):
        while line := (await stderr.readline()).decode(errors="replace"):
            if " INFO " not in line:
                sys.stderr.write(line)  # warnings, errors, tracebacks
            if found := LISTENING.search(line):
                break
        else:
            raise ChildError(f"the server exited (status {await child.process.wait()})")
    log = asyncio.create_task(_forward(stderr))
    pids = {"worker0": child.pid}
    if listed := PIDS.search(found[2]):
        pids = {"supervisor": child.pid}
        pids.update({f"worker{i}": int(p) for i, p in enumerate(listed[1].split(", "))})
    return Server(child, int(found[1]), pids, log)


async def _forward(stream: asyncio.StreamReader) -> None:
    while line := (await stream.readline()).decode(errors="replace"):
        if " INFO " not in line:
            sys.stderr.write(line)


async def fanout(run: Run, workers: int) -> dict[str, Any]:
    s = run.settings
    server = await start_server(run, workers)
    processes = _auto_loadgens(run, s.subscribers, SUBSCRIBERS_PER_LOADGEN)
    receivers, ready = await _subscribers(run, server.port, s.subscribers, processes)
    sender = await _sender(run, server.port, s.rate or 0.0)
    await asyncio.sleep(1.0)  # every worker's channel subscription is live on Redis
    members = sum(r["connected"] for r in ready) + 1  # the sender receives its own too
    loadgens = {f"loadgen{i}": c.pid for i, c in enumerate([*receivers, sender])}
    redis = await redis_server_pid(s.redis)
    meter = MachineMeter({**server.pids, **loadgens, **({"redis": redis} if redis else {})})
    pace = f"{s.rate:g} msg/s" if s.rate else f"window {s.window}"
    run.progress.say(f"{run.label}: sending for {s.duration:g} s ({pace})")
    traffic = await _traffic(run, receivers, sender, members, meter)
    whole = traffic["lost"] == 0 and traffic["disconnects"] == 0
    cpu = sum(meter.used[name] for name in server.pids)
    return {
        "workers": workers,
        "subscribers": members - 1,
        **traffic,
        "sustained_per_s": traffic["deliveries_per_s"] if whole else None,
        "server_cpu_pct": _pct(meter, list(server.pids)),
        "server_us_per_delivery": _per(cpu, traffic["deliveries"]) if whole else None,
        "loadgen_cpu_pct": _pct(meter, list(loadgens)),
        "redis_cpu_pct": _pct(meter, ["redis"]) if redis else None,
        "busy_pct": _pct(meter, list(meter.pids)),
        "others_pct": meter.others_pct(sum(meter.used.values())),
    }


async def connects(run: Run, workers: int) -> dict[str, Any]:
    s = run.settings
    server = await start_server(run, workers)
    await asyncio.sleep(0.5)
    meter = MachineMeter(server.pids)
    meter.start()
    processes = _auto_loadgens(run, s.connections, CONNECTIONS_PER_LOADGEN)
    _, ready = await _subscribers(run, server.port, s.connections, processes)
    meter.stop()
    connected = sum(r["connected"] for r in ready)
    seconds = max(r["seconds"] for r in ready)
    latency = summary_ms(merge(from_json(r["join_hist"]) for r in ready))
    loadgen_cpu = sum(r.get("cpu_s", 0.0) for r in ready)
    return {
        "workers": workers,
        "connections": connected,
        "failed": sum(r["failed"] for r in ready),
        "seconds": round(seconds, 3),
        "connects_per_s": round(connected / seconds) if seconds > 0 else None,
        "join_p50_ms": latency["p50_ms"],
        "join_p99_ms": latency["p99_ms"],
        "server_cpu_pct": _pct(meter, list(server.pids)),
        "server_us_per_join": _per(sum(meter.used.values()), connected),
        "loadgen_us_per_join": _per(loadgen_cpu, connected),
        "others_pct": meter.others_pct(sum(meter.used.values()) + loadgen_cpu),
    }


def _load() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


async def measure(args: argparse.Namespace) -> list[dict[str, Any]]:
    settings = Settings(
        duration=args.duration,
        subscribers=args.subscribers,
        connections=args.connections,
        concurrency=args.concurrency,
        redis=args.redis,
        loadgens=args.loadgens,
        rate=args.rate or None,
    )
    progress = Progress(not args.quiet)
    rows: list[dict[str, Any]] = []
    for attempt in range(1, args.repeat + 1):
        for workers in args.workers:
            for name, scenario in (("fanout", fanout), ("connects", connects)):
                children = Children()
                run = Run(settings, children, progress, f"{name} --workers {workers}")
                before = _load()
                try:
                    row = await scenario(run, workers)
                finally:  # load generators first (their clients leave), then the server
                    await children.close()
                rows.append({"scenario": name, "attempt": attempt, **row})
                rows[-1]["load_before"], rows[-1]["load_after"] = before, _load()
                progress.say(f"{run.label}: done (load average {before} -> {_load()})")
    return rows


FANOUT = [
    ("workers", "workers"),
    ("subscribers", "subs"),
    ("deliveries_per_s", "deliv/s"),
    ("lost", "lost"),
    ("sustained_per_s", "0-loss deliv/s"),
    ("server_cpu_pct", "srv CPU%"),
    ("server_us_per_delivery", "srv µs/deliv"),
    ("loadgen_cpu_pct", "loadgen CPU%"),
    ("redis_cpu_pct", "redis CPU%"),
    ("busy_pct", "busy%"),
    ("others_pct", "others%"),
    ("p50_ms", "p50 ms"),
    ("p99_ms", "p99 ms"),
    ("load_before", "load before"),
]
CONNECTS = [
    ("workers", "workers"),
    ("connections", "conns"),
    ("failed", "failed"),
    ("connects_per_s", "connects/s"),
    ("join_p50_ms", "join p50 ms"),
    ("join_p99_ms", "join p99 ms"),
    ("server_cpu_pct", "srv CPU%"),
    ("server_us_per_join", "srv µs/join"),
    ("loadgen_us_per_join", "loadgen µs/join"),
    ("others_pct", "others%"),
    ("load_before", "load before"),
]


def table(rows: list[dict[str, Any]], columns: list[tuple[str, str]]) -> str:
    cells = [[h for _, h in columns]]
    cells += [["-" if r.get(k) is None else f"{r[k]:,}" if isinstance(r[k], int) else str(r[k])
               for k, _ in columns] for r in rows]  # fmt: skip
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    return "\n".join(
        "  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)) for row in cells
    )


def ratios(rows: list[dict[str, Any]]) -> list[str]:
    """``N workers / 1 worker`` of each figure, per attempt."""
    lines = []
    for scenario, key in (("fanout", "sustained_per_s"), ("connects", "connects_per_s")):
        for attempt in sorted({r["attempt"] for r in rows}):
            by = {r["workers"]: r.get(key) for r in rows if (r["scenario"], r["attempt"]) == (scenario, attempt)}  # fmt: skip
            for workers, value in by.items():
                if workers != 1 and value and by.get(1):
                    lines.append(
                        f"{scenario} #{attempt}: {workers} workers / 1 = {value / by[1]:.2f}"
                    )
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", default="1,2", type=lambda t: [int(n) for n in t.split(",")])
    parser.add_argument("--subscribers", type=int, default=500)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--rate", type=float, default=0.0, help="fan-out msg/s (0: window 10)")
    parser.add_argument("--connections", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--loadgens", type=int, help="load-generator processes (default: by size)")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379")
    parser.add_argument("--repeat", type=int, default=1, help="run everything this many times")
    parser.add_argument("--json", metavar="FILE")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args()
    raise_open_file_limit()  # the servers inherit it
    rows = asyncio.run(measure(args))
    print(f"machine: {os.cpu_count()} cores; load average now {_load()}")
    pace = f"{args.rate:g} msg/s" if args.rate else "as fast as a window of 10 allows"
    print(f"\nfan-out (one room, one sender, {pace})\n")
    print(table([r for r in rows if r["scenario"] == "fanout"], FANOUT))
    print("\nconnects (connect + join)\n")
    print(table([r for r in rows if r["scenario"] == "connects"], CONNECTS))
    print("\n" + "\n".join(ratios(rows)))
    if args.json:
        with open(args.json, "w") as file:
            json.dump({"cpus": os.cpu_count(), "results": rows}, file, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
