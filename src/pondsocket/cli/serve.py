"""``pondsocket serve``: one process on the standalone server or on uvicorn (``--asgi``),
or, with ``--workers N``, the supervisor of N such processes (see pondsocket.workers)."""

from __future__ import annotations

import argparse
import ssl
from typing import TYPE_CHECKING, Any

from pondsocket import PondSocket, UsageError, tune_gc
from pondsocket.cli.app_loading import load_target
from pondsocket.cli.cluster import apply_cluster
from pondsocket.cli.errors import CLIError
from pondsocket.cli.extras import importable
from pondsocket.cli.options import apply_options, configure_logging, tls_context
from pondsocket.transports import standalone

if TYPE_CHECKING:
    from pondsocket.workers import WorkerLink


def serve_command(args: argparse.Namespace, arguments: list[str]) -> int:
    """``arguments`` is the whole command line: a supervisor hands its workers the part
    after ``serve``."""
    from pondsocket.workers import WorkerLink  # lazy: only serve needs the workers

    try:  # set when this process is a worker of `--workers N`
        link = WorkerLink.from_environment()
    except UsageError as exc:
        raise CLIError(str(exc)) from None
    pond = load_target(args.target)
    apply_options(pond, args)
    apply_cluster(pond, args)
    tls = tls_context(args)
    if args.asgi and not importable("uvicorn"):
        raise CLIError("--asgi needs uvicorn: install pondsocket-cluster[asgi]")
    if link is None and args.workers > 1:
        return _supervise(pond, args, arguments[arguments.index("serve") + 1 :], tls)
    configure_logging(args.log_level, "" if link is None else f"worker {link.index} ")
    if link is not None:
        link.adjust(pond)
    if args.asgi:
        _run_asgi(pond, args, link, tls)
    else:
        _run_standalone(pond, args, link, tls)
    return 0


def _run_standalone(
    pond: PondSocket, args: argparse.Namespace, link: WorkerLink | None, tls: ssl.SSLContext | None
) -> None:
    options: dict[str, Any] = {"tune_gc": args.gc_tuning, **({"ssl": tls} if tls else {})}
    if link is None:  # not pond.run(): a StartupError is ours to report (main)
        standalone.run(pond, args.host, args.port, **options)
    else:
        link.run_standalone(pond, args.host, args.port, **options)


def _run_asgi(
    pond: PondSocket, args: argparse.Namespace, link: WorkerLink | None, tls: ssl.SSLContext | None
) -> None:
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


def _supervise(
    pond: PondSocket, args: argparse.Namespace, arguments: list[str], tls: ssl.SSLContext | None
) -> int:
    """``--workers N``: check that N nodes can share the port, then supervise them."""
    from pondsocket import workers

    problem = workers.problem(pond, args.workers, broker=bool(args.pubsub or args.redis))
    if problem is not None:
        raise CLIError(problem)
    configure_logging(args.log_level)
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
