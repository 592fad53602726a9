"""What a transport needs of the server it serves: the seam between the transports and
:class:`pondsocket.PondSocket`, so that they depend on this small protocol and the
server (the composition root) can import them."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from pondsocket.core.endpoint import Endpoint
    from pondsocket.core.metrics import Metrics
    from pondsocket.core.options import PondOptions
    from pondsocket.routing import Route


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

    def http_get(self, path: str) -> tuple[int, str, bytes] | None:
        """``(status, content type, body)`` when the server answers a plain ``GET path``
        itself (health checks, metrics), else ``None``."""
        ...

    async def startup(self) -> None:
        """Run the app's startup hooks and start the cluster node (idempotent)."""
        ...

    def begin_shutdown(self) -> None:
        """Shutdown has begun: stop holding client input back (idempotent)."""
        ...

    async def shutdown(self, timeout: float = 5.0) -> None:
        """Close every connection, wait for leave handlers, flush cluster traffic."""
        ...
