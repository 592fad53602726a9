"""Cross-site WebSocket hijacking, tried as an attacker's page would over real sockets: a
handshake whose ``Origin`` is another site's is refused with HTTP 403 before the upgrade
and before the app's connection handler runs, on the standalone server, under ASGI and on
SSE (the stream and its POSTs)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from pondsocket import ConnectionContext, PondOptions, PondSocket
from pondsocket.transports.standalone import StandaloneServer

EVIL = "https://evil.example"


class App:
    def __init__(self, options: PondOptions | None = None) -> None:
        self.pond = PondSocket(options)
        self.handshakes = 0
        self.pond.create_endpoint("/socket", self.authenticate)

    def authenticate(self, ctx: ConnectionContext) -> None:
        self.handshakes += 1  # stands for "reads the victim's cookie and accepts"
        ctx.accept({"user": ctx.cookies.get("session", "")})


@contextlib.asynccontextmanager
async def serve(app: App, transport: str) -> AsyncIterator[int]:
    if transport == "standalone":
        async with StandaloneServer(app.pond, "127.0.0.1", 0) as standalone:
            yield standalone.port
        return
    import uvicorn

    config = uvicorn.Config(
        app.pond.asgi, host="127.0.0.1", port=0, log_level="warning", log_config=None
    )
    server = uvicorn.Server(config)
    task = asyncio.get_running_loop().create_task(server.serve())
    async with asyncio.timeout(10):
        while not server.started:
            await asyncio.sleep(0.01)
    try:
        yield server.servers[0].sockets[0].getsockname()[1]
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 20)


@pytest.fixture(params=["standalone", "asgi"])
def transport(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def handshake(port: int, origin: str | None) -> int:
    """The HTTP status of a WebSocket handshake with ``origin`` (101 when accepted)."""
    url = f"ws://127.0.0.1:{port}/socket"
    try:
        async with connect(url, origin=origin, additional_headers={"Cookie": "session=victim"}):  # type: ignore[arg-type]
            return 101
    except InvalidStatus as exc:
        return exc.response.status_code


async def test_another_sites_page_is_refused_before_the_upgrade(
    transport: str, caplog: pytest.LogCaptureFixture
) -> None:
    app = App()
    async with serve(app, transport) as port:
        with caplog.at_level(logging.WARNING, "pondsocket.endpoint"):
            statuses = [await handshake(port, EVIL) for _ in range(5)]
        assert statuses == [403] * 5
        assert app.handshakes == 0  # the app never saw it
        assert app.pond.metrics.origin_refused == 5
        refusals = [r for r in caplog.records if "evil.example" in r.getMessage()]
        assert len(refusals) == 1  # one line, not one per attempt
        # Same origin (the page the server itself serves) and non-browser clients pass.
        assert await handshake(port, f"http://127.0.0.1:{port}") == 101
        assert await handshake(port, None) == 101
        assert await handshake(port, "null") == 403
        assert await handshake(port, f"http://127.0.0.1:{port + 1}") == 403
        assert app.handshakes == 2


async def test_allowed_origins_and_the_opt_out(transport: str) -> None:
    app = App(PondOptions(allowed_origins=["https://*.example.com"]))
    async with serve(app, transport) as port:
        assert await handshake(port, "https://app.example.com") == 101
        assert await handshake(port, "http://app.example.com") == 403
        assert await handshake(port, EVIL) == 403
    app = App(PondOptions(allowed_origins=["*"]))
    async with serve(app, transport) as port:
        assert await handshake(port, EVIL) == 101


async def test_sse_stream_and_posts_follow_the_same_rule() -> None:
    app = App()
    async with serve(app, "asgi") as port:
        base = f"http://127.0.0.1:{port}/socket"
        async with httpx.AsyncClient(timeout=5) as http:
            refused = await http.get(base, headers={"Accept": "text/event-stream", "Origin": EVIL})
            assert refused.status_code == 403
            assert app.handshakes == 0
            posted = await http.post(
                base,
                headers={"Origin": EVIL, "X-Connection-ID": "guessed"},
                content=b"{}",
            )
            assert posted.status_code == 403
            removed = await http.delete(
                base, headers={"Origin": EVIL, "X-Connection-ID": "guessed"}
            )
            assert removed.status_code == 403
        assert app.pond.metrics.origin_refused == 3
