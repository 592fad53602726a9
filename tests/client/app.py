"""The server the client tests talk to, and a helper to run it on a loopback port."""

from __future__ import annotations

from typing import Any

from pondsocket import EventContext, HandlerError, JoinContext, PondSocket
from pondsocket.core.endpoint import Endpoint

TOKEN = "ok"


def make_app() -> tuple[PondSocket, Endpoint]:
    pond = PondSocket()

    def on_connect(ctx: Any) -> None:
        if ctx.query.get("token") != TOKEN:
            ctx.decline(401, "invalid token")
            return
        ctx.accept({"name": ctx.query.get("name", "anon")})

    endpoint = pond.create_endpoint("/socket", on_connect)

    def on_join(ctx: JoinContext) -> None:
        if ctx.params["id"] == "secret":
            ctx.decline(403, "private room")
            return
        ctx.accept().track({"name": ctx.user.assigns["name"]})

    room = endpoint.create_channel("/room/:id", on_join)

    @room.on_message("say")
    def say(ctx: EventContext) -> None:
        ctx.broadcast("said", {"from": ctx.user.assigns["name"], **ctx.payload})

    @room.on_message("whoami")
    def whoami(ctx: EventContext) -> None:
        ctx.reply("you", {"name": ctx.user.assigns["name"], "echo": ctx.payload})

    @room.on_message("rename")
    def rename(ctx: EventContext) -> None:
        ctx.update_presence({"name": ctx.payload["name"]})

    @room.on_message("silent")
    def silent(ctx: EventContext) -> None:
        pass

    @room.on_message("boom")
    def boom(ctx: EventContext) -> None:
        raise HandlerError("no such thing", status=404)

    endpoint.create_channel("/hist/:id", lambda ctx: ctx.accept()).history(size=5000)
    return pond, endpoint
