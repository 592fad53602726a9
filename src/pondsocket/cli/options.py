"""The server options that ``serve`` and ``demo`` share: limits, origins, metrics, drain,
the admin page, TLS and logging, applied to the application or the process."""

from __future__ import annotations

import argparse
import logging
import os
import ssl
from typing import Any

from pondsocket import PondSocket, UsageError
from pondsocket.cli.errors import CLIError

# read from the namespace as they are: their option and PondOptions field share a name
_VERBATIM_OPTIONS = ("metrics_path", "metrics_port", "metrics_host", "drain_grace", "admin_path")


def apply_options(pond: PondSocket, args: argparse.Namespace) -> None:
    changes: dict[str, Any] = {}
    if args.max_message_size is not None:
        changes["max_message_size"] = args.max_message_size
        if pond.options.max_frame_size is not None:
            changes["max_frame_size"] = max(pond.options.max_frame_size, args.max_message_size)
    if args.ping_interval is not None:
        changes["ping_interval"] = args.ping_interval or None
    if args.allowed_origins:
        changes["allowed_origins"] = tuple(args.allowed_origins)
    for name in _VERBATIM_OPTIONS:
        if getattr(args, name, None) is not None:
            changes[name] = getattr(args, name)
    if getattr(args, "admin_token_file", None) is not None:
        changes["admin_token"] = read_token_file(args.admin_token_file)
    if not changes:
        return
    try:
        pond.configure(**changes)
    except UsageError as exc:
        raise CLIError(str(exc)) from None


def read_token_file(path: str) -> str:
    """The first line of ``path`` that is neither blank nor a ``#`` comment."""
    try:
        with open(path, encoding="utf-8") as file:
            lines = [s for line in file if (s := line.strip()) and not s.startswith("#")]
    except (OSError, UnicodeDecodeError) as exc:
        raise CLIError(f"cannot read the admin token file {path}: {exc}") from None
    if not lines:
        raise CLIError(f"the admin token file {path} holds no token")
    return lines[0]


def tls_context(args: argparse.Namespace) -> ssl.SSLContext | None:
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


def configure_logging(level: str, tag: str = "") -> None:
    """Log to stderr, once a server is about to run (not while reporting usage errors);
    ``tag`` starts each message (a worker's number)."""
    logging.basicConfig(
        level=level.upper(), format=f"%(asctime)s %(levelname)s {tag}%(name)s: %(message)s"
    )
