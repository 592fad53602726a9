"""Smoke tests of ``pondsocket bench --systems``: each other system, tiny, next to ours.

They check the machinery (cache venvs, generated apps, the Socket.IO load generator,
ratios), not performance. Building a cache venv needs PyPI: without it they are skipped,
unless ``CI`` is set (then they must run). Socket.IO also needs Redis on 127.0.0.1:6379."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from typing import Any

import pytest

from pondsocket_bench import main
from pondsocket_bench.compare import EnvError, add_ratios, ensure_env, parse_systems, spec
from pondsocket_bench.sio_loadgen import socketio_url


def _env_or_skip(system: str) -> None:
    try:
        ensure_env(spec(system), quiet=True)
    except EnvError as exc:
        reason = f"cannot build the {system} cache venv (pip install from PyPI): {exc}"
        if os.environ.get("CI"):
            pytest.fail(f"{reason} (CI is set: the comparison smoke tests must run)")
        pytest.skip(reason)


def _redis_or_skip() -> None:
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=1) as sock:
            sock.sendall(b"PING\r\n")
            ok = sock.recv(16).startswith(b"+PONG")
    except OSError:
        ok = False
    if not ok:
        reason = "no Redis answers on 127.0.0.1:6379 (python-socketio's AsyncRedisManager)"
        if os.environ.get("CI"):
            pytest.fail(f"{reason} (CI is set: the comparison smoke tests must run)")
        pytest.skip(reason)


def _run(tmp_path: Path, *args: str) -> list[dict[str, Any]]:
    out = tmp_path / "results.json"
    status = main([*args, "--quiet", "--json", str(out)])
    document = json.loads(out.read_text())
    results: list[dict[str, Any]] = document["results"]
    assert status == 0, [r["error"] for r in results if "error" in r]
    return results


def _rows(results: list[dict[str, Any]], scenario: str) -> dict[str, dict[str, Any]]:
    return {r["system"]: r for r in results if r["scenario"] == scenario}


def _assert_fanout(row: dict[str, Any]) -> None:
    assert row["subscribers"] == 3
    assert row["sent"] > 0
    assert 0 < row["deliveries"] <= row["expected"]
    assert row["errors"] == 0
    assert row["server_us_per_delivery"] > 0
    assert row["server_us_per_delivery_vs_ours_asgi"] > 0


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_compare_upstream(tmp_path: Path) -> None:
    _env_or_skip("upstream")
    results = _run(
        tmp_path,
        "fanout",
        "join-storm",
        "--systems",
        "ours,upstream",
        "--transport",
        "asgi",
        "--subscribers",
        "3",
        "--duration",
        "1",
        "--connections",
        "10",
        "--concurrency",
        "5",
    )
    fanout = _rows(results, "fanout")
    assert set(fanout) == {"ours", "upstream"}
    for row in fanout.values():
        _assert_fanout(row)
    assert fanout["ours"]["server_us_per_delivery_vs_ours_asgi"] == 1
    assert fanout["upstream"]["versions"]["pondsocket"]
    storm = _rows(results, "join-storm")
    assert storm["upstream"]["connections"] == 10
    assert storm["upstream"]["failed"] == 0
    assert "server_us_per_join_vs_ours_asgi" in storm["upstream"]  # None: CPU under a tick
    assert storm["upstream"]["joins_per_s_vs_ours_asgi"] > 0


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_compare_socketio(tmp_path: Path) -> None:
    _redis_or_skip()
    _env_or_skip("socketio")
    results = _run(
        tmp_path,
        "fanout",
        "--systems",
        "ours,socketio",
        "--transport",
        "asgi",
        "--subscribers",
        "3",
        "--duration",
        "1",
    )
    fanout = _rows(results, "fanout")
    assert set(fanout) == {"ours", "socketio"}
    for row in fanout.values():
        _assert_fanout(row)
    assert fanout["socketio"]["versions"]["python-socketio"]


def test_systems_option(capsys: pytest.CaptureFixture[str]) -> None:
    assert parse_systems("ours, upstream,ours") == ["ours", "upstream"]
    assert main(["fanout", "--systems", "ours,nope"]) == 2
    assert "socketio" in capsys.readouterr().err


def test_ratios_and_socketio_url() -> None:
    rows: list[dict[str, Any]] = [
        {"scenario": "fanout", "system": "ours", "transport": "asgi"},
        {"scenario": "fanout", "system": "upstream", "transport": "asgi"},
    ]
    rows[0].update(server_us_per_delivery=10.0, sustained_per_s=1000)
    rows[1].update(server_us_per_delivery=25.0, sustained_per_s=400)
    add_ratios(rows)
    assert rows[1]["server_us_per_delivery_vs_ours_asgi"] == 2.5
    assert rows[1]["sustained_per_s_vs_ours_asgi"] == 0.4
    # A run that lost deliveries has no per-delivery figures (None): no ratio either.
    rows[1].update(server_us_per_delivery=None, sustained_per_s=None)
    add_ratios(rows)
    assert rows[1]["sustained_per_s_vs_ours_asgi"] is None
    assert rows[0]["server_us_per_delivery_vs_ours_asgi"] == 1
    expected = "ws://127.0.0.1:80/socket/?EIO=4&transport=websocket"
    assert socketio_url("ws://127.0.0.1:80/socket") == expected
