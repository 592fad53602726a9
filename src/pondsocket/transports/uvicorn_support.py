"""Running the ASGI app on uvicorn: a bound on slow handshakes, and a clean shutdown.

uvicorn waits for ever for a request's headers (measured: a client that sent half an
upgrade request was still held after 60 s), so a few thousand such clients hold as many
descriptors. :func:`with_header_timeout` wraps uvicorn's HTTP protocol class, whichever it
is, and closes a connection whose first request has not ended its headers in time, using
only the ``asyncio.Protocol`` methods every implementation has.

On SIGTERM uvicorn waits for every open response before the app hears of the shutdown
(its lifespan event comes last), so an SSE stream kept it waiting for ever, and WebSocket
clients got uvicorn's 1012 instead of our 1001. :func:`uvicorn_server` shuts the
PondSocket down first: every socket and stream is closed with 1001, leave handlers run,
the cluster is flushed; then uvicorn stops with nothing left open.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import uvicorn

    from pondsocket.transports.asgi import ASGIApp
    from pondsocket.transports.asgi_connection import ASGIApplication

log = logging.getLogger("pondsocket.asgi")

_END_OF_HEADERS = b"\r\n\r\n"


def with_header_timeout(base: type[Any], timeout: float) -> type[Any]:
    """A subclass of the protocol class ``base`` that closes connections whose request
    headers took longer than ``timeout`` seconds."""

    class HeaderTimeoutProtocol(base):  # type: ignore[misc]
        _pond_timer: asyncio.TimerHandle | None = None
        _pond_tail = b""

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            loop = asyncio.get_running_loop()
            self._pond_timer = loop.call_later(timeout, _expire, transport)
            super().connection_made(transport)

        def data_received(self, data: bytes) -> None:
            if self._pond_timer is not None:
                seen = self._pond_tail + data
                if _END_OF_HEADERS in seen:
                    self._pond_timer.cancel()
                    self._pond_timer = None
                else:
                    self._pond_tail = seen[-3:]
            super().data_received(data)

        def connection_lost(self, exc: Exception | None) -> None:
            if self._pond_timer is not None:
                self._pond_timer.cancel()
                self._pond_timer = None
            super().connection_lost(exc)

    HeaderTimeoutProtocol.__name__ = f"HeaderTimeout{base.__name__}"
    return HeaderTimeoutProtocol


def _expire(transport: asyncio.BaseTransport) -> None:
    if not transport.is_closing() and isinstance(transport, asyncio.WriteTransport):
        transport.abort()  # nothing to say to a client that has not finished asking


GRACEFUL_SHUTDOWN = 10.0
"""Default ``timeout_graceful_shutdown``: what uvicorn waits for open requests at most."""


def uvicorn_config(
    app: ASGIApp, *, host_app: ASGIApplication | None = None, **kwargs: Any
) -> uvicorn.Config:
    """A loaded ``uvicorn.Config`` serving ``host_app`` (an app that mounts ``app``) or
    ``app`` itself: ``app.uvicorn_options()`` under ``kwargs``, request headers bounded
    by ``PondOptions.handshake_timeout``, and a graceful-shutdown timeout
    (:data:`GRACEFUL_SHUTDOWN` unless given)."""
    import uvicorn

    options = {"timeout_graceful_shutdown": GRACEFUL_SHUTDOWN, **app.uvicorn_options()}
    config = uvicorn.Config(host_app or app, **{**options, **kwargs})
    config.load()
    protocol = config.http_protocol_class
    config.http_protocol_class = with_header_timeout(protocol, app.pond.options.handshake_timeout)
    return config


def uvicorn_server(app: ASGIApp, config: uvicorn.Config) -> uvicorn.Server:
    """A ``uvicorn.Server`` for ``config`` whose shutdown closes the PondSocket first."""
    import uvicorn

    class PondUvicornServer(uvicorn.Server):
        async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
            # Draining first (PondOptions.drain_grace): /readyz says 503 while the listening
            # socket still accepts and every connection still works.
            await app.pond.drain()
            for server in self.servers:
                server.close()  # no new connections while ours close
            timeout = float(self.config.timeout_graceful_shutdown or GRACEFUL_SHUTDOWN)
            try:
                await app.pond.shutdown(timeout)
            except Exception:
                log.exception("pondsocket shutdown failed")
            await super().shutdown(sockets)

    return PondUvicornServer(config)
