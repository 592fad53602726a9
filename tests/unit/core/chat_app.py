"""The chat app most core tests drive through the in-process test client (no sockets):
an endpoint ``/api/socket`` (``token=ok`` lets in), channels ``/chat/:room`` whose room
name picks the join outcome, one event per channel action, and the leaves recorded."""

from __future__ import annotations

import asyncio

from pondsocket import (
    ConnectionContext,
    EventContext,
    HandlerError,
    JoinContext,
    LeaveContext,
    PondOptions,
    PondSocket,
)
from pondsocket.testing import TestClient, TestConnection

LOBBY = "/chat/lobby"


def build(options: PondOptions | None = None) -> tuple[PondSocket, list[LeaveContext]]:
    pond = PondSocket(options)
    left: list[LeaveContext] = []

    async def authenticate(ctx: ConnectionContext) -> None:
        await asyncio.sleep(0)  # async handlers are supported
        if ctx.query.get("token") != "ok":
            ctx.decline(401, "bad token")
            return
        ctx.accept({"name": ctx.query.get("name", "anon")})

    endpoint = pond.create_endpoint("/api/socket", authenticate)

    def join(ctx: JoinContext) -> None:
        room = ctx.params["room"]
        if room == "secret":
            ctx.decline(403, "Not allowed")
        elif room == "crash":
            raise RuntimeError("database password is hunter2")
        elif room == "teapot":
            raise HandlerError("short and stout", 418)
        elif room == "undecided":
            pass
        else:
            ctx.accept({"role": ctx.join_params.get("role", "user")})
            ctx.track({"name": ctx.user.assigns["name"]})

    lobby = endpoint.create_channel("/chat/:room", join)

    @lobby.on_message("echo")
    def echo(ctx: EventContext) -> None:
        ctx.reply("echo-response", ctx.payload)

    @lobby.on_message("say")
    def say(ctx: EventContext) -> None:
        ctx.broadcast("message", {"text": ctx.payload["text"], "from": ctx.user.assigns["name"]})

    @lobby.on_message("whisper")
    def whisper(ctx: EventContext) -> None:
        ctx.broadcast_to("whisper", {"text": ctx.payload["text"]}, ctx.payload["to"])

    @lobby.on_message("others")
    def others(ctx: EventContext) -> None:
        ctx.broadcast_from("others", {"text": ctx.payload["text"]})

    @lobby.on_message("status")
    def status(ctx: EventContext) -> None:
        ctx.update_presence({"name": ctx.user.assigns["name"], "status": ctx.payload["status"]})

    @lobby.on_message("kick")
    def kick(ctx: EventContext) -> None:
        ctx.evict("bye", ctx.payload["user"])

    @lobby.on_message("assign")
    def assign(ctx: EventContext) -> None:
        ctx.assign(ctx.payload)
        ctx.reply("assigns", ctx.assigns[ctx.user.id])

    @lobby.on_message("vote/:choice")
    def vote(ctx: EventContext) -> None:
        ctx.reply("voted", {"choice": ctx.params["choice"]})

    @lobby.on_message("fail")
    def fail(ctx: EventContext) -> None:
        raise ValueError("secret internals")

    @lobby.on_message("bad-payload")
    def bad_payload(ctx: EventContext) -> None:
        ctx.broadcast("x", [1, 2])  # type: ignore[arg-type]

    @lobby.on_leave
    def on_leave(ctx: LeaveContext) -> None:
        left.append(ctx)

    return pond, left


async def connect(pond: PondSocket, name: str) -> TestConnection:
    return await TestClient(pond).connect("/api/socket", f"token=ok&name={name}")


async def settle() -> None:
    for _ in range(3):
        await asyncio.sleep(0)
