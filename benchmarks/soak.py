"""Soak: a steady load for a long time; is the server's memory flat?

    python benchmarks/soak.py [--minutes 10] [--subscribers 100] [--rate 200] [--churn 5]

Runs the benchmark server (standalone transport, presence tracked) in its own process;
``--subscribers`` websockets clients stay joined, one sender broadcasts ``--rate`` msg/s,
and every second ``--churn`` Python clients (``pondsocket.client``) connect, join, send one
event and leave (so connections, channels, presence and leave handlers are created and
destroyed all along; the summary counts the cycles that completed and failed).
Samples the server's RSS every 10 s and prints one JSON line per sample, then a summary;
``--plot FILE`` draws the curve (matplotlib).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

from pondsocket.client import PondClient
from pondsocket_bench.cpu import cpu_seconds, rss_bytes

ROOM = "/room/1"


def frame(action: str, event: str, request_id: str, payload: dict[str, Any]) -> str:
    return json.dumps(
        {
            "action": action,
            "event": event,
            "channelName": ROOM,
            "requestId": request_id,
            "payload": payload,
        }
    )


async def joined(port: int) -> ClientConnection:
    ws = await connect(f"ws://127.0.0.1:{port}/socket", compression=None, max_size=None)
    await ws.recv()
    await ws.send(frame("JOIN_CHANNEL", "JOIN_CHANNEL", "j", {}))
    return ws


async def drain(ws: ClientConnection, counter: list[int]) -> None:
    async for _ in ws:
        counter[0] += 1


async def churn(port: int, count: int, stop: asyncio.Event, outcome: dict[str, int]) -> None:
    """Every second ``count`` Python clients connect, join, send, leave (waiting for the
    server's acknowledgements) and close: ``outcome`` counts the cycles that completed
    and those that failed (a correctness check alongside the memory curve)."""
    url = f"ws://127.0.0.1:{port}/socket"

    async def one() -> None:
        async with PondClient(url, request_timeout=10, join_timeout=10) as client:
            room = await client.channel(ROOM).join()
            await room.send("send", {"churn": True})
            await room.leave()

    while not stop.is_set():
        results = await asyncio.gather(*(one() for _ in range(count)), return_exceptions=True)
        failed = sum(isinstance(r, BaseException) for r in results)
        outcome["churn_ok"] += len(results) - failed
        outcome["churn_failed"] += failed
        await asyncio.sleep(1.0)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--subscribers", type=int, default=100)
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--churn", type=int, default=5)
    parser.add_argument("--plot")
    args = parser.parse_args()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pondsocket_bench.server",
            "--presence",
            "--max-seconds",
            str(args.minutes * 60 + 120),
        ],
        stdout=subprocess.PIPE,
        text=True,
        env=os.environ.copy(),
    )
    samples: list[dict[str, float]] = []
    outcome = {"churn_ok": 0, "churn_failed": 0}
    try:
        port = int((server.stdout.readline() if server.stdout else "").split()[1])
        clients = [await joined(port) for _ in range(args.subscribers)]
        received = [0]
        readers = [asyncio.create_task(drain(ws, received)) for ws in clients]
        stop = asyncio.Event()
        churner = asyncio.create_task(churn(port, args.churn, stop, outcome))
        sender = clients[0]
        start = time.perf_counter()
        end = start + args.minutes * 60
        next_sample = start
        sent = 0
        while (now := time.perf_counter()) < end:
            if now >= next_sample:
                sample = {
                    "t_s": round(now - start, 1),
                    "rss_mib": round(rss_bytes(server.pid) / 2**20, 2),
                    "cpu_s": round(cpu_seconds(server.pid), 2),
                    "sent": sent,
                    "received": received[0],
                }
                samples.append(sample)
                print(json.dumps(sample), flush=True)
                next_sample += 10.0
            await sender.send(
                frame("BROADCAST", "send", f"s{sent}", {"n": sent, "t": time.monotonic_ns()})
            )
            sent += 1
            await asyncio.sleep(max(0.0, start + sent / args.rate - time.perf_counter()))
        stop.set()
        await churner
        for task in readers:
            task.cancel()
        for ws in clients:
            await ws.close()
    finally:
        server.terminate()
        server.wait(10)
    warm = [s["rss_mib"] for s in samples if s["t_s"] >= 60] or [s["rss_mib"] for s in samples]
    summary = {
        "minutes": args.minutes,
        "rss_first_mib": samples[0]["rss_mib"] if samples else None,
        "rss_after_1min_mib": warm[0] if warm else None,
        "rss_last_mib": samples[-1]["rss_mib"] if samples else None,
        "rss_max_mib": max(warm) if warm else None,
        "sent": samples[-1]["sent"] if samples else 0,
        **outcome,
    }
    print(json.dumps({"summary": summary}))
    if args.plot and samples:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(8, 3))
        ax.plot([s["t_s"] / 60 for s in samples], [s["rss_mib"] for s in samples])
        ax.set_xlabel("minutes")
        ax.set_ylabel("server RSS (MiB)")
        ax.set_title(
            f"soak: {args.subscribers} subscribers, {args.rate:g} msg/s, churn {args.churn}/s"
        )
        ax.set_ylim(bottom=0)
        fig.tight_layout()
        fig.savefig(args.plot)


if __name__ == "__main__":
    asyncio.run(main())
