"""The ``pondsocket`` command.

    pondsocket serve myapp:pond [--host 127.0.0.1] [--port 8080] [--asgi]
                                [--certfile PEM --keyfile PEM] [--pubsub URL ...]
                                [--workers N]   (N processes on the port: see workers/)
    pondsocket demo [--host 127.0.0.1] [--port 8080] [--certfile PEM --keyfile PEM]
                    [--pubsub URL ...]
    pondsocket bench SCENARIO [...]   (see ``pondsocket bench --help``; needs the
                                       pondsocket-bench package: pip install -e ./benchmarks)
    pondsocket client URL [-q KEY=VALUE] [-H 'NAME: VALUE'] [--token T] [-j CHANNEL[=JSON]]
                          [--json] [--no-reconnect] [--timeout S] [--wait S]
                                      (commands on stdin; see docs/client.md)
    pondsocket --version

``serve`` imports ``pond`` from the module ``myapp`` (the current directory is importable):
a :class:`~pondsocket.PondSocket` or a zero-argument function returning one. It runs on the
standalone server, or with ``--asgi`` on uvicorn. Usage errors exit with status 2 and a
one-line message.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import importlib
import inspect
import logging
import os
import ssl
import sys
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from pondsocket import PondSocket, StartupError, UsageError, __version__, tune_gc
from pondsocket.client.cli import add_client_parser
from pondsocket.cluster.signing import read_secret_file
from pondsocket.pubsub.urls import BACKENDS, connect_url
from pondsocket.transports import standalone

LOG_LEVELS = ("critical", "error", "warning", "info", "debug")
BENCH_MISSING = (
    "pondsocket bench: error: the benchmarks are a separate package: in a clone of the"
    " pondsocket repository, pip install -e ./benchmarks"
)


class CLIError(Exception):
    """A usage error: reported as one line on stderr, exit status 2."""


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line ``argv`` (default ``sys.argv[1:]``); returns the exit status."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments[:1] == ["bench"]:  # its own parser, in its own distribution
        return _bench(arguments[1:])
    parser = _parser()
    try:
        args = parser.parse_args(arguments)
    except SystemExit as exc:  # --help, --version, or an argparse usage error (already printed)
        return exc.code if isinstance(exc.code, int) else 0 if exc.code is None else 2
    try:
        if args.command == "serve":
            return _serve(args, arguments)
        if args.command == "client":
            return _client(args)
        return _demo(args)
    except CLIError as exc:
        print(f"pondsocket: error: {exc}", file=sys.stderr)
        return 2
    except StartupError as exc:  # the broker failed (a worker's start, ...): one line
        print(f"pondsocket: error: cannot start: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # the address is in use, not allowed, ...
        print(f"pondsocket: error: cannot serve on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # Ctrl+C before the server installed its own signal handlers
        return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pondsocket", description="Realtime channels over WebSocket."
    )
    parser.add_argument("--version", action="version", version=f"pondsocket {__version__}")
    common = argparse.ArgumentParser(add_help=False)
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
    common.add_argument(
        "--certfile",
        metavar="PATH",
        help="serve TLS (wss://, https://) with this PEM certificate chain; needs --keyfile",
    )
    common.add_argument("--keyfile", metavar="PATH", help="the PEM private key of --certfile")
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
    common.add_argument(
        "--no-gc-tuning",
        dest="gc_tuning",
        action="store_false",
        help="keep CPython's garbage-collector defaults (see pondsocket.tune_gc)",
    )
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
    _add_cluster_options(serve)
    commands.add_parser(
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
    _add_cluster_options(demo)
    add_client_parser(commands)
    return parser


def _add_cluster_options(parser: argparse.ArgumentParser) -> None:
    """The broker options of ``serve`` and ``demo`` (read by :func:`_apply_cluster`)."""
    cluster = parser.add_argument_group("cluster (several nodes sharing a broker)")
    cluster.add_argument(
        "--pubsub",
        metavar="URL",
        help="join a cluster through a broker: redis://, rediss://, redis+cluster://, nats://, "
        "amqp://, kafka://, gcppubsub://, sns+sqs:// (each needs its extra, e.g. pondsocket-cluster[nats])",
    )
    cluster.add_argument("--redis", metavar="URL", help="same as --pubsub with a redis:// URL")
    cluster.add_argument(
        "--sharded", action="store_true", help="Redis Cluster: use sharded pub/sub (Redis 7)"
    )
    cluster.add_argument("--namespace", help="cluster namespace (default: default)")
    cluster.add_argument("--prefix", help="topic prefix (default: pondsocket)")
    cluster.add_argument(
        "--cluster-secret-file",
        metavar="PATH",
        help="sign and verify cluster envelopes with the keys in PATH (one per line, the "
        "first signs; see docs/security.md); default: PONDSOCKET_CLUSTER_SECRET if set",
    )


def _port(text: str) -> int:
    value = int(text) if text.isdigit() else -1
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"invalid port {text!r}: expected 0-65535")
    return value


def _workers(text: str) -> int:
    from pondsocket.workers import MAX_WORKERS

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


def _configure_logging(level: str, tag: str = "") -> None:
    """Log to stderr, once a server is about to run (not while reporting usage errors);
    ``tag`` starts each message (a worker's number)."""
    logging.basicConfig(
        level=level.upper(), format=f"%(asctime)s %(levelname)s {tag}%(name)s: %(message)s"
    )


# -- commands ------------------------------------------------------------------


def _serve(args: argparse.Namespace, arguments: list[str]) -> int:
    from pondsocket.workers import WorkerLink

    try:  # set when this process is a worker of `--workers N`
        link = WorkerLink.from_environment()
    except UsageError as exc:
        raise CLIError(str(exc)) from None
    pond = load_target(args.target)
    _apply_options(pond, args)
    _apply_cluster(pond, args)
    tls = _tls_context(args)
    if args.asgi and not _importable("uvicorn"):
        raise CLIError("--asgi needs uvicorn: install pondsocket-cluster[asgi]")
    if link is None and args.workers > 1:
        return _supervise(pond, args, arguments[arguments.index("serve") + 1 :], tls)
    _configure_logging(args.log_level, "" if link is None else f"worker {link.index} ")
    if link is not None:
        link.adjust(pond)
    if not args.asgi:
        options: dict[str, Any] = {"tune_gc": args.gc_tuning, **({"ssl": tls} if tls else {})}
        if link is None:  # not pond.run(): a StartupError is ours to report (main)
            standalone.run(pond, args.host, args.port, **options)
        else:
            link.run_standalone(pond, args.host, args.port, **options)
        return 0
    if args.gc_tuning:
        tune_gc()
    certificate = {"ssl_certfile": args.certfile, "ssl_keyfile": args.keyfile} if tls else {}
    server = pond.asgi.uvicorn_server(  # limits, keep-alive, handshake timeout, shutdown
        host=args.host,
        port=args.port,
        ws="websockets-sansio",
        lifespan="on",
        log_level=args.log_level,
        **certificate,
    )
    if link is None:
        server.run()
    else:
        link.run_uvicorn(pond, server, args.host, args.port)
    return 0


def _supervise(
    pond: PondSocket, args: argparse.Namespace, arguments: list[str], tls: ssl.SSLContext | None
) -> int:
    """``--workers N``: check that N nodes can share the port, then supervise them."""
    from pondsocket import workers

    problem = workers.problem(pond, args.workers, broker=bool(args.pubsub or args.redis))
    if problem is not None:
        raise CLIError(problem)
    _configure_logging(args.log_level)
    scheme = ("https" if tls else "http") if args.asgi else ("wss" if tls else "ws")
    return workers.supervise(
        arguments,
        args.workers,
        args.host,
        args.port,
        scheme=scheme,
        transport="asgi on uvicorn" if args.asgi else "standalone",
        stop_timeout=pond.options.drain_grace + 30.0,  # drain, then closing and leaves
    )


def _bench(arguments: list[str]) -> int:
    """``pondsocket bench``: the benchmark suite is a separate distribution
    (``pondsocket-bench``, the repository's ``benchmarks/``), not part of this package."""
    try:  # by name: the library neither depends on it nor type-checks against it
        bench = importlib.import_module("pondsocket_bench")
    except ModuleNotFoundError as exc:
        if exc.name != "pondsocket_bench":
            raise  # installed but broken: show the real error
        print(BENCH_MISSING, file=sys.stderr)
        return 2
    status: int = bench.main(arguments)
    return status


def _client(args: argparse.Namespace) -> int:
    from pondsocket.client.runner import run

    return asyncio.run(run(args))


def _demo(args: argparse.Namespace) -> int:
    from pondsocket.demo import DEMO_PAGE, create_demo

    pond = create_demo()
    _apply_options(pond, args)
    _apply_cluster(pond, args)
    tls = _tls_context(args)
    _configure_logging(args.log_level)
    scheme = "https" if tls else "http"

    def listening(port: int) -> None:  # only once the port is bound
        where = f"node {pond.cluster.node_id}"
        if args.pubsub or args.redis:
            options = pond.cluster.options
            where += f" of cluster {options.prefix}:{options.namespace}"
        url = f"{scheme}://{_url_host(args.host)}:{port}/"
        print(f"PondSocket demo chat ({where}): open {url} in two browser tabs", flush=True)

    standalone.run(  # a broker that fails at startup: StartupError, one line (main)
        pond,
        args.host,
        args.port,
        tune_gc=args.gc_tuning,
        on_ready=listening,
        http_routes={"/": ("text/html; charset=utf-8", DEMO_PAGE)},
        **({"ssl": tls} if tls else {}),
    )
    return 0


def _url_host(host: str) -> str:
    """How a browser on this machine reaches ``host`` (an address the server binds)."""
    if host in ("", "0.0.0.0", "::"):
        return "localhost"
    return f"[{host}]" if ":" in host else host


# -- loading the application ---------------------------------------------------


def load_target(target: str) -> PondSocket:
    """Import ``module:attr`` (``attr`` may be dotted) and return the PondSocket it names.

    Raises :class:`CLIError` with a one-line explanation when that is not possible.
    """
    module_name, sep, attr = target.partition(":")
    if not sep or not module_name or not attr or ":" in attr:
        raise CLIError(f"target {target!r} must have the form module:attribute, e.g. myapp:pond")
    cwd = os.getcwd()
    if cwd not in sys.path:  # like uvicorn: serve modules of the current directory
        sys.path.insert(0, cwd)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and _is_prefix(exc.name, module_name):
            raise CLIError(
                f"cannot import module {module_name!r}: no module named {exc.name!r}"
            ) from None
        raise CLIError(f"importing {module_name!r} failed: {exc}") from None
    obj: Any = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise CLIError(f"module {module_name!r} has no attribute {attr!r}") from None
    if isinstance(obj, PondSocket):
        return obj
    if not callable(obj):
        raise CLIError(f"{target!r} is a {type(obj).__name__}, not a PondSocket")
    try:
        inspect.signature(obj).bind()
    except TypeError:
        raise CLIError(
            f"{target!r} needs arguments: expected a PondSocket or a zero-argument factory"
        ) from None
    except ValueError:
        pass  # no signature to inspect (some builtins): just call it
    result = obj()
    if not isinstance(result, PondSocket):
        raise CLIError(f"{target}() returned a {type(result).__name__}, not a PondSocket")
    return result


def _is_prefix(missing: str, module_name: str) -> bool:
    """Whether the missing module is ``module_name`` itself or one of its parent packages."""
    return module_name == missing or module_name.startswith(missing + ".")


def _apply_cluster(pond: PondSocket, args: argparse.Namespace) -> None:
    """Connect the broker when serving starts (inside the server's event loop)."""
    changes: dict[str, Any] = {
        k: v for k, v in (("namespace", args.namespace), ("prefix", args.prefix)) if v
    }
    if args.cluster_secret_file:
        try:
            changes["secret"] = read_secret_file(args.cluster_secret_file)
        except UsageError as exc:
            raise CLIError(str(exc)) from None
    if args.redis and args.pubsub:
        raise CLIError("give either --pubsub or --redis, not both")
    url = args.pubsub or args.redis
    if url is None:
        if changes or args.sharded:
            raise CLIError(
                "--namespace, --prefix, --sharded and --cluster-secret-file need --pubsub"
                " (or --redis)"
            )
        return
    scheme = urlsplit(url).scheme.lower()
    if args.redis and not scheme.startswith("redis"):
        raise CLIError(f"--redis takes a redis:// URL, not {url!r}: use --pubsub for it")
    if scheme not in BACKENDS:
        raise CLIError(f"unsupported pubsub URL {url!r}: use one of {', '.join(sorted(BACKENDS))}")
    module, _, extra = BACKENDS[scheme]
    if not _importable(module):
        raise CLIError(f"{scheme}:// needs its client library: install pondsocket-cluster[{extra}]")
    if args.sharded and "redis" not in scheme:
        raise CLIError("--sharded is for Redis Cluster URLs only")
    try:
        options = dataclasses.replace(pond.cluster.options, **changes)
    except UsageError as exc:
        raise CLIError(str(exc)) from None
    extra_options = {"sharded": True} if args.sharded else {}

    @pond.on_startup
    async def connect() -> None:
        pubsub = await connect_url(url, **extra_options)
        pond.use_pubsub(pubsub, options)
        pond.on_shutdown(pubsub.close)
        logging.getLogger("pondsocket").info(
            "joined cluster %s:%s as node %s",
            options.prefix,
            options.namespace,
            pond.cluster.node_id,
        )


def _tls_context(args: argparse.Namespace) -> ssl.SSLContext | None:
    """The server's TLS context from ``--certfile``/``--keyfile``, loaded now, so a bad
    file is a one-line usage error before anything listens."""
    if args.certfile is None and args.keyfile is None:
        return None
    if args.certfile is None or args.keyfile is None:
        raise CLIError("--certfile and --keyfile go together")
    for path in (args.certfile, args.keyfile):
        if not os.path.isfile(path):
            raise CLIError(f"no such file: {path}")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(args.certfile, args.keyfile)
    except (ssl.SSLError, OSError) as exc:
        raise CLIError(
            f"cannot use {args.certfile} / {args.keyfile} as a certificate and its key: {exc}"
        ) from None
    return context


def _importable(module: str) -> bool:
    try:
        importlib.import_module(module)
    except ImportError:
        return False
    return True


def _apply_options(pond: PondSocket, args: argparse.Namespace) -> None:
    changes: dict[str, Any] = {}
    if args.max_message_size is not None:
        changes["max_message_size"] = args.max_message_size
        if pond.options.max_frame_size is not None:
            changes["max_frame_size"] = max(pond.options.max_frame_size, args.max_message_size)
    if args.ping_interval is not None:
        changes["ping_interval"] = args.ping_interval or None
    if args.allowed_origins:
        changes["allowed_origins"] = tuple(args.allowed_origins)
    for name in ("metrics_path", "metrics_port", "metrics_host", "drain_grace"):
        if getattr(args, name, None) is not None:
            changes[name] = getattr(args, name)
    if not changes:
        return
    try:
        pond.configure(**changes)
    except UsageError as exc:
        raise CLIError(str(exc)) from None
