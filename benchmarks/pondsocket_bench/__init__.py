"""``pondsocket bench``: load tests of a PondSocket server, run as separate processes.

    pondsocket bench fanout [--subscribers 500] [--rate 0] [--duration 5] [--transport both]
    pondsocket bench cross-node [--redis redis://127.0.0.1:6379] [--rate 1000]
    pondsocket bench idle [--connections 1000]
    pondsocket bench join-storm [--connections 1000] [--concurrency 100]
    pondsocket bench pubsub [--redis URL] [--count 20000]
    pondsocket bench all --json results.json
    pondsocket bench fanout join-storm --systems ours,upstream,socketio

Modules: ``server`` (the system under test, its own process), ``loadgen`` (picows
clients on uvloop, their own processes), ``cpu`` (/proc readings), ``scenarios``,
``procs`` (child processes), ``report`` (tables and JSON), ``pubsub`` (raw broker
figures), ``stats`` (latency histograms), ``progress`` (stderr). See
``benchmarks/README.md`` for what each number means.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import ipaddress
import sys
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

__all__ = ["main"]

SCENARIO_NAMES = ("fanout", "cross-node", "idle", "join-storm", "pubsub")
TRANSPORTS = ("standalone", "asgi")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pondsocket bench",
        description="Benchmark PondSocket servers on 127.0.0.1 (every process is stopped "
        "at the end). Results table on stdout, progress on stderr.",
    )
    parser.add_argument(
        "scenarios",
        nargs="+",
        metavar="SCENARIO",
        choices=(*SCENARIO_NAMES, "all"),
        help=f"one or more of {', '.join(SCENARIO_NAMES)}, or all",
    )
    parser.add_argument(
        "--transport", choices=(*TRANSPORTS, "both"), default="both", help="default: both"
    )
    parser.add_argument("--duration", type=_positive_float, default=5.0, help="seconds of traffic")
    parser.add_argument("--size", type=_positive_int, default=100, help="payload bytes (about)")
    parser.add_argument("--presence", action="store_true", help="track presence on join")
    parser.add_argument("--subscribers", type=_positive_int, default=500, help="fanout, cross-node")
    parser.add_argument(
        "--rate",
        type=_non_negative_float,
        help="messages/s from the sender (fanout default 0 = as fast as --window allows; "
        "cross-node and pubsub default 1000)",
    )
    parser.add_argument(
        "--window", type=_positive_int, default=10, help="fanout messages in flight"
    )
    parser.add_argument("--connections", type=_positive_int, default=1000, help="idle, join-storm")
    parser.add_argument(
        "--concurrency", type=_positive_int, default=100, help="connects+joins in flight"
    )
    parser.add_argument(
        "--loadgens", type=_positive_int, help="load-generator processes (default: by size)"
    )
    parser.add_argument(
        "--redis", default="redis://127.0.0.1:6379", type=_loopback_url, help="cross-node, pubsub"
    )
    parser.add_argument("--count", type=_positive_int, default=20_000, help="pubsub messages")
    parser.add_argument(
        "--pubsub",
        metavar="URL",
        type=_loopback_any,
        help="pubsub scenario: any backend URL on 127.0.0.1 (nats://, amqp://, kafka://, ...); "
        "default: the --redis URL",
    )
    parser.add_argument("--json", metavar="FILE", help="write the results as JSON")
    parser.add_argument("--plot", metavar="DIR", help="write PNG charts (needs matplotlib)")
    parser.add_argument("--quiet", action="store_true", help="no progress on stderr")
    parser.add_argument(
        "--systems",
        type=_systems,
        default=["ours"],
        help="compare in one run: comma-separated ours,upstream,socketio (default: ours; "
        "see benchmarks/README.md)",
    )
    return parser


def _systems(text: str) -> list[str]:
    from pondsocket_bench.compare import parse_systems

    return parse_systems(text)


def _positive_int(text: str) -> int:
    value = int(text) if text.isdigit() else 0
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}")
    return value


def _positive_float(text: str) -> float:
    value = _non_negative_float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}")
    return value


def _is_loopback(text: str) -> bool:
    host = urlsplit(text).hostname or ""
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _loopback_any(text: str) -> str:
    if (
        not _is_loopback(text)
        and "endpoint=http://127.0.0.1" not in text
        and "emulator=127.0.0.1" not in text
    ):
        raise argparse.ArgumentTypeError(f"benchmarks talk to 127.0.0.1 only, got {text!r}")
    return text


def _loopback_url(text: str) -> str:
    """Benchmarks talk to 127.0.0.1 only."""
    host = urlsplit(text).hostname or ""
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback or not text.startswith("redis://"):
        raise argparse.ArgumentTypeError(f"expected a redis:// URL on 127.0.0.1, got {text!r}")
    return text


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``pondsocket bench`` with ``argv``; returns the exit status (1 if a run failed)."""
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 0 if exc.code is None else 2
    try:
        import picows  # noqa: F401
        import uvloop
    except ImportError as exc:
        print(
            f"pondsocket bench: error: needs picows and uvloop ({exc}): pip install picows uvloop",
            file=sys.stderr,
        )
        return 2
    if args.plot and importlib.util.find_spec("matplotlib") is None:
        # before the run, not after minutes of benchmarking
        print("pondsocket bench: --plot needs matplotlib (pip install matplotlib)", file=sys.stderr)
        return 2
    from pondsocket_bench import report
    from pondsocket_bench.scenarios import Settings

    settings = Settings(
        duration=args.duration,
        size=args.size,
        presence=args.presence,
        subscribers=args.subscribers,
        rate=args.rate,
        window=args.window,
        connections=args.connections,
        concurrency=args.concurrency,
        loadgens=args.loadgens,
        redis=args.redis,
        pubsub=args.pubsub,
        count=args.count,
    )
    names = list(SCENARIO_NAMES) if "all" in args.scenarios else list(dict.fromkeys(args.scenarios))
    transports = list(TRANSPORTS) if args.transport == "both" else [args.transport]
    if args.systems != ["ours"]:
        from pondsocket_bench.compare import compare_main

        return compare_main(args, names, transports, settings)
    try:
        results = uvloop.run(_run_all(names, transports, settings, quiet=args.quiet))
    except KeyboardInterrupt:
        print("pondsocket bench: interrupted (all child processes stopped)", file=sys.stderr)
        return 130
    report.print_tables(results)
    if args.json:
        report.write_json(args.json, report.document(results, dataclasses.asdict(settings)))
    if args.plot:
        from pondsocket_bench.plot import write_plots

        try:
            written = write_plots(results, args.plot)
        except ImportError:
            print(
                "pondsocket bench: --plot needs matplotlib (pip install matplotlib)",
                file=sys.stderr,
            )
            return 2
        if not args.quiet:
            print(f"bench: wrote {', '.join(written) or 'no charts'}", file=sys.stderr)
    return 1 if any("error" in r for r in results) else 0


async def _run_all(
    names: list[str], transports: list[str], settings: Any, *, quiet: bool
) -> list[dict[str, Any]]:
    from pondsocket_bench.limits import raise_open_file_limit
    from pondsocket_bench.procs import Children
    from pondsocket_bench.progress import Progress
    from pondsocket_bench.scenarios import SCENARIOS, TRANSPORT_FREE, Run

    raise_open_file_limit()
    progress = Progress(enabled=not quiet)
    results: list[dict[str, Any]] = []
    for name in names:
        for transport in ["-"] if name in TRANSPORT_FREE else transports:
            label = name if transport == "-" else f"{name}/{transport}"
            children = Children()
            run = Run(settings, children, progress, label)
            row: dict[str, Any] = {"scenario": name, "transport": transport}
            try:
                row.update(await SCENARIOS[name](run, transport))
            except Exception as exc:
                row["error"] = f"{type(exc).__name__}: {exc}"
                progress.say(f"{label}: failed: {row['error']}")
            finally:
                await children.close()
            results.append(row)
    return results
