"""Core behaviour through the in-process test client: no sockets involved."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from pondsocket import (
    AlreadyDecidedError,
    ConnectionContext,
    EventContext,
    HandlerError,
    JoinContext,
    LeaveContext,
    NotJoinedError,
    OutgoingContext,
    PayloadError,
    PondOptions,
    PondSocket,
    PresenceError,
    PresenceTooLargeError,
    UsageError,
)
from pondsocket.testing import ConnectionDeclined, TestClient, TestConnection

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


# -- connection -----------------------------------------------------------------


async def test_connection_frame_comes_first_with_connection_id() -> None:
    pond, _ = build()
    conn = await connect(pond, "alice")
    first = conn.frames[0]
    assert (first["action"], first["event"], first["channelName"]) == (
        "CONNECT",
        "CONNECTION",
        "ENDPOINT",
    )
    assert first["payload"] == {"connectionId": conn.id}


async def test_declined_connection_gets_status_and_message() -> None:
    pond, _ = build()
    with pytest.raises(ConnectionDeclined) as info:
        await TestClient(pond).connect("/api/socket", "token=nope")
    assert (info.value.status, info.value.message) == (401, "bad token")
    assert pond.metrics.connections_declined == 1


async def test_unknown_endpoint_is_404() -> None:
    pond, _ = build()
    with pytest.raises(ConnectionDeclined) as info:
        await TestClient(pond).connect("/elsewhere")
    assert info.value.status == 404


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


@pytest.mark.parametrize(
    ("handler", "status", "message"),
    [
        (
            lambda ctx: None,
            500,
            "Connection handler completed without accepting or declining the request",
        ),
        (lambda ctx: 1 / 0, 500, "Internal Server Error"),
        (lambda ctx: (_ for _ in ()).throw(HandlerError("go away", 403)), 403, "go away"),
    ],
)
async def test_connection_handler_outcomes(handler: Any, status: int, message: str) -> None:
    pond = PondSocket()
    pond.create_endpoint("/s", handler)
    with pytest.raises(ConnectionDeclined) as info:
        await TestClient(pond).connect("/s")
    assert (info.value.status, info.value.message) == (status, message)


async def test_connection_middleware_runs_in_order_and_can_stop() -> None:
    pond = PondSocket()
    order: list[str] = []

    async def first(ctx: ConnectionContext, next_: Any) -> None:
        order.append("first")
        await next_()

    def gate(ctx: ConnectionContext, next_: Any) -> Any:
        order.append("gate")
        if ctx.query.get("vip") != "1":
            ctx.decline(403, "vip only")
            return None
        return next_()

    def handler(ctx: ConnectionContext) -> ConnectionContext:
        order.append("handler")
        return ctx.accept()

    pond.create_endpoint("/s", handler, first, gate)
    with pytest.raises(ConnectionDeclined):
        await TestClient(pond).connect("/s")
    assert order == ["first", "gate"]
    order.clear()
    await TestClient(pond).connect("/s", "vip=1")
    assert order == ["first", "gate", "handler"]


def test_api_misuse_raises_clear_errors() -> None:
    pond = PondSocket()
    endpoint = pond.create_endpoint("/s", lambda ctx: ctx.accept())
    with pytest.raises(UsageError, match="already registered"):
        pond.create_endpoint("/s", lambda ctx: None)
    endpoint.create_channel("/a/:b", lambda ctx: ctx.accept())
    with pytest.raises(UsageError, match="already registered"):
        endpoint.create_channel("/a/:b", lambda ctx: None)
    with pytest.raises(ValueError, match="entire path segment"):
        endpoint.create_channel("/a:b", lambda ctx: None)


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


# -- joining ----------------------------------------------------------------------


async def test_join_ack_is_first_channel_frame_and_echoes_request_id() -> None:
    pond, _ = build()
    conn = await connect(pond, "alice")
    ack = await conn.join(LOBBY)
    channel_frames = conn.frames_for(LOBBY)
    assert channel_frames[0] is ack
    assert (ack["action"], ack["event"], ack["payload"]) == ("SYSTEM", "ACKNOWLEDGE", {})
    assert channel_frames[1]["action"] == "PRESENCE"


@pytest.mark.parametrize(
    ("channel", "code", "status", "message"),
    [
        ("/chat/secret", "UNAUTHORIZED_JOIN_REQUEST", 403, "Not allowed"),
        ("/nowhere/x", "CHANNEL_NOT_FOUND", 404, "No channel matches /nowhere/x"),
        ("/chat/crash", "CHANNEL_ERROR", 500, "Internal server error"),
        ("/chat/teapot", "CHANNEL_ERROR", 418, "short and stout"),
        (
            "/chat/undecided",
            "UNAUTHORIZED_JOIN_REQUEST",
            500,
            "Join handler completed without accepting or declining the request",
        ),
    ],
)
async def test_join_refusals_use_the_frame_both_published_clients_understand(
    channel: str, code: str, status: int, message: str
) -> None:
    # npm 0.0.32 declines on event UNAUTHORIZED, PyPI 0.0.6 only on SYSTEM/UNAUTHORIZED.
    pond, _ = build()
    conn = await connect(pond, "alice")
    answer = await conn.join(channel)
    assert (answer["action"], answer["event"], answer["channelName"]) == (
        "SYSTEM",
        "UNAUTHORIZED",
        channel,
    )
    payload = answer["payload"]
    assert (payload["code"], payload["status"], payload["statusCode"], payload["message"]) == (
        code,
        status,
        status,
        message,
    )
    assert len(conn.frames_for(channel)) == 1  # exactly one answer
    assert channel not in pond.endpoints[0].channel_names  # no empty channel left behind


async def test_duplicate_join_is_acknowledged_without_duplicating_membership() -> None:
    pond, _ = build()
    conn = await connect(pond, "alice")
    await conn.join(LOBBY)
    again = await conn.join(LOBBY)
    assert again["event"] == "ACKNOWLEDGE"
    channel = pond.endpoints[0].get_channel(LOBBY)
    assert channel is not None and channel.user_ids == [conn.id]


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


async def test_connection_closed_during_join_handler_leaves_no_member() -> None:
    pond = PondSocket()
    endpoint = pond.create_endpoint("/s", lambda ctx: ctx.accept())
    gate = asyncio.Event()

    async def slow_join(ctx: JoinContext) -> None:
        await gate.wait()
        ctx.accept()

    endpoint.create_channel("/r", slow_join)
    conn = await TestClient(pond).connect("/s")
    join = asyncio.create_task(conn.join("/r"))
    await settle()
    await conn.close()
    gate.set()
    with pytest.raises(AssertionError):
        await join  # no ACK was sent
    assert endpoint.get_channel("/r") is None


# -- events -------------------------------------------------------------------------


async def test_event_reply_and_pattern_params() -> None:
    pond, _ = build()
    conn = await connect(pond, "alice")
    await conn.join(LOBBY)
    reply = await conn.request(LOBBY, "echo", {"x": 1})
    assert (reply["action"], reply["event"], reply["payload"]) == (
        "SYSTEM",
        "echo-response",
        {"x": 1},
    )
    assert (await conn.request(LOBBY, "vote/yes"))["payload"] == {"choice": "yes"}


async def test_broadcast_variants_reach_exactly_the_right_members() -> None:
    pond, _ = build()
    a, b, c = [await connect(pond, n) for n in ("a", "b", "c")]
    for conn in (a, b, c):
        await conn.join(LOBBY)
    for conn in (a, b, c):
        conn.take()
    await a.send(LOBBY, "say", {"text": "all"})
    await a.send(LOBBY, "whisper", {"text": "psst", "to": [b.id]})
    await a.send(LOBBY, "others", {"text": "not me"})
    got = {name: [f["event"] for f in conn.take()] for name, conn in (("a", a), ("b", b), ("c", c))}
    assert got == {
        "a": ["message"],
        "b": ["message", "whisper", "others"],
        "c": ["message", "others"],
    }


async def test_broadcast_to_non_member_is_an_error_for_the_sender() -> None:
    pond, _ = build()
    a = await connect(pond, "a")
    await a.join(LOBBY)
    answer = await a.request(LOBBY, "whisper", {"text": "x", "to": ["ghost"]})
    assert (answer["event"], answer["payload"]["status"]) == ("HANDLER_ERROR", 500)


async def test_unknown_event_gets_not_found_error() -> None:
    pond, _ = build()
    conn = await connect(pond, "a")
    await conn.join(LOBBY)
    answer = await conn.request(LOBBY, "nope")
    assert (answer["action"], answer["event"]) == ("ERROR", "HANDLER_NOT_FOUND")
    assert answer["payload"]["code"] == 404


async def test_handler_exception_is_hidden_from_client_and_counted() -> None:
    pond, _ = build()
    conn = await connect(pond, "a")
    await conn.join(LOBBY)
    answer = await conn.request(LOBBY, "fail")
    assert answer["event"] == "HANDLER_ERROR"
    assert "secret" not in str(answer["payload"])
    assert pond.metrics.handler_errors == 1
    assert (await conn.request(LOBBY, "echo", {"still": "works"}))["payload"] == {"still": "works"}


async def test_non_object_broadcast_payload_raises_payload_error() -> None:
    pond, _ = build()
    conn = await connect(pond, "a")
    await conn.join(LOBBY)
    answer = await conn.request(LOBBY, "bad-payload")
    assert answer["event"] == "HANDLER_ERROR"


async def test_event_before_join_is_refused() -> None:
    pond, _ = build()
    conn = await connect(pond, "a")
    answer = await conn.request(LOBBY, "echo")
    assert (answer["action"], answer["event"], answer["channelName"]) == (
        "ERROR",
        "INVALID_MESSAGE",
        LOBBY,
    )
    assert answer["payload"]["status"] == 404


# -- presence ---------------------------------------------------------------------


async def test_presence_frames_carry_changed_and_full_list() -> None:
    pond, _ = build()
    a = await connect(pond, "alice")
    b = await connect(pond, "bob")
    await a.join(LOBBY)
    await b.join(LOBBY)
    a_presence = [f for f in a.frames_for(LOBBY, action="PRESENCE")]
    assert [(f["event"], f["payload"]["changed"]) for f in a_presence] == [
        ("JOIN", {"name": "alice"}),
        ("JOIN", {"name": "bob"}),
    ]
    assert a_presence[-1]["payload"]["presence"] == [{"name": "alice"}, {"name": "bob"}]
    await b.send(LOBBY, "status", {"status": "away"})
    update = a.frames_for(LOBBY, action="PRESENCE")[-1]
    assert update["event"] == "UPDATE"
    assert update["payload"]["changed"] == {"name": "bob", "status": "away"}
    b.take()
    ack = await b.leave(LOBBY)
    # Go and upstream Python acknowledge a leave; the PyPI client 0.0.6 and ported apps rely on it.
    assert (ack["action"], ack["event"], ack["payload"]) == ("SYSTEM", "EXIT_ACKNOWLEDGE", {})
    assert [f["event"] for f in b.take()] == ["EXIT_ACKNOWLEDGE"]  # and nothing else
    leave = a.frames_for(LOBBY, action="PRESENCE")[-1]
    assert leave["event"] == "LEAVE"
    assert leave["payload"] == {
        "changed": {"name": "bob", "status": "away"},
        "presence": [{"name": "alice"}],
    }


async def test_untracked_members_get_no_presence_frames() -> None:
    pond = PondSocket()
    endpoint = pond.create_endpoint("/s", lambda ctx: ctx.accept())
    endpoint.create_channel("/quiet", lambda ctx: ctx.accept())
    loud = endpoint.create_channel("/loud", lambda ctx: ctx.accept().track({"n": 1}))
    del loud
    quiet = await TestClient(pond).connect("/s")
    await quiet.join("/quiet")
    channel = endpoint.get_channel("/quiet")
    assert channel is not None
    other = await TestClient(pond).connect("/s")
    await other.join("/quiet")
    channel.track(other.id, {"n": 2})
    assert quiet.frames_for("/quiet", action="PRESENCE") == []
    assert len(other.frames_for("/quiet", action="PRESENCE")) == 1


def test_presence_misuse_raises() -> None:
    pond = PondSocket()
    endpoint = pond.create_endpoint("/s", lambda ctx: ctx.accept())
    endpoint.create_channel("/r", lambda ctx: ctx.accept())

    async def scenario() -> None:
        conn = await TestClient(pond).connect("/s")
        await conn.join("/r")
        channel = endpoint.get_channel("/r")
        assert channel is not None
        with pytest.raises(PresenceError):
            channel.update_presence(conn.id, {})
        channel.track(conn.id, {"a": 1})
        with pytest.raises(PresenceError):
            channel.track(conn.id, {"a": 1})
        with pytest.raises(PayloadError):
            channel.update_presence(conn.id, "online")  # type: ignore[arg-type]
        with pytest.raises(NotJoinedError):
            channel.track("ghost", {})
        channel.upsert_presence(conn.id, {"a": 2})
        assert channel.get_presence() == {conn.id: {"a": 2}}

    asyncio.run(scenario())


# -- leaving and eviction -----------------------------------------------------------


async def test_leave_runs_leave_handler_with_last_data_and_destroys_empty_channel() -> None:
    pond, left = build()
    conn = await connect(pond, "alice")
    await conn.join(LOBBY)
    await conn.leave(LOBBY)
    await settle()
    assert [(c.user.id, c.reason, c.user.presence) for c in left] == [
        (conn.id, "explicit_leave", {"name": "alice"})
    ]
    assert pond.endpoints[0].get_channel(LOBBY) is None
    answer = await conn.request(LOBBY, "echo")
    assert answer["event"] == "INVALID_MESSAGE"  # no longer a member


async def test_disconnect_leaves_every_channel() -> None:
    pond, left = build()
    a = await connect(pond, "a")
    b = await connect(pond, "b")
    for channel in (LOBBY, "/chat/other"):
        await a.join(channel)
        await b.join(channel)
    await a.close()
    await settle()
    assert sorted(c.channel.name for c in left) == ["/chat/lobby", "/chat/other"]
    assert {c.reason for c in left} == {"connection_closed"}
    assert pond.metrics.connections_open == 1
    leaves = [f for f in b.frames if f["action"] == "PRESENCE" and f["event"] == "LEAVE"]
    assert len(leaves) == 2


async def test_eviction_notifies_and_stops_delivery() -> None:
    pond, left = build()
    a = await connect(pond, "a")
    b = await connect(pond, "b")
    await a.join(LOBBY)
    await b.join(LOBBY)
    a.take()
    b.take()
    await a.send(LOBBY, "kick", {"user": b.id})
    b_frames = b.take()
    assert [(f["action"], f["event"]) for f in b_frames] == [
        ("SYSTEM", "kicked_out"),
        ("SYSTEM", "kicked"),
    ]
    # Both notice shapes: JS {message, code}, Go and upstream Python {reason}.
    assert b_frames[0]["payload"] == {"reason": "bye", "message": "bye", "code": 403}
    a_frames = a.take()
    assert [(f["action"], f["event"]) for f in a_frames] == [
        ("SYSTEM", "kicked"),
        ("PRESENCE", "LEAVE"),
    ]
    assert a_frames[0]["payload"] == {"userId": b.id, "reason": "bye"}
    await a.send(LOBBY, "say", {"text": "after"})
    assert b.take() == []
    await settle()
    assert left[-1].reason == "evicted:bye"


# -- outgoing handlers --------------------------------------------------------------


async def test_outgoing_handlers_transform_and_block_per_recipient() -> None:
    pond, _ = build()
    lobby = pond.endpoints[0].find_lobby(LOBBY)
    assert lobby is not None

    @lobby[0].on_outgoing("message")
    def censor(ctx: OutgoingContext) -> None:
        if ctx.user.assigns.get("name") == "blocked":
            ctx.block()
        elif ctx.user.assigns.get("name") == "b":
            ctx.transform({**ctx.payload, "text": "***"})

    a, b, c = [await connect(pond, n) for n in ("a", "b", "blocked")]
    for conn in (a, b, c):
        await conn.join(LOBBY)
    for conn in (a, b, c):
        conn.take()
    await a.send(LOBBY, "say", {"text": "rude"})
    assert [f["payload"]["text"] for f in a.take()] == ["rude"]
    assert [f["payload"]["text"] for f in b.take()] == ["***"]
    assert c.take() == []


def test_outgoing_handlers_must_be_plain_functions() -> None:
    pond, _ = build()
    found = pond.endpoints[0].find_lobby(LOBBY)
    assert found is not None

    async def slow(ctx: OutgoingContext) -> None: ...

    with pytest.raises(UsageError):
        found[0].on_outgoing("x", slow)  # type: ignore[type-var]  # the runtime check under test


# -- bad input ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        "not json",
        "[]",
        '{"action":"BROADCAST"}',
        '{"action":"NOPE","event":"e","channelName":"c","requestId":"r","payload":{}}',
        '{"action":"BROADCAST","event":"e","channelName":"c","requestId":"r","payload":null}',
    ],
)
async def test_bad_messages_get_exactly_one_error_frame_and_connection_survives(raw: str) -> None:
    pond, _ = build()
    conn = await connect(pond, "a")
    await conn.join(LOBBY)
    conn.take()
    await conn.send_raw(raw)
    frames = conn.take()
    assert len(frames) == 1 and frames[0]["action"] == "ERROR"
    assert frames[0]["payload"]["status"] == 400
    assert (await conn.request(LOBBY, "echo", {"ok": 1}))["payload"] == {"ok": 1}


async def test_binary_frames_are_refused_with_an_error_frame() -> None:
    pond, _ = build()
    conn = await connect(pond, "a")
    conn.take()
    conn.session.receive_binary()
    assert [f["event"] for f in conn.take()] == ["INVALID_MESSAGE"]


async def test_oversized_message_gets_413_and_is_not_processed() -> None:
    pond, _ = build(PondOptions(max_message_size=200))
    conn = await connect(pond, "a")
    await conn.join(LOBBY)
    conn.take()
    await conn.send(LOBBY, "say", {"text": "x" * 300})
    frames = conn.take()
    assert [(f["event"], f["payload"]["status"]) for f in frames] == [("INVALID_MESSAGE", 413)]
    assert (await conn.request(LOBBY, "echo", {"ok": 1}))["payload"] == {"ok": 1}


async def test_application_ping_is_ignored_silently() -> None:
    pond, _ = build()
    conn = await connect(pond, "a")
    conn.take()
    await conn.send_raw('{"action":"ping"}')
    assert conn.take() == []


async def test_flooding_client_is_rate_limited_with_one_error_per_refused_message() -> None:
    pond, _ = build(PondOptions(rate_limit=1.0, rate_burst=5))
    flooder = await connect(pond, "flood")
    calm = await connect(pond, "calm")
    await flooder.join(LOBBY)  # uses one token
    await calm.join(LOBBY)
    flooder.take()
    for _ in range(10):
        await flooder.send(LOBBY, "echo", {"n": 1})
    frames = flooder.take()
    assert [f["event"] for f in frames].count("echo-response") == 4
    limited = [f for f in frames if f["event"] == "INVALID_MESSAGE"]
    assert len(limited) == 6 and {f["payload"]["status"] for f in limited} == {429}
    assert pond.metrics.rate_limited == 6
    assert (await calm.request(LOBBY, "echo", {"fine": 1}))["payload"] == {"fine": 1}


# -- server-side API ------------------------------------------------------------------


async def test_server_side_api() -> None:
    pond, left = build()
    endpoint = pond.endpoints[0]
    a = await connect(pond, "a")
    b = await connect(pond, "b")
    await a.join(LOBBY)
    await b.join(LOBBY)
    assert endpoint.channel_names == [LOBBY]
    assert sorted(endpoint.connection_ids) == sorted([a.id, b.id])
    assert endpoint.get_connection_assigns(a.id) == {"name": "a"}
    endpoint.broadcast(LOBBY, "news", {"n": 1})
    endpoint.broadcast("/chat/none", "news", {"n": 1})  # no local members: other nodes only
    assert a.frames[-1]["event"] == "news" and b.frames[-1]["event"] == "news"
    channel = endpoint.get_channel(LOBBY)
    assert channel is not None
    assert channel.get_presence() == {a.id: {"name": "a"}, b.id: {"name": "b"}}
    assert channel.get_assigns()[b.id] == {"name": "b", "role": "user"}
    user = channel.get_user(a.id)
    assert user is not None and user.presence == {"name": "a"}
    channel.evict(b.id, "server says so")
    assert b.frames[-2]["event"] == "kicked_out"
    assert channel.user_ids == [a.id]
    assert endpoint.close_connection(a.id) is True
    assert a.outlet.closed == (4000, "")
    assert endpoint.close_connection("ghost") is False
    await settle()
    assert [c.reason for c in left] == ["evicted:server says so", "connection_closed"]
    assert endpoint.connection_ids == [b.id]


async def test_invalid_utf8_text_closes_the_connection_with_1007() -> None:
    pond, _ = build()
    conn = await connect(pond, "a")
    conn.take()
    await conn.send_raw(b'{"action":"BROADCAST","event":"\xff"}')
    assert conn.take() == []
    assert conn.outlet.closed is not None and conn.outlet.closed[0] == 1007


async def test_broadcast_hands_every_recipient_the_same_encoded_bytes() -> None:
    pond, _ = build()
    conns = [await connect(pond, f"u{i}") for i in range(5)]
    for conn in conns:
        await conn.join(LOBBY)
    sent: list[bytes] = []
    for conn in conns:
        original = conn.outlet.send

        def spy(frame: bytes, original: Any = original) -> None:
            sent.append(frame)
            original(frame)

        conn.outlet.send = spy  # type: ignore[method-assign]
    channel = pond.endpoints[0].get_channel(LOBBY)
    assert channel is not None
    channel.broadcast("news", {"n": 1})
    assert len(sent) == 5
    assert all(frame is sent[0] for frame in sent)  # encoded once, not per recipient


async def test_presence_coalescing_sends_one_frame_per_window_with_the_full_list() -> None:
    pond, _ = build(PondOptions(presence_coalesce_window=0.05))
    first = await connect(pond, "u0")
    await first.join(LOBBY)  # an isolated change goes out at once
    assert [f["event"] for f in first.frames_for(LOBBY, action="PRESENCE")] == ["JOIN"]
    others = [await connect(pond, f"u{i}") for i in range(1, 30)]
    for conn in others:
        await conn.join(LOBBY)
    await asyncio.sleep(0.12)  # two windows
    frames = first.frames_for(LOBBY, action="PRESENCE")
    assert len(frames) <= 3  # not one per join (30)
    final = frames[-1]["payload"]
    assert sorted(p["name"] for p in final["presence"]) == sorted(f"u{i}" for i in range(30))
    assert final["changed"] == {"name": "u29"}  # the window's last change
    last = others[-1].frames_for(LOBBY, action="PRESENCE")[-1]["payload"]["presence"]
    assert len(last) == 30  # late joiners get the complete list too


def test_presence_coalesce_window_must_not_be_negative() -> None:
    with pytest.raises(UsageError):
        PondOptions(presence_coalesce_window=-1)


# -- limits -----------------------------------------------------------------------


async def test_a_presence_above_max_presence_bytes_is_refused_with_413() -> None:
    pond, _ = build()  # default max_presence_bytes: 4 KiB
    a = await connect(pond, "a")
    b = await connect(pond, "b")
    await a.join(LOBBY)
    await b.join(LOBBY)
    a.take()
    answer = await b.request(LOBBY, "status", {"status": "x" * 5000})
    assert (answer["action"], answer["event"]) == ("ERROR", "HANDLER_ERROR")
    assert answer["payload"]["status"] == 413
    assert "max_presence_bytes" in answer["payload"]["message"]
    assert a.take() == []  # nobody received the amplified list
    channel = pond.endpoints[0].get_channel(LOBBY)
    assert channel is not None
    with pytest.raises(PresenceTooLargeError):
        channel.update_presence(b.id, {"blob": "y" * 4097})
    channel.update_presence(b.id, {"status": "fine"})  # a small one still works
    assert channel.get_presence()[b.id] == {"status": "fine"}


async def test_max_presence_bytes_none_lifts_the_limit() -> None:
    pond, _ = build(PondOptions(max_presence_bytes=None))
    a = await connect(pond, "a")
    await a.join(LOBBY)
    await a.send(LOBBY, "status", {"status": "x" * 5000})
    update = a.frames_for(LOBBY, action="PRESENCE")[-1]
    assert (update["event"], len(update["payload"]["changed"]["status"])) == ("UPDATE", 5000)
