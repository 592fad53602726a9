"""Fixtures for integration tests that run a real server on a loopback port.

ASGI fixtures (``asgi_*``): a real uvicorn server in the test's event loop, serving
``pond.asgi`` either directly or mounted in a FastAPI app.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    import uvicorn

    from pondsocket import PondSocket

# -- ASGI (uvicorn) ------------------------------------------------------------

ASGI_START_TIMEOUT = 10.0
ASGI_STOP_TIMEOUT = 15.0  # above the ASGI app's close_timeout (10 s)


@dataclass
class AsgiServer:
    """A running uvicorn server; ``prefix`` is the mount point ("" when served directly)."""

    pond: PondSocket
    server: uvicorn.Server
    task: asyncio.Task[None]
    port: int
    prefix: str

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}{self.prefix}"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.prefix}"

    async def stop(self) -> None:
        """Graceful shutdown (as on SIGTERM); idempotent. Fails on leaked connection tasks."""
        if self.task.done():
            self.task.result()
            return
        self.server.should_exit = True
        await asyncio.wait_for(self.task, ASGI_STOP_TIMEOUT)
        leaked = [t for t in asyncio.all_tasks() if t.get_name().startswith("pondsocket-asgi")]
        assert not leaked, f"connection tasks left running after shutdown: {leaked}"
        assert self.pond.metrics.connections_open == 0


AsgiServe = Callable[["PondSocket"], Awaitable[AsgiServer]]


@pytest.fixture(params=[None, "/ws"], ids=["direct", "fastapi"])
def asgi_mount(request: pytest.FixtureRequest) -> str | None:
    """Where ``pond.asgi`` is served: directly (None) or mounted at ``/ws`` in FastAPI."""
    mount: str | None = request.param
    return mount


@pytest.fixture
async def asgi_serve(asgi_mount: str | None) -> AsyncIterator[AsgiServe]:
    """``await asgi_serve(pond)`` starts uvicorn for ``pond``; stopped at teardown."""
    servers: list[AsgiServer] = []

    async def serve(pond: PondSocket) -> AsgiServer:
        server = await _start_uvicorn(_asgi_app(pond, asgi_mount), pond.asgi.uvicorn_options())
        running = AsgiServer(pond, *server, prefix=asgi_mount or "")
        servers.append(running)
        return running

    yield serve
    for running in servers:
        await running.stop()


def _asgi_app(pond: PondSocket, mount: str | None) -> Any:
    if mount is None:
        return pond.asgi
    from fastapi import FastAPI

    # Mounted apps get no lifespan events: the host app forwards shutdown to the pond.
    app = FastAPI(lifespan=pond.asgi.lifespan)
    app.mount(mount, pond.asgi)
    return app


async def _start_uvicorn(
    app: Any, options: dict[str, Any]
) -> tuple[uvicorn.Server, asyncio.Task[None], int]:
    import uvicorn

    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=0,
        ws="websockets-sansio",
        lifespan="on",
        log_level="warning",
        log_config=None,  # keep pytest's logging setup (caplog)
        **options,
    )
    server = uvicorn.Server(config)
    task = asyncio.get_running_loop().create_task(server.serve(), name="asgi-test-uvicorn")
    async with asyncio.timeout(ASGI_START_TIMEOUT):
        while not server.started:
            if task.done():
                task.result()  # raises the startup error
                raise RuntimeError("uvicorn exited during startup")
            await asyncio.sleep(0.01)
    port = int(server.servers[0].sockets[0].getsockname()[1])
    return server, task, port
