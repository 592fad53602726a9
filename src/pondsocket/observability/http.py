"""Serving the metrics: the answer to ``GET metrics_path`` on the clients' port (both
transports ask :meth:`PondSocket.http_get`), and :class:`MetricsListener`, the separate
plain-HTTP port of ``PondOptions.metrics_port``."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pondsocket.server import PondSocket

log = logging.getLogger("pondsocket.metrics")

TEXT = "text/plain; charset=utf-8"
NOT_INSTALLED = b"Prometheus metrics need the prometheus-client package: pip install 'pondsocket-cluster[metrics]'\n"
_MAX_REQUEST = 8192  # bytes of request line and headers
_READ_TIMEOUT = 5.0


def metrics_response(pond: PondSocket) -> tuple[int, str, bytes]:
    """``(status, content type, body)`` of a scrape: 200 and the exposition, or 501 when
    ``prometheus_client`` is not installed."""
    try:
        from pondsocket.observability.prometheus import exposition
    except ImportError as exc:
        if not (exc.name or "").startswith("prometheus_client"):
            raise
        return 501, TEXT, NOT_INSTALLED
    return exposition(pond)


class MetricsListener:
    """A minimal HTTP/1.1 server answering ``GET path`` with the metrics, 404 otherwise;
    one request per connection. It runs on the server's event loop, so a scrape reads the
    counters between two of the loop's callbacks, never while they change."""

    def __init__(self, pond: PondSocket, host: str, port: int, path: str) -> None:
        self._pond, self._host, self._port, self._path = pond, host, port, path
        self._server: asyncio.Server | None = None

    @property
    def port(self) -> int:
        """The bound port (useful with ``metrics_port=0``)."""
        if self._server is None or not self._server.sockets:
            raise RuntimeError("the metrics listener is not started")
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self) -> int:
        self._server = await asyncio.start_server(
            self._serve, self._host, self._port, limit=_MAX_REQUEST
        )
        log.info("metrics on http://%s:%d%s", self._host, self.port, self._path)
        return self.port

    async def aclose(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
            with contextlib.suppress(Exception):
                await server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(_READ_TIMEOUT):
                head = await reader.readuntil(b"\r\n\r\n")
            status, content_type, body = self._answer(head)
            phrase = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed"}
            writer.write(
                f"HTTP/1.1 {status} {phrase.get(status, 'Error')}\r\n"
                f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
                "Connection: close\r\n\r\n".encode()
                + body
            )
            await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, OSError):
            pass  # a slow, oversized or vanished request: just close
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    def _answer(self, head: bytes) -> tuple[int, str, bytes]:
        parts = head.split(b"\r\n", 1)[0].split()
        if len(parts) != 3 or not parts[2].startswith(b"HTTP/"):
            return 400, TEXT, b"Bad Request\n"
        method, target = parts[0], parts[1].decode("latin-1").partition("?")[0]
        if target != self._path:
            return 404, TEXT, b"Not Found\n"
        if method != b"GET":
            return 405, TEXT, b"Method Not Allowed\n"
        return metrics_response(self._pond)
