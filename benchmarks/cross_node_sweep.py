"""Cross-node latency as the rate grows: where does p99 leave 5 ms, and why?

    python benchmarks/cross_node_sweep.py [--subscribers 100] [--rates 100,200,500,750,1000]
        [--duration 10] [--redis redis://127.0.0.1:6379] [--plot FILE] [--json FILE]

Runs ``pondsocket bench cross-node`` (standalone transport: sender on node A, subscribers
on node B, Redis between them) once per rate and prints deliveries/s, p50/p99 and the CPU
of every process involved. The "busy" column adds them up (in % of one core): when it
nears the machine's cores, latency is time spent waiting for a core. ``--plot`` draws
p50/p99 and the busy share against deliveries/s.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from typing import Any


def run_once(args: argparse.Namespace, rate: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "result.json")
        command = [
            sys.executable,
            "-m",
            "pondsocket",
            "bench",
            "cross-node",
            "--transport",
            "standalone",
            "--subscribers",
            str(args.subscribers),
            "--rate",
            str(rate),
            "--duration",
            str(args.duration),
            "--redis",
            args.redis,
            "--quiet",
            "--json",
            out,
        ]
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
        with open(out) as file:
            row: dict[str, Any] = json.load(file)["results"][0]
    if "error" in row:
        raise RuntimeError(f"cross-node at {rate} msg/s failed: {row['error']}")
    parts = ("server_a_cpu_pct", "server_b_cpu_pct", "redis_cpu_pct", "loadgen_cpu_pct")
    row["busy_pct"] = round(sum(float(row.get(key) or 0) for key in parts), 1)
    row["rate"] = rate
    return row


def plot(rows: list[dict[str, Any]], path: str, cores: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = [row["deliveries_per_s"] / 1000 for row in rows]
    figure, latency = plt.subplots(figsize=(6.4, 3.6))
    latency.plot(x, [row["p50_ms"] for row in rows], "o-", label="p50")
    latency.plot(x, [row["p99_ms"] for row in rows], "s-", label="p99")
    latency.axhline(5, color="grey", linestyle="--", linewidth=1, label="5 ms target")
    latency.set_xlabel("deliveries/s on node B (thousands)")
    latency.set_ylabel("latency (ms)")
    busy = latency.twinx()
    busy.plot(x, [row["busy_pct"] / cores for row in rows], "^:", color="#c44e52")
    busy.set_ylabel("all processes, % of the machine's CPU", color="#c44e52")
    busy.set_ylim(0, 100)
    latency.legend(loc="upper left", fontsize=8)
    figure.suptitle("cross-node over Redis: latency vs load (2 cores)", fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subscribers", type=int, default=100)
    parser.add_argument("--rates", default="100,200,500,750,1000")
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--redis", default="redis://127.0.0.1:6379")
    parser.add_argument("--plot", metavar="FILE")
    parser.add_argument("--json", metavar="FILE")
    args = parser.parse_args()
    rows = []
    print(
        f"{'msg/s':>6} {'deliv/s':>8} {'lost':>5} {'p50 ms':>7} {'p99 ms':>7} "
        f"{'A %':>5} {'B %':>5} {'Redis %':>7} {'loadgen %':>9} {'busy %':>6}"
    )
    for rate in (float(r) for r in args.rates.split(",")):
        row = run_once(args, rate)
        rows.append(row)
        print(
            f"{rate:>6.0f} {row['deliveries_per_s']:>8,.0f} {row['lost']:>5} "
            f"{row['p50_ms']:>7.2f} {row['p99_ms']:>7.2f} {row['server_a_cpu_pct']:>5.1f} "
            f"{row['server_b_cpu_pct']:>5.1f} {float(row['redis_cpu_pct'] or 0):>7.1f} "
            f"{row['loadgen_cpu_pct']:>9.1f} {row['busy_pct']:>6.1f}",
            flush=True,
        )
    if args.json:
        with open(args.json, "w") as file:
            json.dump(rows, file, indent=1)
    if args.plot:
        plot(rows, args.plot, os.cpu_count() or 1)


if __name__ == "__main__":
    main()
