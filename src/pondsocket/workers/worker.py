"""The worker side of ``pondsocket serve --workers N``.

A worker is ``pondsocket serve`` run again by the supervisor with the same arguments and
``PONDSOCKET_WORKER=<index>:<fd>`` in its environment; ``fd`` is its end of a socket
pair to the supervisor, the *link*. Over it the worker says ``READY <node id>`` once it
listens; its end closing (however the supervisor ended, even SIGKILL) makes the worker
shut down gracefully, as on SIGTERM, so no worker outlives its supervisor and keeps
serving the port alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import threading
import time
from typing import TYPE_CHECKING, Any

from pondsocket.errors import UsageError
from pondsocket.runtime import tune_gc as tune_process_gc
from pondsocket.transports.standalone import StandaloneServer
from pondsocket.workers.sockets import listening_sockets

if TYPE_CHECKING:
    import uvicorn

    from pondsocket.server import PondSocket

__all__ = ["ENVIRONMENT", "WorkerLink"]

ENVIRONMENT = "PONDSOCKET_WORKER"
log = logging.getLogger("pondsocket.workers")


class WorkerLink:
    """This process as worker ``index`` of a supervisor."""

    def __init__(self, index: int, link: socket.socket) -> None:
        self.index = index
        self._link = link

    @classmethod
    def from_environment(cls) -> WorkerLink | None:
        """The link named by ``PONDSOCKET_WORKER`` (``None`` when unset). The variable is
        removed, so processes the application starts are not taken for workers."""
        value = os.environ.pop(ENVIRONMENT, None)
        if value is None:
            return None
        index, _, fd = value.partition(":")
        try:
            link = socket.socket(fileno=int(fd))
            return cls(int(index), link)
        except (ValueError, OSError) as exc:
            raise UsageError(
                f"{ENVIRONMENT}={value!r} is not a link from pondsocket serve --workers: {exc}"
            ) from None

    def adjust(self, pond: PondSocket) -> None:
        """Worker-specific options: worker i serves its metrics on ``metrics_port + i``
        (one port cannot be bound by every worker, and a scrape must see one node)."""
        port = pond.options.metrics_port
        if port:
            pond.configure(metrics_port=port + self.index)

    def ready(self, node_id: str) -> None:
        """Tell the supervisor this worker listens, as cluster node ``node_id``."""
        with contextlib.suppress(OSError):  # the supervisor is gone: the watch stops us
            self._link.sendall(f"READY {node_id}\n".encode())

    def watch_supervisor(self) -> None:
        """From now on, the supervisor going away means SIGTERM to this process."""
        threading.Thread(target=self._watch, name="pondsocket-worker-link", daemon=True).start()

    def _watch(self) -> None:
        with contextlib.suppress(OSError):
            while self._link.recv(64):
                pass  # the supervisor sends nothing: only the end of the stream matters
        log.warning("the supervisor is gone: shutting down")
        os.kill(os.getpid(), signal.SIGTERM)

    # -- the two transports ----------------------------------------------------------

    def run_standalone(
        self, pond: PondSocket, host: str, port: int, *, tune_gc: bool, **kwargs: Any
    ) -> None:
        """``pond.run()`` for a worker: the port is shared (``reuse_port``) and the
        supervisor is told once it listens; SIGTERM/SIGINT shut down gracefully."""
        if tune_gc:
            tune_process_gc()
        self.watch_supervisor()
        main = self._serve_standalone(pond, host, port, kwargs)
        try:
            import uvloop
        except ImportError:
            asyncio.run(main)
        else:
            uvloop.run(main)

    async def _serve_standalone(
        self, pond: PondSocket, host: str, port: int, kwargs: dict[str, Any]
    ) -> None:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        # Installed for the whole run (not only while serving), as pond.run() does: a
        # second signal during the shutdown must not kill the process halfway.
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        server = StandaloneServer(pond, host, port, reuse_port=True, **kwargs)
        await server.start()  # a failure propagates: the worker exits, the supervisor sees it
        self.ready(pond.cluster.node_id)
        try:
            closed = asyncio.ensure_future(server.wait_closed())
            stopped = asyncio.ensure_future(stop.wait())
            await asyncio.wait({closed, stopped}, return_when=asyncio.FIRST_COMPLETED)
            closed.cancel()
            stopped.cancel()
            log.info("shutting down gracefully")
        finally:
            await server.aclose()

    def run_uvicorn(self, pond: PondSocket, server: uvicorn.Server, host: str, port: int) -> None:
        """``server.run()`` on this worker's own ``SO_REUSEPORT`` sockets; the supervisor
        is told once uvicorn has started (lifespan done, sockets listening)."""
        sockets = listening_sockets(host, port)
        self.watch_supervisor()

        def announce() -> None:
            # uvicorn.Server.run() owns the event loop; its `started` flag is the signal.
            while not server.started:
                if server.should_exit:
                    return
                time.sleep(0.02)
            self.ready(pond.cluster.node_id)

        threading.Thread(target=announce, name="pondsocket-worker-ready", daemon=True).start()
        server.run(sockets=sockets)
