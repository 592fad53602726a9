"""The application the real-client interop tests talk to (npm 0.0.32, PyPI 0.0.6), and
the two transports it is served on: the standalone server and the ASGI app on uvicorn."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from pondsocket import (
    ConnectionContext,
    EventContext,
    JoinContext,
    LeaveContext,
    PondOptions,
    PondSocket,
)
from pondsocket.transports.standalone import StandaloneServer

LOBBY = "/chat/lobby"
TRANSPORTS = ("standalone", "asgi")


class App:
    """The application every test talks to, with what its leave handler saw."""

    def __init__(self, options: PondOptions | None = None) -> None:
        self.pond = PondSocket(options)
        self.left: list[tuple[str, str]] = []
        endpoint = self.pond.create_endpoint("/api/socket", self.authenticate)
        lobby = endpoint.create_channel("/chat/:room", self.join)
        lobby.on_message("echo", lambda ctx: ctx.reply("echo-response", ctx.payload))
        lobby.on_message("say", lambda ctx: ctx.broadcast("message", ctx.payload))
        lobby.on_message("whisper", self.whisper)
        lobby.on_message("others", lambda ctx: ctx.broadcast_from("others", ctx.payload))
        lobby.on_message("kick", lambda ctx: ctx.evict("misbehaving", ctx.payload["user"]))
        lobby.on_message(
            "away", lambda ctx: ctx.update_presence({**ctx.user.presence, "away": True})
        )  # type: ignore[dict-item]
        lobby.on_leave(self.on_leave)

    @staticmethod
    def authenticate(ctx: ConnectionContext) -> None:
        if ctx.query.get("token") != "secret":
            ctx.decline(401, "bad token")
            return
        ctx.accept({"name": ctx.query.get("name", "anon")})

    @staticmethod
    async def join(ctx: JoinContext) -> None:
        if ctx.params["room"] == "secret":
            ctx.decline(403, "members only")
            return
        ctx.accept()
        ctx.track({"name": ctx.user.assigns["name"], "id": ctx.user.id})

    @staticmethod
    def whisper(ctx: EventContext) -> None:
        ctx.broadcast_to("whisper", {"text": ctx.payload["text"]}, ctx.payload["to"])

    def on_leave(self, ctx: LeaveContext) -> None:
        self.left.append((ctx.user.assigns["name"], ctx.reason))


@contextlib.asynccontextmanager
async def serve(app: App, transport: str) -> AsyncIterator[str]:
    """Serve ``app`` on a loopback port; yields the endpoint's ``ws://`` URL."""
    if transport == "standalone":
        server = StandaloneServer(app.pond, "127.0.0.1", 0)
        port = await server.start()
        try:
            yield f"ws://127.0.0.1:{port}/api/socket"
        finally:
            await server.aclose()
        return
    import uvicorn

    config = uvicorn.Config(
        app.pond.asgi, host="127.0.0.1", port=0, lifespan="on", log_level="warning", log_config=None
    )
    uvicorn_server = uvicorn.Server(config)
    task = asyncio.get_running_loop().create_task(uvicorn_server.serve())
    async with asyncio.timeout(10):
        while not uvicorn_server.started:
            await asyncio.sleep(0.01)
    port = uvicorn_server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"ws://127.0.0.1:{port}/api/socket"
    finally:
        uvicorn_server.should_exit = True
        await asyncio.wait_for(task, 20)
