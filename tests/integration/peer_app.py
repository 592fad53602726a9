"""The application the real-client interop tests talk to (npm 0.0.32, PyPI 0.0.6), the two
transports it is served on (the standalone server, the ASGI app on uvicorn), and the two
deployments: one node, or two nodes sharing a namespace on the real Redis at
127.0.0.1:6379 (clients then alternate between the nodes, so every check crosses them)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections.abc import AsyncIterator

from pondsocket import (
    ConnectionContext,
    EventContext,
    JoinContext,
    LeaveContext,
    PondOptions,
    PondSocket,
)
from pondsocket.cluster import ClusterOptions
from pondsocket.pubsub import PubSub
from pondsocket.transports.standalone import StandaloneServer

LOBBY = "/chat/lobby"
TRANSPORTS = ("standalone", "asgi")
DEPLOYMENTS = [(t, n) for n in (1, 2) for t in TRANSPORTS]
REDIS_URL = "redis://127.0.0.1:6379/0"


class App:
    """The application every test talks to, with what its leave handler saw."""

    def __init__(
        self,
        options: PondOptions | None = None,
        pubsub: PubSub | None = None,
        cluster: ClusterOptions | None = None,
    ) -> None:
        self.pond = PondSocket(options, pubsub=pubsub, cluster=cluster)
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
        )
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


class Deployment:
    """The nodes of one test; each new client goes to the next node in turn."""

    def __init__(self, apps: list[App], urls: list[str]) -> None:
        self.apps, self.urls = apps, urls
        self._turn = 0

    def next_url(self) -> str:
        url = self.urls[self._turn % len(self.urls)]
        self._turn += 1
        return url

    @property
    def left(self) -> list[tuple[str, str]]:
        """What the leave handlers of every node saw."""
        return [entry for app in self.apps for entry in app.left]

    @property
    def connections_open(self) -> int:
        return sum(app.pond.metrics.connections_open for app in self.apps)


@contextlib.asynccontextmanager
async def deploy(transport: str, nodes: int) -> AsyncIterator[Deployment]:
    """``nodes`` nodes of :class:`App` on ``transport`` (two: over the real Redis)."""
    if nodes == 1:
        app = App()
        async with serve(app, transport) as url:
            yield Deployment([app], [url])
        return
    from pondsocket.pubsub.redis import RedisPubSub

    try:
        pubsubs = [await RedisPubSub.connect(REDIS_URL) for _ in range(nodes)]
    except Exception as exc:
        if os.environ.get("CI"):
            raise AssertionError(f"no Redis at {REDIS_URL} (CI: it must be there)") from exc
        import pytest

        pytest.skip(f"no Redis at {REDIS_URL}: {exc}")
    cluster = ClusterOptions(namespace="interop" + uuid.uuid4().hex[:10])
    apps = [App(pubsub=pubsub, cluster=cluster) for pubsub in pubsubs]
    try:
        async with contextlib.AsyncExitStack() as stack:
            urls = [await stack.enter_async_context(serve(app, transport)) for app in apps]
            yield Deployment(apps, urls)
    finally:
        for pubsub in pubsubs:
            await pubsub.close()
