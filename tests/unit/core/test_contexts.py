"""Handler contexts (core/contexts.py): what ConnectionContext and JoinContext expose,
and what they refuse."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tests.unit.core.chat_app import LOBBY, build, connect

from pondsocket import (
    AlreadyDecidedError,
    ConnectionContext,
    JoinContext,
    PayloadError,
    PondSocket,
    UsageError,
)
from pondsocket.testing import TestClient


# The cookies are parsed by ConnectionRequest (core/request.py).
async def test_connection_context_exposes_request_details() -> None:
    pond = PondSocket()
    seen: dict[str, Any] = {}

    def handler(ctx: ConnectionContext) -> None:
        seen.update(
            params=dict(ctx.params),
            query=dict(ctx.query),
            query_all=dict(ctx.query_all),
            header=ctx.headers.get("x-app"),
            cookies=ctx.cookies,
            client=ctx.client,
            id=ctx.connection_id,
        )
        ctx.accept().reply("welcome", {"motd": "hi"})

    pond.create_endpoint("/api/:tenant", handler)
    conn = await TestClient(pond).connect(
        "/api/acme", "a=1&a=2&b=x+y", headers={"X-App": "1", "Cookie": "sid=abc; theme=dark"}
    )
    assert seen["params"] == {"tenant": "acme"}
    assert seen["query"] == {"a": "2", "b": "x y"}
    assert seen["query_all"] == {"a": ["1", "2"], "b": ["x y"]}
    assert seen["header"] == "1"
    assert seen["cookies"] == {"sid": "abc", "theme": "dark"}
    assert seen["client"] == ("127.0.0.1", 50000)
    assert seen["id"] == conn.id
    assert conn.frames[1]["event"] == "welcome" and conn.frames[1]["payload"] == {"motd": "hi"}


async def test_accepting_twice_or_bad_assigns_raise() -> None:
    pond = PondSocket()
    errors: list[Exception] = []

    def handler(ctx: ConnectionContext) -> None:
        ctx.accept()
        for bad in (lambda: ctx.accept(), lambda: ctx.decline(), lambda: ctx.assign([1])):  # type: ignore[arg-type]
            try:
                bad()
            except Exception as exc:
                errors.append(exc)

    pond.create_endpoint("/s", handler)
    await TestClient(pond).connect("/s")
    assert [type(e) for e in errors] == [AlreadyDecidedError, AlreadyDecidedError, PayloadError]


async def test_join_assigns_merge_connection_and_join_assigns() -> None:
    pond, _ = build()
    conn = await connect(pond, "alice")
    await conn.join(LOBBY, {"role": "admin"})
    reply = await conn.request(LOBBY, "assign", {"mood": "happy"})
    assert reply["payload"] == {"name": "alice", "role": "admin", "mood": "happy"}


async def test_join_context_requires_accept_before_track_and_reply() -> None:
    pond = PondSocket()
    endpoint = pond.create_endpoint("/s", lambda ctx: ctx.accept())
    errors: list[Exception] = []

    def join(ctx: JoinContext) -> None:
        attempts: tuple[Callable[[], object], ...] = (
            lambda: ctx.track({}),
            lambda: ctx.reply("x", {}),
        )
        for early in attempts:
            try:
                early()
            except UsageError as exc:
                errors.append(exc)
        ctx.assign({"staged": True}).accept()
        ctx.reply("hello", {"assigns": ctx.user.assigns})

    endpoint.create_channel("/r", join)
    conn = await TestClient(pond).connect("/s")
    ack = await conn.join("/r")
    assert len(errors) == 2
    hello = conn.frames_for("/r")[1]
    assert hello["event"] == "hello" and hello["requestId"] == ack["requestId"]
    assert hello["payload"] == {"assigns": {"staged": True}}
