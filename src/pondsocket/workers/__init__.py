"""``pondsocket serve --workers N``: N processes on one port, each a node of the cluster.

CPython runs one event loop on one core, so a node uses one core however many the host
has. N worker processes each bind the port with ``SO_REUSEPORT`` (the kernel spreads new
connections over them) and each joins the cluster on the configured broker as a node of
its own; a supervisor starts, watches and stops them. Without a broker the workers would
be N servers whose clients cannot see each other, so that is refused.

Modules: ``sockets`` (``SO_REUSEPORT`` binding), ``supervisor`` (the parent process),
``worker`` (what changes in a worker). See docs/deployment.md, "Workers".
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from pondsocket.pubsub.memory import InMemoryPubSub
from pondsocket.workers.sockets import reserve, reuse_port_problem
from pondsocket.workers.supervisor import Supervisor
from pondsocket.workers.worker import WorkerLink

if TYPE_CHECKING:
    from pondsocket.server import PondSocket

__all__ = ["MAX_WORKERS", "WorkerLink", "problem", "supervise"]

log = logging.getLogger("pondsocket.workers")

MAX_WORKERS = 64
"""More than a host has cores only adds processes competing for them."""


def problem(pond: PondSocket, count: int, *, broker: bool) -> str | None:
    """Why ``count`` workers cannot serve ``pond`` (``None``: they can). ``broker``:
    ``--pubsub``/``--redis`` was given."""
    unsupported = reuse_port_problem()
    if unsupported is not None:
        return f"--workers needs SO_REUSEPORT load balancing (Linux 3.9+): {unsupported}"
    if not broker and isinstance(pond.pubsub, InMemoryPubSub):
        return (
            f"--workers {count} needs a broker: each worker is a cluster node of its own, and"
            f" without one they would be {count} separate servers whose clients cannot see"
            " each other; pass --redis URL or --pubsub URL"
        )
    options = pond.options
    if options.metrics_path is not None and options.metrics_port is None:
        return (
            "--workers with metrics on the shared port: each scrape would reach a random"
            " worker; add --metrics-port PORT (worker i serves its metrics on PORT+i)"
        )
    if options.metrics_port and options.metrics_port + count - 1 > 65535:
        return f"--metrics-port {options.metrics_port} leaves no room for {count} workers"
    return None


def supervise(
    serve_arguments: Sequence[str],
    count: int,
    host: str,
    port: int,
    *,
    scheme: str,
    transport: str,
    stop_timeout: float,
) -> int:
    """Hold ``host:port``, run ``pondsocket serve SERVE_ARGUMENTS`` ``count`` times as
    workers on it, and return the supervisor's exit status. ``OSError`` when the port is
    taken."""
    held, port = reserve(host, port)
    if transport.startswith("asgi"):
        log.warning(
            "SSE with --workers: a stream's POSTs may reach a worker other than the one"
            " holding the stream (404); WebSocket clients are unaffected (docs/sse.md)"
        )
    # The workers get the arguments unchanged; a final --port names the one held (it
    # differs with --port 0), and argparse keeps the last value.
    command = [sys.executable, "-m", "pondsocket", "serve", *serve_arguments, "--port", str(port)]
    where = f"[{host}]" if ":" in host else host
    try:
        supervisor = Supervisor(
            command,
            count,
            address=f"{scheme}://{where}:{port}",
            transport=transport,
            stop_timeout=stop_timeout,
        )
        return supervisor.run()
    finally:
        for sock in held:
            sock.close()
