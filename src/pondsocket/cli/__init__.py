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

The modules: ``parser`` (the options), ``serve``, ``demo``, ``bench`` (the commands),
``app_loading`` (``module:attr``), ``options`` (the shared server options and TLS),
``cluster`` (the broker options), ``errors`` (:class:`CLIError`).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

from pondsocket import StartupError
from pondsocket.cli.app_loading import load_target
from pondsocket.cli.bench import BENCH_MISSING, bench_command
from pondsocket.cli.demo import demo_command
from pondsocket.cli.errors import CLIError
from pondsocket.cli.options import apply_options as _apply_options
from pondsocket.cli.parser import LOG_LEVELS
from pondsocket.cli.parser import build_parser as _parser
from pondsocket.cli.serve import serve_command

__all__ = [
    "BENCH_MISSING",
    "LOG_LEVELS",
    "CLIError",
    "_apply_options",
    "_parser",
    "load_target",
    "main",
]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line ``argv`` (default ``sys.argv[1:]``); returns the exit status."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments[:1] == ["bench"]:  # its own parser, in its own distribution
        return bench_command(arguments[1:])
    parser = _parser()
    try:
        args = parser.parse_args(arguments)
    except SystemExit as exc:  # --help, --version, or an argparse usage error (already printed)
        return exc.code if isinstance(exc.code, int) else 0 if exc.code is None else 2
    try:
        if args.command == "serve":
            return serve_command(args, arguments)
        if args.command == "client":
            return _client(args)
        return demo_command(args)
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


def _client(args: argparse.Namespace) -> int:
    from pondsocket.client.runner import run  # lazy: websockets' client only for this command

    return asyncio.run(run(args))
