"""Standalone transport: PondSocket served by the ``websockets`` asyncio server (>= 14).

:func:`serve` (until cancelled or SIGTERM) and :func:`run` (blocking, until SIGINT or
SIGTERM) live here, the entry points the server and the command line call. The parts
are modules of their own: the server (accept, handshake, keep-alive, shutdown) in
``standalone_server.py``, the write side of a connection in ``standalone_outlet.py``,
plain HTTP answers in ``standalone_http.py``; their public names are re-exported here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import threading
from collections.abc import Callable
from typing import Any

from pondsocket.runtime import tune_gc as tune_process_gc
from pondsocket.transports.host import Host
from pondsocket.transports.standalone_http import HttpRoutes
from pondsocket.transports.standalone_outlet import WebSocketOutlet
from pondsocket.transports.standalone_server import StandaloneServer

__all__ = ["HttpRoutes", "StandaloneServer", "WebSocketOutlet", "run", "serve"]

log = logging.getLogger("pondsocket.standalone")


async def serve(
    pond: Host,
    host: str = "127.0.0.1",
    port: int = 8080,
    *,
    ready: asyncio.Future[int] | None = None,
    http_routes: HttpRoutes | None = None,
    handle_sigterm: bool = True,
    **ws_kwargs: Any,
) -> None:
    """Serve ``pond`` until cancelled (or SIGTERM), then shut down gracefully.

    ``ready`` receives the bound port once listening (handy with ``port=0``);
    ``http_routes`` serves fixed pages to plain HTTP GETs; other keyword arguments go to
    ``websockets.asyncio.server.serve`` (e.g. ``compression="deflate"``, ``close_timeout``).

    Run from the main thread of a process whose SIGTERM nobody handles yet, a SIGTERM
    makes this return after the graceful shutdown instead of killing the process like a
    crash (clients would see 1006, peers no leave); ``handle_sigterm=False`` opts out.
    """
    server = StandaloneServer(pond, host, port, http_routes=http_routes, **ws_kwargs)
    try:
        bound = await server.start()
    except BaseException as exc:
        if ready is not None and not ready.done():
            if isinstance(exc, asyncio.CancelledError):
                ready.cancel()
            else:
                ready.set_exception(exc)
        raise
    scheme = "wss" if ws_kwargs.get("ssl") is not None else "ws"
    log.info(
        "PondSocket listening on %s://%s:%d (standalone; %s)", scheme, host, bound, pond.describe()
    )
    if ready is not None and not ready.done():
        ready.set_result(bound)
    stop = asyncio.Event()
    uninstall = _stop_on_sigterm(stop) if handle_sigterm else None
    closed = asyncio.ensure_future(server.wait_closed())
    stopped = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({closed, stopped}, return_when=asyncio.FIRST_COMPLETED)
        if stop.is_set():
            log.info("SIGTERM: shutting down gracefully")
    finally:
        closed.cancel()
        stopped.cancel()
        if uninstall is not None:
            uninstall()
        await server.aclose()


def _stop_on_sigterm(stop: asyncio.Event) -> Callable[[], None] | None:
    """Set ``stop`` on SIGTERM if nobody handles that signal yet; returns the remover."""
    if threading.current_thread() is not threading.main_thread():
        return None
    if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        return None  # the app (or pond.run(), or uvicorn) handles it
    loop = asyncio.get_running_loop()
    try:
        loop.add_signal_handler(signal.SIGTERM, stop.set)
    except (NotImplementedError, RuntimeError):  # e.g. Windows
        return None

    def uninstall() -> None:
        loop.remove_signal_handler(signal.SIGTERM)

    return uninstall


def run(
    pond: Host,
    host: str = "127.0.0.1",
    port: int = 8080,
    *,
    tune_gc: bool = True,
    on_ready: Callable[[int], object] | None = None,
    **kwargs: Any,
) -> None:
    """Blocking: serve ``pond`` until SIGINT/SIGTERM, then shut down gracefully.

    Uses uvloop when it is installed (about 10-25% faster here), else asyncio's loop.
    The process's garbage collector is tuned for a server (:func:`pondsocket.tune_gc`)
    unless ``tune_gc`` is false. ``on_ready(port)`` is called with the bound port once
    the server listens (not at all when binding fails).
    """
    if tune_gc:
        tune_process_gc()
    try:
        import uvloop
    except ImportError:
        asyncio.run(_serve_until_signal(pond, host, port, on_ready, kwargs))
    else:
        uvloop.run(_serve_until_signal(pond, host, port, on_ready, kwargs))


async def _serve_until_signal(
    pond: Host,
    host: str,
    port: int,
    on_ready: Callable[[int], object] | None,
    kwargs: dict[str, Any],
) -> None:
    """:func:`run`'s loop: serve until SIGINT or SIGTERM, then shut down gracefully."""
    loop = asyncio.get_running_loop()
    ready: asyncio.Future[int] = loop.create_future()

    def listening(done: asyncio.Future[int]) -> None:
        # exception() also marks a failed bind's error as seen: server_task raises it
        if not done.cancelled() and done.exception() is None and on_ready is not None:
            on_ready(done.result())

    ready.add_done_callback(listening)
    stop = asyncio.Event()
    installed: list[signal.Signals] = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):  # e.g. Windows
            loop.add_signal_handler(sig, stop.set)
            installed.append(sig)
    server_task = asyncio.create_task(serve(pond, host, port, ready=ready, **kwargs))
    stop_task = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({server_task, stop_task}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stop_task.cancel()
        server_task.cancel()  # serve() shuts down gracefully when cancelled
        await asyncio.wait({server_task, stop_task})
        for sig in installed:
            loop.remove_signal_handler(sig)
    error = None if server_task.cancelled() else server_task.exception()
    if error is not None:
        raise error  # e.g. the port was already in use
