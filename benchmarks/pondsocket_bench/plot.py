"""``--plot DIR``: one PNG bar chart per scenario (matplotlib, imported only here)."""

from __future__ import annotations

import importlib
import os
from collections.abc import Sequence
from typing import Any

CHARTS: dict[str, list[tuple[str, str]]] = {
    "fanout": [
        ("server_us_per_delivery", "server CPU µs per delivery"),
        ("deliveries_per_s", "deliveries/s"),
        ("p99_ms", "latency p99 (ms)"),
    ],
    "cross-node": [
        ("server_us_per_delivery", "A+B CPU µs per delivery"),
        ("p99_ms", "latency p99 (ms)"),
        ("loss_pct", "loss (%)"),
    ],
    "idle": [("rss_per_connection_kib", "server RSS per connection (KiB)")],
    "join-storm": [
        ("joins_per_s", "connects+joins/s"),
        ("server_us_per_join", "server CPU µs per join"),
    ],
    "pubsub": [
        ("throughput_delivered_msgs_per_s", "RedisPubSub delivered/s"),
        ("redis_benchmark_p1_msgs_per_s", "redis-benchmark PUBLISH/s"),
    ],
}


def write_plots(results: Sequence[dict[str, Any]], directory: str) -> list[str]:
    """Write ``<scenario>.png`` for each scenario with results; returns the paths.
    Raises ImportError without matplotlib."""
    matplotlib = importlib.import_module("matplotlib")
    matplotlib.use("Agg")
    plt = importlib.import_module("matplotlib.pyplot")
    os.makedirs(directory, exist_ok=True)
    written = []
    for scenario, metrics in CHARTS.items():
        rows = [r for r in results if r["scenario"] == scenario and "error" not in r]
        if not rows:
            continue
        figure, axes = plt.subplots(1, len(metrics), figsize=(4 * len(metrics), 3.2), squeeze=False)
        labels = [str(r["transport"]) for r in rows]
        for ax, (key, title) in zip(axes[0], metrics, strict=True):
            values = [float(r.get(key) or 0) for r in rows]
            ax.bar(labels, values, color="#4c72b0")
            ax.set_title(title, fontsize=9)
            ax.tick_params(labelsize=8)
        figure.suptitle(f"pondsocket bench: {scenario}", fontsize=10)
        figure.tight_layout()
        path = os.path.join(directory, f"{scenario}.png")
        figure.savefig(path, dpi=100)
        plt.close(figure)
        written.append(path)
    return written
