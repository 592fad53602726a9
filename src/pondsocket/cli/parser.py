"""The command line's grammar: the ``argparse`` parser of every command and the types
that check option values (a bad value is argparse's usage error, exit status 2)."""

from __future__ import annotations

import argparse

from pondsocket import __version__
from pondsocket.cli.cluster import add_cluster_options
from pondsocket.client.cli import add_client_parser

LOG_LEVELS = ("critical", "error", "warning", "info", "debug")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pondsocket", description="Realtime channels over WebSocket."
    )
    parser.add_argument("--version", action="version", version=f"pondsocket {__version__}")
    common = _server_options()
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve = commands.add_parser(
        "serve",
        parents=[common],
        help="serve an application",
        description="Serve the PondSocket server TARGET, given as module:attribute.",
    )
    serve.add_argument(
        "target", metavar="module:attr", help="a PondSocket, or a function returning one"
    )
    serve.add_argument("--asgi", action="store_true", help="run as an ASGI app on uvicorn")
    serve.add_argument(
        "--workers",
        type=_workers,
        default=1,
        metavar="N",
        help="run N processes on the port (SO_REUSEPORT, Linux), each a node of the cluster"
        " on --pubsub/--redis, which it needs (default 1; docs/deployment.md#workers)",
    )
    add_cluster_options(serve)
    commands.add_parser(  # parsed by pondsocket_bench itself: listed here for --help only
        "bench",
        help="benchmark PondSocket servers on 127.0.0.1 (pondsocket bench --help)",
        add_help=False,
    )
    demo = commands.add_parser(
        "demo",
        parents=[common],
        help="run the demo chat (open it in a browser)",
        description="Run the demo chat: a web page and its PondSocket server on one port."
        " Two demos given the same --pubsub/--redis URL form a cluster: tabs on either"
        " see each other.",
    )
    add_cluster_options(demo)
    add_client_parser(commands)
    return parser


def _server_options() -> argparse.ArgumentParser:
    """The options ``serve`` and ``demo`` share (a parent parser: read by cli.options)."""
    common = argparse.ArgumentParser(add_help=False)
    _add_connection_options(common)
    common.add_argument(
        "--certfile",
        metavar="PATH",
        help="serve TLS (wss://, https://) with this PEM certificate chain; needs --keyfile",
    )
    common.add_argument("--keyfile", metavar="PATH", help="the PEM private key of --certfile")
    _add_metrics_options(common)
    _add_admin_options(common)
    common.add_argument(
        "--no-gc-tuning",
        dest="gc_tuning",
        action="store_false",
        help="keep CPython's garbage-collector defaults (see pondsocket.tune_gc)",
    )
    return common


def _add_connection_options(common: argparse.ArgumentParser) -> None:
    common.add_argument(
        "--host", default="127.0.0.1", help="interface to bind (default %(default)s)"
    )
    common.add_argument("--port", type=_port, default=8080, help="TCP port (default %(default)s)")
    common.add_argument("--log-level", choices=LOG_LEVELS, default="info")
    common.add_argument(
        "--max-message-size",
        type=_positive_int,
        metavar="BYTES",
        help="largest inbound message; larger ones get a 413 error frame",
    )
    common.add_argument(
        "--ping-interval",
        type=_seconds,
        metavar="SECONDS",
        help="seconds between WebSocket pings (0 disables them)",
    )
    common.add_argument(
        "--allowed-origin",
        dest="allowed_origins",
        action="append",
        metavar="ORIGIN",
        help="a web origin that may connect, e.g. https://app.example.com or "
        "https://*.example.com (repeatable; '*' for any). Default: same origin only",
    )
    common.add_argument(
        "--drain-grace",
        type=_seconds,
        metavar="SECONDS",
        help="on SIGTERM, answer /readyz with 503 'draining' for SECONDS while every"
        " connection keeps working, then close them with 1001 (default 0)",
    )


def _add_metrics_options(common: argparse.ArgumentParser) -> None:
    common.add_argument(
        "--metrics-path",
        metavar="PATH",
        help="serve Prometheus metrics at PATH, e.g. /metrics (needs pondsocket-cluster[metrics];"
        " see docs/metrics.md: keep it from the public)",
    )
    common.add_argument(
        "--metrics-port",
        type=_port,
        metavar="PORT",
        help="serve the metrics on this separate port instead (at --metrics-path, default"
        " /metrics)",
    )
    common.add_argument(
        "--metrics-host",
        metavar="HOST",
        help="interface of --metrics-port (default 127.0.0.1)",
    )


def _add_admin_options(common: argparse.ArgumentParser) -> None:
    common.add_argument(
        "--admin-path",
        metavar="PATH",
        help="serve the admin page at PATH, e.g. /admin (docs/admin.md); needs"
        " --admin-token-file or the app's own admin_auth",
    )
    common.add_argument(
        "--admin-token-file",
        metavar="FILE",
        help="read the admin API's bearer token from FILE (its first line that is not"
        " blank or a # comment; 16+ visible ASCII characters): never on the command line,"
        " where other users' ps can read it",
    )


# -- option types: each turns a bad value into argparse's one-line usage error ------


def _port(text: str) -> int:
    value = int(text) if text.isdigit() else -1
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"invalid port {text!r}: expected 0-65535")
    return value


def _workers(text: str) -> int:
    from pondsocket.workers import MAX_WORKERS  # lazy: only when --workers is given

    value = int(text) if text.isdigit() else 0
    if not 1 <= value <= MAX_WORKERS:
        raise argparse.ArgumentTypeError(f"invalid worker count {text!r}: expected 1-{MAX_WORKERS}")
    return value


def _positive_int(text: str) -> int:
    value = int(text) if text.isdigit() else 0
    if value <= 0:
        raise argparse.ArgumentTypeError(f"invalid size {text!r}: expected a positive integer")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"invalid interval {text!r}: expected seconds >= 0")
    return value
