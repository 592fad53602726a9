"""Results: one table per scenario on stdout, and the whole run as JSON."""

from __future__ import annotations

import json
import os
import platform
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, TextIO

from pondsocket import __version__

COLUMNS: dict[str, list[tuple[str, str]]] = {
    "fanout": [
        ("subscribers", "subs"),
        ("sent", "sent"),
        ("deliveries", "deliveries"),
        ("lost", "lost"),
        ("disconnects", "closed"),
        ("deliveries_per_s", "deliv/s"),
        ("sustained_per_s", "0-loss deliv/s"),
        ("server_us_per_delivery", "srv µs/deliv"),
        ("server_cpu_pct", "srv CPU%"),
        ("loadgen_cpu_pct", "loadgen CPU%"),
        ("p50_ms", "p50 ms"),
        ("p99_ms", "p99 ms"),
        ("max_ms", "max ms"),
    ],
    "cross-node": [
        ("subscribers", "subs"),
        ("sent", "sent"),
        ("deliveries", "deliveries"),
        ("lost", "lost"),
        ("loss_pct", "loss %"),
        ("deliveries_per_s", "deliv/s"),
        ("server_us_per_delivery", "A+B µs/deliv"),
        ("server_a_cpu_pct", "A CPU%"),
        ("server_b_cpu_pct", "B CPU%"),
        ("redis_cpu_pct", "redis CPU%"),
        ("p50_ms", "p50 ms"),
        ("p99_ms", "p99 ms"),
    ],
    "idle": [
        ("connections", "conns"),
        ("failed", "failed"),
        ("rss_before_mib", "RSS before MiB"),
        ("rss_after_mib", "RSS after MiB"),
        ("rss_per_connection_kib", "KiB/conn"),
        ("seconds", "connect+join s"),
        ("join_p50_ms", "join p50 ms"),
        ("join_p99_ms", "join p99 ms"),
    ],
    "join-storm": [
        ("connections", "conns"),
        ("failed", "failed"),
        ("concurrency", "in flight"),
        ("seconds", "seconds"),
        ("joins_per_s", "joins/s"),
        ("server_us_per_join", "srv µs/join"),
        ("loadgen_us_per_join", "loadgen µs/join"),
        ("join_p50_ms", "p50 ms"),
        ("join_p99_ms", "p99 ms"),
    ],
    "pubsub": [
        ("size", "bytes"),
        ("throughput_publish_msgs_per_s", "publish/s"),
        ("throughput_delivered_msgs_per_s", "delivered/s"),
        ("throughput_lost", "lost"),
        ("latency_p50_ms", "p50 ms"),
        ("latency_p99_ms", "p99 ms"),
        ("latency_lost", "lat lost"),
        ("redis_benchmark_p1_msgs_per_s", "redis-bench/s"),
        ("redis_benchmark_p16_msgs_per_s", "redis-bench -P16/s"),
    ],
}


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.3f}".rstrip("0").rstrip(".") if value < 100 else f"{value:,.0f}"
    return str(value)


def print_tables(results: Sequence[dict[str, Any]], out: TextIO = sys.stdout) -> None:
    """One aligned table per scenario, in the order the scenarios ran."""
    scenarios = list(dict.fromkeys(r["scenario"] for r in results))
    for scenario in scenarios:
        rows = [r for r in results if r["scenario"] == scenario]
        columns = [("transport", "transport"), *COLUMNS.get(scenario, [])]
        table = [[header for _, header in columns]]
        errors = []
        for row in rows:
            if "error" in row:
                errors.append(f"  {row['transport']}: ERROR {row['error']}")
                continue
            table.append([_cell(row.get(key)) for key, _ in columns])
        widths = [max(len(line[i]) for line in table) for i in range(len(columns))]
        print(f"\n{scenario}", file=out)
        for i, line in enumerate(table):
            cells = [
                c.ljust(w) if j == 0 else c.rjust(w)
                for j, (c, w) in enumerate(zip(line, widths, strict=True))
            ]
            print("  " + "  ".join(cells), file=out)
            if i == 0:
                print("  " + "  ".join("-" * w for w in widths), file=out)
        for error in errors:
            print(error, file=out)
    out.flush()


def document(results: Sequence[dict[str, Any]], settings: dict[str, Any]) -> dict[str, Any]:
    """The JSON document of a run: machine, settings, results."""
    return {
        "tool": "pondsocket bench",
        "pondsocket": __version__,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "load_average": list(os.getloadavg()),
        },
        "settings": settings,
        "results": list(results),
    }


def write_json(path: str, doc: dict[str, Any]) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(doc, f, indent=2)
        f.write("\n")
