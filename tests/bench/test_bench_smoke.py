"""Smoke tests of ``pondsocket bench``: every scenario, tiny, on both transports.

They check that the machinery works and its JSON is sane, not performance. Cross-node and
pubsub use the machine's Redis on 127.0.0.1:6379 (skipped without it, failed in CI)."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from typing import Any

import pytest

from pondsocket.cli import main as cli_main
from pondsocket_bench import main
from pondsocket_bench.cpu import cpu_seconds, rss_bytes
from pondsocket_bench.stats import bucket, histogram, merge, percentile

REDIS_URL = "redis://127.0.0.1:6379"


def _run(tmp_path: Path, *args: str) -> list[dict[str, Any]]:
    out = tmp_path / "results.json"
    status = main([*args, "--quiet", "--json", str(out)])
    document = json.loads(out.read_text())
    results: list[dict[str, Any]] = document["results"]
    errors = [r["error"] for r in results if "error" in r]
    assert status == 0, errors
    assert document["machine"]["cpus"] >= 1
    return results


def _by_transport(results: list[dict[str, Any]], scenario: str) -> dict[str, dict[str, Any]]:
    return {r["transport"]: r for r in results if r["scenario"] == scenario}


def _assert_traffic(row: dict[str, Any]) -> None:
    assert row["sent"] > 0
    assert row["deliveries"] > 0
    assert row["deliveries"] <= row["expected"]
    assert row["min_ms"] is not None and row["min_ms"] >= 0
    assert 0 <= row["p50_ms"] <= row["p99_ms"] <= row["max_ms"]
    assert row["server_us_per_delivery"] >= 0
    assert row["errors"] == 0


def _redis_available() -> None:
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=1) as sock:
            sock.sendall(b"PING\r\n")
            ok = sock.recv(16).startswith(b"+PONG")
    except OSError:
        ok = False
    if not ok:
        reason = "no Redis answers on 127.0.0.1:6379"
        if os.environ.get("CI"):
            pytest.fail(f"{reason} (CI is set: the bench smoke tests must run)")
        pytest.skip(reason)


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_fanout(tmp_path: Path) -> None:
    results = _run(tmp_path, "fanout", "--subscribers", "5", "--duration", "1")
    rows = _by_transport(results, "fanout")
    assert set(rows) == {"standalone", "asgi"}
    for row in rows.values():
        assert row["subscribers"] == 5
        _assert_traffic(row)
        # Nobody dropped: the run counts, with its rate and per-delivery CPU.
        assert (row["lost"], row["disconnects"]) == (0, 0)
        assert row["sustained_per_s"] == row["deliveries_per_s"] > 0


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_idle_and_join_storm(tmp_path: Path) -> None:
    results = _run(tmp_path, "idle", "join-storm", "--connections", "20", "--concurrency", "10")
    for scenario in ("idle", "join-storm"):
        rows = _by_transport(results, scenario)
        assert set(rows) == {"standalone", "asgi"}
        for row in rows.values():
            assert row["connections"] == 20
            assert row["failed"] == 0 and row["last_error"] is None
            assert row["joins_per_s"] > 0
            assert row["loadgen_us_per_join"] > 0  # the load generator's CPU, measured
            assert 0 <= row["join_p50_ms"] <= row["join_p99_ms"]
    for row in _by_transport(results, "idle").values():
        assert row["rss_after_mib"] > 0
        assert row["rss_per_connection_kib"] is not None


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_cross_node_and_pubsub(tmp_path: Path) -> None:
    _redis_available()
    results = _run(
        tmp_path,
        "cross-node",
        "pubsub",
        "--subscribers",
        "5",
        "--duration",
        "1",
        "--rate",
        "100",
        "--count",
        "500",
        "--redis",
        REDIS_URL,
    )
    rows = _by_transport(results, "cross-node")
    assert set(rows) == {"standalone", "asgi"}
    for row in rows.values():
        _assert_traffic(row)
        assert row["loss_pct"] >= 0
    (raw,) = (r for r in results if r["scenario"] == "pubsub")
    assert raw["throughput_delivered_msgs_per_s"] > 0
    assert raw["latency_p50_ms"] >= 0


def test_cli_forwards_to_bench(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["bench", "--help"]) == 0
    assert "join-storm" in capsys.readouterr().out
    assert cli_main(["bench", "no-such-scenario"]) == 2


def test_only_loopback_redis(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["pubsub", "--redis", "redis://example.com:6379"]) == 2
    assert "127.0.0.1" in capsys.readouterr().err


def test_histograms() -> None:
    assert bucket(5) == 5
    assert bucket(1000) <= 1000 < bucket(1000) * 1.02
    hist = histogram([1_000_000] * 98 + [50_000_000] * 2)  # ns: 98 x 1 ms, 2 x 50 ms
    assert percentile(hist, 50) == bucket(1000)
    assert percentile(hist, 99) == bucket(50_000)
    assert percentile({}, 50) is None
    assert merge([{1: 2}, {1: 3, 4: 1}]) == {1: 5, 4: 1}


def test_proc_readings() -> None:
    assert cpu_seconds(os.getpid()) > 0
    assert rss_bytes(os.getpid()) > 1 << 20


def test_plot_without_matplotlib_fails_before_the_run(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "matplotlib" else real(name)
    )
    assert main(["fanout", "--duration", "30", "--plot", str(tmp_path)]) == 2
    captured = capsys.readouterr()
    assert "--plot needs matplotlib" in captured.err
    assert "fanout" not in captured.out  # nothing was benchmarked
