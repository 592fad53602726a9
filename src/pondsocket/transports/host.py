"""What a transport needs of the server it serves: the seam between the transports and
:class:`pondsocket.PondSocket`, so that they depend on this small protocol and the
server (the composition root) can import them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from pondsocket.core.endpoint import Endpoint
    from pondsocket.core.metrics import Metrics
    from pondsocket.core.options import PondOptions
    from pondsocket.core.request import ConnectionRequest
    from pondsocket.routing import Route


@dataclass(frozen=True, slots=True)
class HttpResponse:
    """A plain HTTP answer the server gives itself (health, metrics, the admin page)."""

    status: int
    content_type: str
    body: bytes
    headers: tuple[tuple[str, str], ...] = ()
    """Headers besides ``Content-Type`` and ``Content-Length``."""


class Host(Protocol):
    options: PondOptions
    metrics: Metrics

    @property
    def endpoints(self) -> list[Endpoint]: ...

    def match(self, path: str) -> tuple[Endpoint, Route] | None:
        """The endpoint serving ``path`` (with its query string), if any."""
        ...

    def describe(self) -> str:
        """One line for the logs: the bus and the node id."""
        ...

    def health(self, path: str) -> tuple[int, bytes] | None:
        """``(status, JSON body)`` when ``path`` is a health check, else ``None``."""
        ...

    async def http_request(
        self, method: str, path: str, request: Callable[[], ConnectionRequest]
    ) -> HttpResponse | None:
        """The answer to a plain HTTP request (no upgrade) that the server gives itself
        (health checks, metrics, the admin page), else ``None``. ``request()`` builds the
        request's headers and client only for the paths that need them. The body is never
        read: no such path takes one (the standalone server cannot receive one)."""
        ...

    async def startup(self) -> None:
        """Run the app's startup hooks and start the cluster node (idempotent)."""
        ...

    def begin_shutdown(self) -> None:
        """Shutdown has begun: stop holding client input back (idempotent)."""
        ...

    async def drain(self) -> None:
        """Report not ready for ``PondOptions.drain_grace`` seconds, serving on (once)."""
        ...

    async def shutdown(self, timeout: float = 5.0, *, drain: bool = True) -> None:
        """Drain (unless ``drain`` is false), close every connection, wait for leave
        handlers, flush cluster traffic."""
        ...
