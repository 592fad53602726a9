"""Presence storm: N users join one room at once; how long until every client holds the
complete presence list (every presence frame delivered)?

    python benchmarks/presence_storm.py [--users 500] [--window 0.05] [--limit 60]

Runs the benchmark server (standalone transport, presence tracked) in its own process with
``PondOptions.presence_coalesce_window = --window`` (0: one frame per change, the exact JS
server semantics), connects ``--users`` websockets clients from this process, and prints the
settle time, the presence frames and bytes received, and the server's CPU time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field

from websockets.asyncio.client import connect

from pondsocket_bench.cpu import cpu_seconds


@dataclass
class Storm:
    """What the clients saw: per client its presence frames, bytes and last list size, and
    when the last presence frame arrived."""

    stats: dict[int, dict[str, int]] = field(default_factory=dict)
    last: float | None = None


async def client(port: int, n: int, users: int, state: Storm, done: asyncio.Event) -> None:
    async with connect(f"ws://127.0.0.1:{port}/socket", max_size=None, compression=None) as ws:
        await ws.recv()  # CONNECTION
        join = {
            "action": "JOIN_CHANNEL",
            "event": "JOIN_CHANNEL",
            "channelName": "/room/1",
            "requestId": f"j{n}",
            "payload": {},
        }
        await ws.send(json.dumps(join))
        stats = state.stats.setdefault(n, {"frames": 0, "bytes": 0, "size": 0})
        async for raw in ws:
            frame = json.loads(raw)
            if frame["action"] == "PRESENCE":
                stats["frames"] += 1
                stats["bytes"] += len(raw)
                stats["size"] = len(frame["payload"]["presence"])
                state.last = time.perf_counter()
            if done.is_set():
                return


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--users", type=int, default=500)
    parser.add_argument("--window", type=float, default=0.05)
    parser.add_argument("--limit", type=float, default=60.0)
    args = parser.parse_args()
    env = {**os.environ, "PONDSOCKET_BENCH_PRESENCE_WINDOW": str(args.window)}
    server = subprocess.Popen(
        [sys.executable, "-m", "pondsocket_bench.server", "--presence"],
        stdout=subprocess.PIPE,
        env=env,
        text=True,
    )
    try:
        line = server.stdout.readline() if server.stdout else ""
        port = int(line.split()[1])
        cpu_before = cpu_seconds(server.pid)
        state = Storm()
        done = asyncio.Event()
        start = time.perf_counter()
        tasks = [
            asyncio.create_task(client(port, n, args.users, state, done)) for n in range(args.users)
        ]

        def settled() -> bool:
            counts = [s["size"] for s in state.stats.values()]
            return len(counts) == args.users and all(c == args.users for c in counts)

        while not settled() and time.perf_counter() - start < args.limit:
            await asyncio.sleep(0.05)
        ok = settled()
        last = state.last if ok and state.last is not None else time.perf_counter()
        elapsed = last - start
        stats = list(state.stats.values())
        result = {
            "users": args.users,
            "window_s": args.window,
            "settled": ok,
            "seconds": round(elapsed, 3),
            "presence_frames": sum(s["frames"] for s in stats),
            "presence_mib": round(sum(s["bytes"] for s in stats) / 2**20, 1),
            "server_cpu_s": round(cpu_seconds(server.pid) - cpu_before, 2),
        }
        print(json.dumps(result))
        done.set()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        server.terminate()
        server.wait(10)


if __name__ == "__main__":
    asyncio.run(main())
