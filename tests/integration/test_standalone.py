"""The standalone transport end to end: a real server on 127.0.0.1 (port 0), driven by the
``websockets`` client and, where a misbehaving client is needed, by a raw socket."""

from __future__ import annotations

import asyncio
import functools
import socket
import struct
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest
from tests.integration.helpers_standalone import (
    TIMEOUT,
    Client,
    Frame,
    RawClient,
    http_get,
    wait_until,
)
from websockets.exceptions import InvalidStatus

from pondsocket import (
    ConnectionContext,
    EventContext,
    JoinContext,
    LeaveContext,
    OverflowPolicy,
    PondOptions,
    PondSocket,
)
from pondsocket.core.request import ConnectionRequest
from pondsocket.transports.standalone import StandaloneServer, serve

TOKEN = "secret-token"
PAGE = b"<!doctype html><title>demo</title><p>hello</p>"

# -- the test application ----------------------------------------------------------


@dataclass
class AppRecord:
    """What the application's handlers saw."""

    requests: list[ConnectionRequest] = field(default_factory=list)
    leaves: list[tuple[str, str, str]] = field(default_factory=list)  # channel, user, reason

    def left(self, user_id: str | None) -> list[str]:
        return [reason for _, uid, reason in self.leaves if uid == user_id]


def build_app(**options: Any) -> tuple[PondSocket, AppRecord]:
    # No inbound rate limit by default: the flood tests send hundreds of messages.
    pond = PondSocket(PondOptions(**{"rate_limit": None, **options}))
    record = AppRecord()

    def on_connect(ctx: ConnectionContext) -> None:
        record.requests.append(ctx.request)
        if ctx.query.get("token") != TOKEN:
            ctx.decline(401, "Invalid token")
            return
        ctx.accept({"name": ctx.query.get("name", "anon")})

    endpoint = pond.create_endpoint("/api/socket", on_connect)

    def on_join(ctx: JoinContext) -> None:
        if ctx.params["room"] == "secret":
            ctx.decline(403, "Secret room")
            return
        ctx.accept()
        ctx.track({"id": ctx.user.id, "name": ctx.user.assigns["name"]})

    lobby = endpoint.create_channel("/chat/:room", on_join)

    def echo(ctx: EventContext) -> None:
        ctx.reply("echo", ctx.payload)

    def say(ctx: EventContext) -> None:
        ctx.broadcast("say", ctx.payload)

    def whisper(ctx: EventContext) -> None:
        ctx.broadcast_to("whisper", ctx.payload, ctx.payload["to"])

    def others(ctx: EventContext) -> None:
        ctx.broadcast_from("others", ctx.payload)

    def kick(ctx: EventContext) -> None:
        ctx.evict("kicked by test", ctx.payload["user"])

    def on_leave(ctx: LeaveContext) -> None:
        record.leaves.append((ctx.channel.name, ctx.user.id, ctx.reason))

    lobby.on_message("echo", echo)
    lobby.on_message("say", say)
    lobby.on_message("whisper", whisper)
    lobby.on_message("others", others)
    lobby.on_message("kick", kick)
    lobby.on_leave(on_leave)
    return pond, record


@dataclass
class Running:
    pond: PondSocket
    record: AppRecord
    server: StandaloneServer
    port: int
    clients: list[Client] = field(default_factory=list)
    raws: list[RawClient] = field(default_factory=list)

    def target(self, name: str = "alice", token: str = TOKEN) -> str:
        return f"/api/socket?token={token}&name={name}"

    def url(self, name: str = "alice", token: str = TOKEN) -> str:
        return f"ws://127.0.0.1:{self.port}{self.target(name, token)}"

    async def client(self, name: str = "alice") -> Client:
        client = await Client.connect(self.url(name))
        self.clients.append(client)
        await client.expect(lambda f: f["event"] == "CONNECTION")
        return client

    async def raw(self, name: str = "raw", rcvbuf: int | None = None) -> RawClient:
        raw = await RawClient.connect(self.port, self.target(name), rcvbuf=rcvbuf)
        self.raws.append(raw)
        return raw

    async def aclose(self) -> None:
        for client in self.clients:
            await client.close()
        for raw in self.raws:
            raw.close()
        await self.server.aclose()


Start = Callable[..., Awaitable[Running]]


class Servers:
    """Starts servers for one test and closes them (clients first) at the end."""

    def __init__(self) -> None:
        self.running: list[Running] = []

    async def start(self, ws: dict[str, Any] | None = None, **options: Any) -> Running:
        """``await start(**pond_options, ws={...websockets kwargs})``: a running server."""
        pond, record = build_app(**options)
        server = StandaloneServer(
            pond,
            "127.0.0.1",
            0,
            http_routes={"/": ("text/html; charset=utf-8", PAGE)},
            **(ws or {}),
        )
        port = await server.start()
        self.running.append(Running(pond, record, server, port))
        return self.running[-1]

    async def aclose(self) -> None:
        for item in self.running:
            await item.aclose()


@pytest.fixture
async def start() -> AsyncIterator[Start]:
    servers = Servers()
    yield servers.start
    await servers.aclose()


def is_presence(event: str, count: int) -> Callable[[Frame], bool]:
    def check(frame: Frame) -> bool:
        return (
            frame["action"] == "PRESENCE"
            and frame["event"] == event
            and len(frame["payload"]["presence"]) == count
        )

    return check


async def join_all(channel: str, *clients: Client, present: int | None = None) -> None:
    """Join in order, then wait until everyone has seen the full presence list (``present``
    users, default: these clients), so the frames that follow are the ones a test provokes."""
    for client in clients:
        ack = await client.join(channel)
        assert (ack["action"], ack["event"]) == ("SYSTEM", "ACKNOWLEDGE")
    for client in clients:
        await client.expect(is_presence("JOIN", present or len(clients)))


# -- handshake -----------------------------------------------------------------------


async def test_connection_frame_first_with_connection_id(start: Start) -> None:
    srv = await start()
    client = await Client.connect(srv.url("alice"))
    srv.clients.append(client)
    first = await client.next()
    assert first["action"] == "CONNECT"
    assert first["event"] == "CONNECTION"
    assert first["channelName"] == "ENDPOINT"
    connection_id = first["payload"]["connectionId"]
    assert srv.pond.endpoints[0].connection_ids == [connection_id]
    # The handler saw the real request: path, raw query, headers, peer address.
    request = srv.record.requests[-1]
    assert request.path == "/api/socket"
    assert request.query_string == f"token={TOKEN}&name=alice"
    assert request.headers["upgrade"].lower() == "websocket"
    assert request.client is not None and request.client[0] == "127.0.0.1"


async def test_declined_handshake_is_an_http_status(start: Start) -> None:
    srv = await start()
    with pytest.raises(InvalidStatus) as caught:
        await Client.connect(srv.url(token="wrong"))
    response = caught.value.response
    assert response.status_code == 401
    assert response.body == b"Invalid token"
    assert response.headers["Content-Type"].startswith("text/plain")
    assert srv.pond.metrics.connections_declined == 1


async def test_unknown_path_is_404(start: Start) -> None:
    srv = await start()
    with pytest.raises(InvalidStatus) as caught:
        await Client.connect(f"ws://127.0.0.1:{srv.port}/nowhere?token={TOKEN}")
    assert caught.value.response.status_code == 404
    assert srv.record.requests == []  # no handler ran


async def test_plain_http_routes(start: Start) -> None:
    srv = await start()
    status, headers, body = await http_get(srv.port, "/")
    assert (status, body) == (200, PAGE)
    assert headers["content-type"] == "text/html; charset=utf-8"
    status, _, _ = await http_get(srv.port, "/missing")
    assert status == 404
    # The endpoint path without an upgrade: 426, and the connection handler never ran.
    status, headers, _ = await http_get(srv.port, srv.target())
    assert status == 426
    assert headers["upgrade"] == "websocket"
    assert srv.record.requests == []


# -- channels --------------------------------------------------------------------------


async def test_join_ack_first_then_presence(start: Start) -> None:
    srv = await start()
    alice, bob = await srv.client("alice"), await srv.client("bob")
    request_id = await alice.send_message("JOIN_CHANNEL", "/chat/lobby", "JOIN_CHANNEL")
    ack = await alice.next()  # the very first frame of the channel
    assert ack == {
        "action": "SYSTEM",
        "event": "ACKNOWLEDGE",
        "channelName": "/chat/lobby",
        "requestId": request_id,
        "payload": {},
    }
    joined = await alice.next()
    assert joined["action"] == "PRESENCE" and joined["event"] == "JOIN"
    assert joined["payload"]["presence"] == [{"id": alice.connection_id, "name": "alice"}]

    assert (await bob.join("/chat/lobby"))["event"] == "ACKNOWLEDGE"
    both = [
        {"id": alice.connection_id, "name": "alice"},
        {"id": bob.connection_id, "name": "bob"},
    ]
    for client in (alice, bob):
        frame = await client.next()
        assert (frame["action"], frame["event"]) == ("PRESENCE", "JOIN")
        assert frame["payload"] == {"changed": both[1], "presence": both}


async def test_declined_join(start: Start) -> None:
    srv = await start()
    alice = await srv.client()
    refusal = await alice.join("/chat/secret")
    assert (refusal["action"], refusal["event"]) == ("SYSTEM", "UNAUTHORIZED")
    assert refusal["payload"]["status"] == 403
    assert refusal["payload"]["message"] == "Secret room"


async def test_echo_and_text_frames_as_is(start: Start) -> None:
    srv = await start()
    alice = await srv.client()
    await join_all("/chat/echo", alice)
    payload = {"text": "héllo ✓ 🎉", "n": [1, 2.5, None]}
    request_id = await alice.send("/chat/echo", "echo", payload)
    reply = await alice.next()
    assert reply == {
        "action": "SYSTEM",
        "event": "echo",
        "channelName": "/chat/echo",
        "requestId": request_id,
        "payload": payload,
    }
    assert alice.binary_frames == 0


async def test_broadcast_variants_reach_exactly_the_right_clients(start: Start) -> None:
    srv = await start()
    alice, bob, carol = (
        await srv.client("alice"),
        await srv.client("bob"),
        await srv.client("carol"),
    )
    await join_all("/chat/room", alice, bob, carol)

    request_id = await alice.send("/chat/room", "say", {"text": "all"})
    for client in (alice, bob, carol):
        frame = await client.next()
        assert (frame["action"], frame["event"]) == ("BROADCAST", "say")
        assert frame["payload"] == {"text": "all"} and frame["requestId"] == request_id

    await alice.send("/chat/room", "whisper", {"to": bob.connection_id, "text": "psst"})
    assert (await bob.next())["event"] == "whisper"
    await alice.send("/chat/room", "others", {"text": "not alice"})
    assert (await bob.next())["event"] == "others"
    assert (await carol.next())["event"] == "others"  # so carol never got the whisper
    # A closing broadcast: it is alice's next frame, so she got neither of the two above.
    await alice.send("/chat/room", "say", {"text": "end"})
    for client in (alice, bob, carol):
        frame = await client.next()
        assert (frame["event"], frame["payload"]) == ("say", {"text": "end"})


async def test_one_broadcast_reaches_compressed_and_plain_connections(start: Start) -> None:
    # Plain connections share one framed copy of a broadcast; a connection that
    # negotiated permessage-deflate gets its own compressed frame from websockets.
    srv = await start(ws={"compression": "deflate"})
    plain = await Client.connect(srv.url("plain"), compression=None)
    packed = await Client.connect(srv.url("packed"), compression="deflate")
    for client in (plain, packed):
        srv.clients.append(client)
        await client.expect(lambda f: f["event"] == "CONNECTION")
    assert packed.ws.protocol.extensions and not plain.ws.protocol.extensions
    await join_all("/chat/mixed", plain, packed)

    text = "compressible " * 2000
    for n in range(3):
        await plain.send("/chat/mixed", "say", {"text": text, "n": n})
    for client in (plain, packed):
        got = [await client.expect(lambda f: f["event"] == "say") for _ in range(3)]
        assert [(f["payload"]["n"], f["payload"]["text"]) for f in got] == [
            (n, text) for n in range(3)
        ]


async def test_shared_frames_are_what_websockets_would_send() -> None:
    from websockets.frames import Frame, Opcode

    from pondsocket.transports.batching import FrameCache

    cache = FrameCache()
    for size in (0, 125, 126, 65535, 65536, 70000):
        payload = b"x" * size
        framed = cache.frame(payload)
        assert framed == Frame(Opcode.TEXT, payload).serialize(mask=False)
        assert cache.frame(payload) is framed  # built once per payload object
    assert cache.frame(b"y" * 10) != framed


async def test_eviction(start: Start) -> None:
    srv = await start()
    alice, bob = await srv.client("alice"), await srv.client("bob")
    await join_all("/chat/kick", alice, bob)

    await alice.send("/chat/kick", "kick", {"user": bob.connection_id})
    notice = await bob.next()
    assert (notice["action"], notice["event"]) == ("SYSTEM", "kicked_out")
    assert notice["payload"] == {
        "reason": "kicked by test",
        "message": "kicked by test",
        "code": 403,
    }
    for client in (bob, alice):
        frame = await client.next()
        assert frame["event"] == "kicked"
        assert frame["payload"] == {"userId": bob.connection_id, "reason": "kicked by test"}
    left = await alice.next()
    assert (left["event"], left["payload"]["presence"]) == (
        "LEAVE",
        [{"id": alice.connection_id, "name": "alice"}],
    )
    await wait_until(lambda: srv.record.left(bob.connection_id) == ["evicted:kicked by test"])

    # Nothing reaches bob any more: alice's broadcast is delivered (she sees it) before
    # bob even asks, and bob's next frame is the refusal of his event.
    await alice.send("/chat/kick", "say", {"text": "after"})
    assert (await alice.next())["payload"] == {"text": "after"}
    await bob.send("/chat/kick", "echo", {})
    refusal = await bob.next()
    assert refusal["action"] == "ERROR"
    assert refusal["payload"]["status"] == 404


async def test_client_close_runs_leave_and_presence(start: Start) -> None:
    srv = await start()
    alice, bob = await srv.client("alice"), await srv.client("bob")
    await join_all("/chat/bye", alice, bob)
    alice_id = alice.connection_id
    await alice.close()
    left = await bob.next()
    assert (left["action"], left["event"]) == ("PRESENCE", "LEAVE")
    assert left["payload"] == {
        "changed": {"id": alice_id, "name": "alice"},
        "presence": [{"id": bob.connection_id, "name": "bob"}],
    }
    await wait_until(lambda: srv.record.left(alice_id) == ["connection_closed"])
    assert srv.pond.endpoints[0].connection_ids == [bob.connection_id]


# -- bad input -------------------------------------------------------------------------


async def test_malformed_json_and_binary_get_one_error_each(start: Start) -> None:
    srv = await start()
    alice = await srv.client()
    await join_all("/chat/bad", alice)

    await alice.ws.send("{oops")
    error = await alice.next()
    assert (error["action"], error["event"]) == ("ERROR", "INVALID_MESSAGE")
    assert error["payload"]["status"] == 400

    await alice.ws.send(b"\x00\x01binary")
    error = await alice.next()
    assert (error["action"], error["event"]) == ("ERROR", "INVALID_MESSAGE")
    assert "Binary" in error["payload"]["message"]

    # Exactly one error each: the next frame is the answer to the next request.
    request_id = await alice.send("/chat/bad", "echo", {"ok": True})
    reply = await alice.next()
    assert (reply["event"], reply["requestId"]) == ("echo", request_id)
    assert srv.pond.metrics.protocol_errors == 2


async def test_invalid_utf8_text_closes_1007(start: Start) -> None:
    srv = await start()
    alice = await srv.client()
    await join_all("/chat/utf8", alice)
    await alice.ws.send(b'{"action":"BROADCAST","event":"\xff"}', text=True)
    code, _ = await alice.wait_closed()
    assert code == 1007
    await wait_until(lambda: srv.record.left(alice.connection_id) == ["connection_closed"])


async def test_oversize_message_gets_413_and_connection_stays(start: Start) -> None:
    srv = await start(max_message_size=1024)  # transport limit: 4 x 1024
    alice = await srv.client()
    await join_all("/chat/big", alice)
    await alice.send("/chat/big", "echo", {"text": "x" * 2000})
    error = await alice.next()
    assert (error["action"], error["payload"]["status"]) == ("ERROR", 413)
    request_id = await alice.send("/chat/big", "echo", {"text": "small"})
    assert (await alice.next())["requestId"] == request_id


async def test_frame_above_transport_limit_closes_1009(start: Start) -> None:
    srv = await start(max_message_size=1024, max_frame_size=4096)
    alice = await srv.client()
    await alice.send("/chat/big", "echo", {"text": "x" * 5000})
    code, _ = await alice.wait_closed()
    assert code == 1009
    await wait_until(lambda: srv.pond.metrics.connections_open == 0)


async def test_application_ping_is_ignored(start: Start) -> None:
    srv = await start()
    alice = await srv.client()
    await join_all("/chat/ping", alice)
    await alice.ws.send('{"action":"ping"}')
    request_id = await alice.send("/chat/ping", "echo", {})
    reply = await alice.next()  # no answer to the ping, no error, no close
    assert (reply["event"], reply["requestId"]) == ("echo", request_id)
    assert srv.pond.metrics.protocol_errors == 0


async def test_app_heartbeat(start: Start) -> None:
    srv = await start(app_heartbeat_interval=0.05)
    alice = await srv.client()
    beat = await alice.expect(lambda f: f["event"] == "HEARTBEAT")
    assert (beat["action"], beat["channelName"], beat["payload"]) == ("SYSTEM", "ENDPOINT", {})


# -- slow and dead clients -------------------------------------------------------------


async def flood_until(
    sender: Client, channel: str, done: Callable[[], bool], *, limit: int = 4000
) -> int:
    """Broadcast 8 KiB messages through ``sender`` until ``done()``; returns how many.

    Lockstep in small batches (wait for the sender's own copy of the last one): the
    server has then handled them, and the sender, a reading client, never falls behind.
    """
    sent = 0
    text = "x" * 8192
    while not done():
        assert sent < limit, "the overflow policy never triggered"
        for _ in range(4):
            await sender.send(channel, "say", {"seq": sent, "text": text})
            sent += 1
        await sender.expect(is_say(sent - 1))
    return sent


def is_say(seq: int) -> Callable[[Frame], bool]:
    return lambda frame: frame["event"] == "say" and frame["payload"]["seq"] == seq


def says(frames: list[Frame]) -> list[Any]:
    return [f["payload"]["seq"] for f in frames if f["event"] == "say"]


async def test_slow_consumer_is_closed_4008_and_others_get_everything(start: Start) -> None:
    # The overflow policy itself: flow control (which would hold the sender back and close
    # the stuck client as stuck, test_flow_control.py) is off here.
    srv = await start(outbox_max_bytes=256 * 1024, outbox_soft_watermark=None)
    # The stuck client is a raw socket that stops reading after its join: the server's
    # writes fill the kernel buffers, then its own write buffer. (A websockets client
    # would keep reading in the background into its own queue, so it cannot be stuck.)
    stuck = await srv.raw("stuck", rcvbuf=4096)
    await stuck.join("/chat/flood")
    reader = await srv.client("reader")
    await join_all("/chat/flood", reader, present=2)

    sent = await flood_until(
        reader, "/chat/flood", lambda: srv.pond.metrics.slow_consumer_closes > 0
    )
    assert says(reader.frames) == list(range(sent))  # the reading client lost nothing
    request_id = await reader.send("/chat/flood", "echo", {})
    await reader.expect(lambda f: f["requestId"] == request_id)

    # Reading now, the stuck client finds an in-order prefix of the flood, then 4008.
    received: list[Frame] = []
    while True:
        opcode, payload = await stuck.read_frame()
        if opcode == 0x8:
            break
        if opcode == 0x1:
            received.append(orjson.loads(payload))
    code = struct.unpack("!H", payload[:2])[0]
    assert (code, payload[2:].decode()) == (4008, "outgoing queue full")
    delivered = says(received)
    assert delivered == list(range(len(delivered))) and len(delivered) < sent
    await stuck.send_close(4008)
    stuck.close()  # the server waits for the client to close TCP after the close handshake

    left = await reader.expect(lambda f: f["action"] == "PRESENCE")
    assert (left["event"], left["payload"]["changed"]["id"]) == ("LEAVE", stuck.connection_id)
    await wait_until(lambda: srv.record.left(stuck.connection_id) == ["connection_closed"])
    assert srv.pond.metrics.frames_dropped == 0


async def test_drop_policy_keeps_the_connection_and_counts(start: Start) -> None:
    srv = await start(
        outbox_max_bytes=256 * 1024,
        overflow_policy=OverflowPolicy.DROP,
        outbox_soft_watermark=None,  # the policy itself, without flow control
    )
    stuck = await srv.raw("stuck", rcvbuf=4096)
    await stuck.join("/chat/drop")
    reader = await srv.client("reader")
    await join_all("/chat/drop", reader, present=2)

    metrics = srv.pond.metrics
    sent = await flood_until(reader, "/chat/drop", lambda: metrics.frames_dropped >= 8)
    assert metrics.slow_consumer_closes == 0
    assert stuck.connection_id in srv.pond.endpoints[0].connection_ids

    # The stuck client starts reading again; once the backlog has drained, new frames
    # reach it. Send markers until one arrives (earlier ones may still be dropped).
    received: list[Frame] = []

    async def drain() -> None:
        while True:
            received.append(await stuck.read_json(timeout=TIMEOUT * 4))

    drainer = asyncio.create_task(drain())
    try:
        marker = sent
        async with asyncio.timeout(TIMEOUT * 2):
            while not any(f["event"] == "say" and f["payload"]["seq"] >= sent for f in received):
                await reader.send("/chat/drop", "say", {"seq": marker})
                marker += 1
                await asyncio.sleep(0.05)
    finally:
        drainer.cancel()
        await asyncio.wait([drainer])
    delivered = says(received)
    assert delivered == sorted(delivered)  # in order, with gaps where frames were dropped
    assert delivered[: len(delivered) // 2] == list(range(len(delivered) // 2))
    # Every frame meant for the stuck client was either delivered or counted as dropped.
    total = marker
    await wait_until(lambda: len(says(received)) + metrics.frames_dropped >= total)
    assert len(says(received)) + metrics.frames_dropped == total


# The server's keep-alive sweep (PondOptions.ping_interval).
SWEEP_KEEPALIVE = ({"ping_interval": 0.2, "ping_timeout": 0.3}, {"close_timeout": 0.5})
# ping_interval passed to websockets brings back its per-connection keep-alive.
WEBSOCKETS_KEEPALIVE = (
    {"ping_interval": None},
    {"ping_interval": 0.2, "ping_timeout": 0.3, "close_timeout": 0.5},
)


@pytest.mark.parametrize(
    ("options", "ws"), [SWEEP_KEEPALIVE, WEBSOCKETS_KEEPALIVE], ids=["sweep", "websockets"]
)
async def test_dead_peer_is_closed_and_leaves(
    start: Start, options: dict[str, Any], ws: dict[str, Any]
) -> None:
    srv = await start(ws=ws, **options)
    watcher = await srv.client("watcher")
    await join_all("/chat/dead", watcher)
    # A raw socket that never reads again never answers the server's pings.
    dead = await srv.raw("dead")
    await dead.join("/chat/dead")
    await watcher.expect(is_presence("JOIN", 2))

    left = await watcher.expect(lambda f: f["action"] == "PRESENCE", timeout=TIMEOUT * 2)
    assert (left["event"], left["payload"]["changed"]["id"]) == ("LEAVE", dead.connection_id)
    await wait_until(lambda: srv.record.left(dead.connection_id) == ["connection_closed"])
    # The watcher answers pings (the websockets client does) and stays.
    request_id = await watcher.send("/chat/dead", "echo", {})
    await watcher.expect(lambda f: f["requestId"] == request_id)


# -- lifecycle ---------------------------------------------------------------------------


async def test_serve_shuts_down_gracefully_when_cancelled() -> None:
    pond, record = build_app()
    ready: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(serve(pond, "127.0.0.1", 0, ready=ready))
    port = await ready
    client = await Client.connect(f"ws://127.0.0.1:{port}/api/socket?token={TOKEN}")
    await join_all("/chat/end", client)
    client_id = client.connection_id

    task.cancel()
    code, reason = await client.wait_closed()
    assert (code, reason) == (1001, "server shutting down")
    with pytest.raises(asyncio.CancelledError):
        await task
    # serve() returned only after the sessions ended and their leave handlers ran.
    assert record.left(client_id) == ["connection_closed"]
    assert pond.metrics.connections_open == 0
    with pytest.raises(OSError):
        await Client.connect(f"ws://127.0.0.1:{port}/api/socket?token={TOKEN}")


async def test_shutdown_aborts_clients_that_never_close() -> None:
    pond, record = build_app()
    # No close_timeout: only the shutdown timeout can end a client that ignores the close.
    server = StandaloneServer(pond, "127.0.0.1", 0, shutdown_timeout=0.3, close_timeout=None)
    port = await server.start()
    raw = await RawClient.connect(port, f"/api/socket?token={TOKEN}")
    try:
        await raw.join("/chat/stuck")
        async with asyncio.timeout(TIMEOUT):
            await server.aclose()
        assert record.left(raw.connection_id) == ["connection_closed"]
        assert pond.metrics.connections_open == 0
    finally:
        raw.close()


@pytest.mark.parametrize(
    "scenario",
    [
        test_connection_frame_first_with_connection_id,
        test_broadcast_variants_reach_exactly_the_right_clients,
        test_malformed_json_and_binary_get_one_error_each,
        test_frame_above_transport_limit_closes_1009,
        test_slow_consumer_is_closed_4008_and_others_get_everything,
        test_drop_policy_keeps_the_connection_and_counts,
        functools.partial(
            test_dead_peer_is_closed_and_leaves, options=SWEEP_KEEPALIVE[0], ws=SWEEP_KEEPALIVE[1]
        ),
    ],
    ids=lambda scenario: getattr(scenario, "func", scenario).__name__.removeprefix("test_"),
)
async def test_on_uvloop(scenario: Callable[[Start], Awaitable[None]]) -> None:
    """``run()`` serves on uvloop, whose transports differ (write buffer limits, buffer
    sizes): replay the transport-sensitive scenarios on a uvloop loop in a worker thread
    (the fixtures' loop is pytest-asyncio's own)."""
    uvloop = pytest.importorskip("uvloop")

    async def body() -> None:
        servers = Servers()
        try:
            await scenario(servers.start)
        finally:
            await servers.aclose()

    await asyncio.to_thread(uvloop.run, body())


RUN_SCRIPT = """
import sys
from pondsocket import PondSocket
pond = PondSocket()
pond.create_endpoint("/ws", lambda ctx: ctx.accept())
pond.run("127.0.0.1", int(sys.argv[1]))
print("stopped cleanly", flush=True)
"""


@pytest.mark.skipif(sys.platform == "win32", reason="SIGTERM semantics")
async def test_run_stops_gracefully_on_sigterm() -> None:
    with socket.socket() as probe:  # a free port for the child (run() does not report one)
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        RUN_SCRIPT,
        str(port),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(TIMEOUT * 2):
            while True:
                try:
                    client = await Client.connect(f"ws://127.0.0.1:{port}/ws")
                    break
                except OSError:
                    await asyncio.sleep(0.05)
        assert (await client.next())["event"] == "CONNECTION"
        process.terminate()  # SIGTERM
        code, _ = await client.wait_closed()
        assert code == 1001
        async with asyncio.timeout(TIMEOUT * 2):
            stdout, stderr = await process.communicate()
        assert process.returncode == 0, stderr.decode()
        assert stdout.decode().strip() == "stopped cleanly"
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
