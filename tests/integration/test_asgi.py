"""The ASGI transport under a real uvicorn server, served directly and mounted in FastAPI.

Clients are real WebSocket clients on loopback sockets. No test asserts on timing: every
wait has a generous timeout, and "X did not receive Y" is proven with a round trip
(``Client.sync``): frames to one connection are delivered in order, so a reply that arrives
without Y before it proves Y was never queued.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from tests.support import eventually
from websockets.asyncio.client import ClientConnection, connect
from websockets.client import ClientProtocol
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.frames import Frame as WsFrame
from websockets.frames import Opcode
from websockets.http11 import Response
from websockets.uri import parse_uri

from pondsocket import CloseCode, OverflowPolicy, PondOptions, PondSocket
from pondsocket.core.endpoint import Endpoint
from pondsocket.transports.asgi import ASGIApp, Message, TextCache, endpoint_path
from pondsocket.transports.outbox import Outbox

if TYPE_CHECKING:
    from tests.integration.conftest import AsgiServe, AsgiServer  # the fixtures' types

Frame = dict[str, Any]
TIMEOUT = 10.0
TOKEN = "secret"
LOBBY = "/chat/lobby"


# -- the application under test ------------------------------------------------


@dataclass
class ChatApp:
    pond: PondSocket
    endpoint: Endpoint
    leaves: list[tuple[str, str, str]] = field(default_factory=list)
    """(channel, user id, reason) for every leave handler call."""
    paths: list[str] = field(default_factory=list)
    """``ctx.path`` of every handshake."""


def chat_app(options: PondOptions | None = None) -> ChatApp:
    pond = PondSocket(options)
    paths: list[str] = []

    def on_connect(ctx: Any) -> None:
        paths.append(ctx.path)
        if ctx.query.get("token") != TOKEN:
            ctx.decline(401, "invalid token")
            return
        ctx.accept({"name": ctx.query.get("name", "anonymous")})

    endpoint = pond.create_endpoint("/api/socket", on_connect)
    app = ChatApp(pond, endpoint, paths=paths)

    def on_join(ctx: Any) -> None:
        if ctx.channel_name == "/chat/secret":
            ctx.decline(403, "private room")
            return
        ctx.accept()
        ctx.track({"name": ctx.user.assigns["name"]})

    lobby = endpoint.create_channel("/chat/:room", on_join)
    lobby.on_message("echo", lambda ctx: ctx.reply("echo", ctx.payload))
    lobby.on_message("say", lambda ctx: ctx.broadcast("said", ctx.payload))
    lobby.on_message(
        "whisper", lambda ctx: ctx.broadcast_to("whispered", ctx.payload, ctx.payload["to"])
    )
    lobby.on_message("others", lambda ctx: ctx.broadcast_from("others", ctx.payload))
    lobby.on_message("kick", lambda ctx: ctx.evict("behave", ctx.payload["user"]))
    lobby.on_leave(lambda ctx: app.leaves.append((ctx.channel.name, ctx.user.id, ctx.reason)))
    return app


# -- clients ------------------------------------------------------------------


def message(
    action: str, channel: str, event: str, payload: Frame | None = None, request_id: str = ""
) -> tuple[str, str]:
    request_id = request_id or str(uuid.uuid4())
    body = {
        "action": action,
        "event": event,
        "channelName": channel,
        "requestId": request_id,
        "payload": payload or {},
    }
    return json.dumps(body), request_id


class Client:
    """A websockets asyncio client speaking the PondSocket protocol."""

    def __init__(self, ws: ClientConnection, connection_id: str) -> None:
        self.ws = ws
        self.id = connection_id

    async def recv(self) -> Frame:
        raw = await asyncio.wait_for(self.ws.recv(), TIMEOUT)
        assert isinstance(raw, str), "the server sends text frames"
        assert "\n" not in raw, "one message per frame"
        frame: Frame = json.loads(raw)
        return frame

    async def send(
        self, action: str, channel: str, event: str, payload: Frame | None = None
    ) -> str:
        text, request_id = message(action, channel, event, payload)
        await self.ws.send(text)
        return request_id

    async def join(self, channel: str) -> tuple[str, Frame]:
        """Join; returns the requestId and the very next frame (the ACK or the refusal)."""
        request_id = await self.send("JOIN_CHANNEL", channel, "JOIN_CHANNEL")
        return request_id, await self.recv()

    async def joined(self, channel: str) -> Frame:
        """Join and consume the ACK and the own presence JOIN; returns the presence frame."""
        request_id, ack = await self.join(channel)
        assert (ack["event"], ack["requestId"]) == ("ACKNOWLEDGE", request_id)
        presence = await self.recv()
        assert (presence["action"], presence["event"]) == ("PRESENCE", "JOIN")
        return presence

    async def sync(self, channel: str = LOBBY) -> list[Frame]:
        """Round trip an ``echo``: returns every frame that arrived before its reply."""
        request_id = await self.send("BROADCAST", channel, "echo", {"sync": True})
        before = []
        while (frame := await self.recv())["requestId"] != request_id:
            before.append(frame)
        assert (frame["action"], frame["event"]) == ("SYSTEM", "echo")
        return before


class RawClient:
    """A WebSocket client that reads its socket only when told to.

    To play a client that stopped reading, the client must not read in the background:
    the websockets asyncio client (and asyncio streams) read eagerly into their own
    buffers. So this one drives websockets' sans-I/O ``ClientProtocol`` over a plain
    non-blocking socket with a small receive buffer: between ``read`` calls nothing reads,
    the kernel buffers fill, TCP flow control stalls the server's writes and its outbox
    fills up, which is exactly what a stuck client does.
    """

    def __init__(self, sock: socket.socket, protocol: ClientProtocol) -> None:
        self._sock = sock
        self._protocol = protocol
        self._texts: list[str] = []

    @classmethod
    async def connect(cls, server: AsgiServer, query: str) -> RawClient:
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setblocking(False)
        await loop.sock_connect(sock, ("127.0.0.1", server.port))
        uri = parse_uri(f"{server.ws_url}/api/socket?{query}")
        self = cls(sock, ClientProtocol(uri, max_size=None))
        self._protocol.send_request(self._protocol.connect())
        await self._flush()
        return self

    def close(self) -> None:
        self._sock.close()

    async def _flush(self) -> None:
        for data in self._protocol.data_to_send():
            if data:  # b"" means "half-close": not needed here
                await asyncio.get_running_loop().sock_sendall(self._sock, data)

    async def _read_once(self) -> None:
        loop = asyncio.get_running_loop()
        data = await asyncio.wait_for(loop.sock_recv(self._sock, 65536), TIMEOUT)
        if data:
            self._protocol.receive_data(data)
        else:
            self._protocol.receive_eof()
        for event in self._protocol.events_received():
            if isinstance(event, Response):
                assert event.status_code == 101
            elif isinstance(event, WsFrame) and event.opcode is Opcode.TEXT:
                self._texts.append(bytes(event.data).decode())
        await self._flush()  # pongs and the close reply

    async def recv(self) -> Frame:
        while not self._texts:
            assert self._protocol.close_rcvd is None, "connection closed"
            await self._read_once()
        frame: Frame = json.loads(self._texts.pop(0))
        return frame

    async def recv_until_close(self) -> tuple[list[Frame], int, str]:
        """Read everything until the server's close frame: (frames, code, reason)."""
        while self._protocol.close_rcvd is None:
            await self._read_once()
        frames = [json.loads(text) for text in self._texts]
        self._texts.clear()
        close = self._protocol.close_rcvd
        return frames, close.code, close.reason

    async def send(self, text: str) -> None:
        self._protocol.send_text(text.encode())
        await self._flush()

    async def joined(self, channel: str) -> str:
        """Join, read up to the ACK; returns the connection id."""
        connected = await self.recv()
        assert connected["event"] == "CONNECTION"
        text, request_id = message("JOIN_CHANNEL", channel, "JOIN_CHANNEL")
        await self.send(text)
        while (await self.recv())["requestId"] != request_id:
            pass
        connection_id: str = connected["payload"]["connectionId"]
        return connection_id


@dataclass
class Harness:
    """Starts the chat app under uvicorn and opens clients, all closed at teardown."""

    serve: AsgiServe
    stack: contextlib.AsyncExitStack
    app: ChatApp | None = None
    server: AsgiServer | None = None

    async def start(self, options: PondOptions | None = None) -> ChatApp:
        self.app = chat_app(options)
        self.server = await self.serve(self.app.pond)
        return self.app

    async def connect(self, name: str, token: str = TOKEN, path: str = "/api/socket") -> Client:
        assert self.server is not None
        url = f"{self.server.ws_url}{path}?token={token}&name={name}"
        ws = await self.stack.enter_async_context(connect(url, open_timeout=TIMEOUT))
        client = Client(ws, "")
        first = await client.recv()
        assert (first["action"], first["event"]) == ("CONNECT", "CONNECTION")
        client.id = first["payload"]["connectionId"]
        return client

    async def raw(self, name: str) -> RawClient:
        assert self.server is not None
        client = await RawClient.connect(self.server, f"token={TOKEN}&name={name}")
        self.stack.callback(client.close)
        return client


@pytest.fixture
async def harness(asgi_serve: AsgiServe) -> AsyncIterator[Harness]:
    async with contextlib.AsyncExitStack() as stack:
        yield Harness(asgi_serve, stack)


def names(frame: Frame) -> list[str]:
    return [p["name"] for p in frame["payload"]["presence"]]


# -- handshake ----------------------------------------------------------------


async def test_connection_frame_comes_first(harness: Harness) -> None:
    app = await harness.start()
    client = await harness.connect("alice")
    assert client.id and client.id in app.endpoint.connection_ids
    assert app.pond.metrics.connections_open == 1
    assert app.paths == ["/api/socket"]  # relative to the mount point when mounted


async def test_declined_handshake_answers_http_401(harness: Harness) -> None:
    app = await harness.start()
    with pytest.raises(InvalidStatus) as caught:
        await harness.connect("mallory", token="wrong")
    assert caught.value.response.status_code == 401
    assert caught.value.response.body == b"invalid token"
    # One Content-Length: uvicorn adds its own, and clients such as websockets 14 refuse a
    # response that carries two.
    assert len(caught.value.response.headers.get_all("Content-Length")) == 1
    assert app.pond.metrics.connections_declined == 1


async def test_unknown_path_answers_404(harness: Harness) -> None:
    await harness.start()
    with pytest.raises(InvalidStatus) as caught:
        await harness.connect("alice", path="/nowhere")
    assert caught.value.response.status_code == 404


async def test_plain_http_requests(harness: Harness) -> None:
    await harness.start()
    assert harness.server is not None
    async with httpx.AsyncClient(base_url=harness.server.http_url, timeout=TIMEOUT) as http:
        missing = await http.get("/nowhere")
        endpoint = await http.get("/api/socket")
    assert (missing.status_code, missing.text) == (404, "Not Found")
    assert endpoint.status_code == 426


# -- channels -----------------------------------------------------------------


async def test_join_ack_first_then_presence_to_both(harness: Harness) -> None:
    await harness.start()
    alice = await harness.connect("alice")
    bob = await harness.connect("bob")

    request_id, ack = await alice.join(LOBBY)
    assert ack == {
        "action": "SYSTEM",
        "event": "ACKNOWLEDGE",
        "channelName": LOBBY,
        "requestId": request_id,
        "payload": {},
    }
    own = await alice.recv()
    assert (own["event"], names(own)) == ("JOIN", ["alice"])

    request_id, ack = await bob.join(LOBBY)
    assert (ack["event"], ack["requestId"]) == ("ACKNOWLEDGE", request_id)
    for client in (alice, bob):
        presence = await client.recv()
        assert (presence["action"], presence["event"]) == ("PRESENCE", "JOIN")
        assert presence["channelName"] == LOBBY
        assert presence["payload"]["changed"] == {"name": "bob"}
        assert names(presence) == ["alice", "bob"]


async def test_declined_join(harness: Harness) -> None:
    await harness.start()
    alice = await harness.connect("alice")
    request_id, refusal = await alice.join("/chat/secret")
    assert (refusal["action"], refusal["event"]) == ("SYSTEM", "UNAUTHORIZED")
    assert (refusal["channelName"], refusal["requestId"]) == ("/chat/secret", request_id)
    assert refusal["payload"]["status"] == 403


async def test_echo_replies_to_the_sender_only(harness: Harness) -> None:
    await harness.start()
    alice, bob = await harness.connect("alice"), await harness.connect("bob")
    await alice.joined(LOBBY)
    await bob.joined(LOBBY)
    await alice.recv()  # bob's presence JOIN

    request_id = await alice.send("BROADCAST", LOBBY, "echo", {"text": "hi"})
    reply = await alice.recv()
    assert reply == {
        "action": "SYSTEM",
        "event": "echo",
        "channelName": LOBBY,
        "requestId": request_id,
        "payload": {"text": "hi"},
    }
    assert await bob.sync() == []


async def test_broadcasts_reach_exactly_their_recipients(harness: Harness) -> None:
    await harness.start()
    alice, bob, carol = [await harness.connect(n) for n in ("alice", "bob", "carol")]
    for client in (alice, bob, carol):
        await client.joined(LOBBY)
    await alice.sync()  # consume the presence frames of later joiners
    await bob.sync()

    def events(frames: list[Frame]) -> list[tuple[str, Any]]:
        return [(f["event"], f["payload"].get("n")) for f in frames]

    await alice.send("BROADCAST", LOBBY, "say", {"n": 1})
    await alice.send("BROADCAST", LOBBY, "whisper", {"n": 2, "to": [carol.id]})
    await alice.send("BROADCAST", LOBBY, "others", {"n": 3})
    assert events(await alice.sync()) == [("said", 1)]
    assert events(await bob.sync()) == [("said", 1), ("others", 3)]
    assert events(await carol.sync()) == [("said", 1), ("whispered", 2), ("others", 3)]


async def test_eviction(harness: Harness) -> None:
    app = await harness.start()
    alice, bob = await harness.connect("alice"), await harness.connect("bob")
    await alice.joined(LOBBY)
    await bob.joined(LOBBY)
    await bob.joined("/chat/side")  # to prove bob's connection still works afterwards
    await alice.recv()  # bob's presence JOIN

    await alice.send("BROADCAST", LOBBY, "kick", {"user": bob.id})
    notice, kicked = await bob.recv(), await bob.recv()
    assert (notice["event"], notice["payload"]) == (
        "kicked_out",
        {"reason": "behave", "message": "behave", "code": 403},
    )
    assert (kicked["event"], kicked["payload"]) == (
        "kicked",
        {"userId": bob.id, "reason": "behave"},
    )
    seen = await alice.sync()
    assert [f["event"] for f in seen] == ["kicked", "LEAVE"]
    assert names(seen[1]) == ["alice"]

    await alice.send("BROADCAST", LOBBY, "say", {"after": True})
    assert [f["event"] for f in await alice.sync()] == ["said"]
    assert await bob.sync("/chat/side") == []
    await eventually(lambda: (LOBBY, bob.id, "evicted:behave") in app.leaves, "leave handler")


# -- bad input ----------------------------------------------------------------


async def test_malformed_json_and_binary_each_get_one_error(harness: Harness) -> None:
    await harness.start()
    alice = await harness.connect("alice")
    await alice.joined(LOBBY)
    for bad in ("{not json", b"\x01\x02binary"):
        await alice.ws.send(bad)
        errors = await alice.sync()
        assert len(errors) == 1
        assert (errors[0]["action"], errors[0]["event"]) == ("ERROR", "INVALID_MESSAGE")
        assert errors[0]["payload"]["status"] == 400


async def test_oversized_message_gets_413_and_connection_stays(harness: Harness) -> None:
    await harness.start(PondOptions(max_message_size=1024))
    alice = await harness.connect("alice")
    await alice.joined(LOBBY)
    await alice.send("BROADCAST", LOBBY, "say", {"text": "x" * 2000})
    errors = await alice.sync()
    assert len(errors) == 1
    assert errors[0]["payload"]["status"] == 413
    assert errors[0]["payload"]["code"] == "MESSAGE_TOO_LARGE"


async def test_frame_beyond_the_transport_limit_is_closed_1009_by_uvicorn(
    harness: Harness,
) -> None:
    app = await harness.start(PondOptions(max_message_size=1024))
    alice = await harness.connect("alice")
    await alice.ws.send("x" * (app.pond.options.transport_frame_limit + 1))
    with pytest.raises(ConnectionClosed):
        await alice.recv()
    assert alice.ws.close_code == CloseCode.MESSAGE_TOO_BIG
    await eventually(lambda: app.pond.metrics.connections_open == 0, "session closed")


async def test_application_ping_gets_no_answer(harness: Harness) -> None:
    await harness.start()
    alice = await harness.connect("alice")
    await alice.joined(LOBBY)
    await alice.ws.send('{"action":"ping"}')
    assert await alice.sync() == []


async def test_app_heartbeat(harness: Harness) -> None:
    await harness.start(PondOptions(app_heartbeat_interval=0.05))
    alice = await harness.connect("alice")
    beat = await alice.recv()
    assert (beat["action"], beat["event"], beat["channelName"]) == (
        "SYSTEM",
        "HEARTBEAT",
        "ENDPOINT",
    )
    assert beat["payload"] == {} and beat["requestId"]


# -- slow clients -------------------------------------------------------------


async def flood_until(
    app: ChatApp, fast: Client, stop: Any, frames: int = 16, limit: int = 50_000
) -> int:
    """Broadcast batches into the lobby from the server until ``stop()``; the fast client
    must receive every one before the next batch. Returns how many were sent."""
    pad = "x" * 1000
    sent = 0
    while not stop():
        assert sent < limit, "the slow client's outbox never overflowed"
        for _ in range(frames):
            app.endpoint.broadcast(LOBBY, "flood", {"n": sent, "pad": pad})
            sent += 1
        for expected in range(sent - frames, sent):
            frame = await fast.recv()
            assert (frame["event"], frame["payload"]["n"]) == ("flood", expected)
    return sent


def asgi_warnings(caplog: pytest.LogCaptureFixture, text: str) -> list[logging.LogRecord]:
    return [
        r
        for r in caplog.records
        if r.name == "pondsocket.asgi" and r.levelno == logging.WARNING and text in r.getMessage()
    ]


def flood_numbers(frames: list[Frame]) -> list[int]:
    return [f["payload"]["n"] for f in frames if f["event"] == "flood"]


async def test_slow_consumer_is_closed_4008_and_others_get_everything(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    app = await harness.start(PondOptions(outbox_max_bytes=32 * 1024))
    metrics = app.pond.metrics
    fast = await harness.connect("fast")
    await fast.joined(LOBBY)
    slow = await harness.raw("slow")
    slow_id = await slow.joined(LOBBY)
    await fast.recv()  # slow's presence JOIN

    sent = await flood_until(app, fast, lambda: metrics.slow_consumer_closes > 0)
    # The slow client left the channel at once, although it has not read its close yet.
    leave = await fast.recv()
    assert (leave["action"], leave["event"]) == ("PRESENCE", "LEAVE")
    assert leave["payload"]["changed"] == {"name": "slow"}
    await eventually(lambda: (LOBBY, slow_id, "connection_closed") in app.leaves, "leave")

    # Now it reads: what it got is a gap-free prefix of the flood, then the 4008 close.
    frames, code, reason = await slow.recv_until_close()
    got = flood_numbers(frames)
    assert got == list(range(len(got))) and len(got) < sent
    assert (code, reason) == (CloseCode.SLOW_CONSUMER, "outgoing queue full")
    assert metrics.slow_consumer_closes == 1 and metrics.frames_dropped == 0
    assert await fast.sync() == []
    assert len(asgi_warnings(caplog, "outgoing queue full")) == 1


async def test_drop_policy_keeps_the_slow_consumer(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    app = await harness.start(
        PondOptions(outbox_max_bytes=32 * 1024, overflow_policy=OverflowPolicy.DROP)
    )
    metrics = app.pond.metrics
    fast = await harness.connect("fast")
    await fast.joined(LOBBY)
    slow = await harness.raw("slow")
    await slow.joined(LOBBY)
    await fast.recv()  # slow's presence JOIN

    sent = await flood_until(app, fast, lambda: metrics.frames_dropped >= 100)
    text, request_id = message("BROADCAST", LOBBY, "echo", {})
    await slow.send(text)
    frames = []
    while (frame := await slow.recv())["requestId"] != request_id:
        frames.append(frame)
    got = flood_numbers(frames)
    assert got == sorted(got) and len(got) < sent  # in order, with gaps
    assert len(got) + metrics.frames_dropped == sent
    assert metrics.slow_consumer_closes == 0
    assert app.pond.metrics.connections_open == 2
    assert await fast.sync() == []
    assert 1 <= len(asgi_warnings(caplog, "dropped")) < metrics.frames_dropped  # rate-limited


# -- closing ------------------------------------------------------------------


async def test_client_close_runs_leave_handler_and_presence_leave(harness: Harness) -> None:
    app = await harness.start()
    alice, bob = await harness.connect("alice"), await harness.connect("bob")
    await alice.joined(LOBBY)
    await bob.joined(LOBBY)
    await alice.recv()  # bob's presence JOIN

    await bob.ws.close()
    leave = await alice.recv()
    assert (leave["action"], leave["event"]) == ("PRESENCE", "LEAVE")
    assert (leave["payload"]["changed"], names(leave)) == ({"name": "bob"}, ["alice"])
    await eventually(lambda: (LOBBY, bob.id, "connection_closed") in app.leaves, "leave")
    assert app.pond.metrics.connections_open == 1


async def test_server_close_flushes_then_closes(harness: Harness) -> None:
    app = await harness.start()
    alice = await harness.connect("alice")
    await alice.joined(LOBBY)
    app.endpoint.broadcast(LOBBY, "last words", {})
    assert app.endpoint.close_connection(alice.id, reason="bye")
    assert (await alice.recv())["event"] == "last words"
    with pytest.raises(ConnectionClosed):
        await alice.recv()
    assert (alice.ws.close_code, alice.ws.close_reason) == (CloseCode.CLOSED_BY_SERVER, "bye")
    await eventually(lambda: (LOBBY, alice.id, "connection_closed") in app.leaves, "leave")


async def test_server_shutdown_closes_clients_cleanly(harness: Harness) -> None:
    app = await harness.start()
    alice = await harness.connect("alice")
    await alice.joined(LOBBY)
    assert harness.server is not None
    await harness.server.stop()  # asserts no connection task outlives the server
    with pytest.raises(ConnectionClosed):
        await alice.recv()
    assert alice.ws.close_code == 1012  # uvicorn closes every socket before the lifespan
    assert (LOBBY, alice.id, "connection_closed") in app.leaves


# -- units --------------------------------------------------------------------


def test_endpoint_path_is_relative_to_the_mount_and_undecoded() -> None:
    def scope(path: str, raw: bytes | None, root: str = "") -> dict[str, Any]:
        return {"type": "websocket", "path": path, "raw_path": raw, "root_path": root}

    assert endpoint_path(scope("/api/socket", b"/api/socket")) == "/api/socket"
    assert endpoint_path(scope("/ws/api/socket", b"/ws/api/socket", "/ws")) == "/api/socket"
    assert endpoint_path(scope("/ws/a/b c", b"/ws/a/b%20c", "/ws")) == "/a/b%20c"
    assert endpoint_path(scope("/ws/a/b/c", b"/ws/a/b%2Fc", "/ws")) == "/a/b%2Fc"
    assert endpoint_path(scope("/wsx/a", b"/wsx/a", "/ws")) == "/wsx/a"  # not a segment
    assert endpoint_path(scope("/ws/a", None, "/ws")) == "/a"
    assert endpoint_path(scope("/p", b"/other")) == "/p"  # inconsistent raw_path: ignored


def test_text_cache_decodes_each_frame_object_once() -> None:
    cache = TextCache(size=2)
    first, second = b'{"a":1}', b'{"b":2}'
    text = cache.decode(first)
    assert text == '{"a":1}'
    assert cache.decode(second) == '{"b":2}'
    assert cache.decode(first) is text  # still cached
    cache.decode(b'{"c":3}')  # evicts `first`
    assert cache.decode(first) == text


async def test_outbox_bounds_batches_and_closes() -> None:
    outbox = Outbox(10)
    assert outbox.put(b"12345") and outbox.put(b"1234")
    assert not outbox.put(b"12")  # 11 > 10
    assert outbox.queued_bytes == 9 and len(outbox) == 2
    assert await outbox.take() == [b"12345", b"1234"]
    assert outbox.queued_bytes == 0

    waiter = asyncio.create_task(outbox.take())
    await asyncio.sleep(0)
    assert not waiter.done()
    outbox.put(b"x")
    assert await asyncio.wait_for(waiter, TIMEOUT) == [b"x"]

    outbox.put(b"last")
    outbox.close()
    assert outbox.put(b"ignored")  # closed: discarded, not an overflow
    assert await outbox.take() == [b"last"]
    assert await outbox.take() == []

    discarding = Outbox(10)
    discarding.put(b"x")
    discarding.close(discard=True)
    assert await discarding.take() == []


class FakeASGIServer:
    """Plays the server side of the ASGI calls, for what uvicorn cannot show."""

    def __init__(self, *incoming: Message) -> None:
        self.incoming = list(incoming)
        self.sent: list[Message] = []

    async def receive(self) -> Message:
        return self.incoming.pop(0)

    async def send(self, message: Message) -> None:
        self.sent.append(message)


async def test_decline_without_the_http_response_extension_closes_1008() -> None:
    app = chat_app()
    scope = {
        "type": "websocket",
        "path": "/api/socket",
        "raw_path": b"/api/socket",
        "query_string": b"token=wrong",
        "headers": [],
        "extensions": {},  # a server without "websocket.http.response"
    }
    fake = FakeASGIServer({"type": "websocket.connect"})
    await ASGIApp(app.pond)(scope, fake.receive, fake.send)
    assert fake.sent == [{"type": "websocket.close", "code": CloseCode.POLICY_VIOLATION}]


async def test_lifespan_shuts_the_pond_down() -> None:
    app = chat_app()
    shutdowns: list[bool] = []

    async def shutdown(timeout: float = 5.0, *, drain: bool = True) -> None:
        shutdowns.append(drain)

    app.pond.shutdown = shutdown  # type: ignore[method-assign]
    fake = FakeASGIServer({"type": "lifespan.startup"}, {"type": "lifespan.shutdown"})
    await ASGIApp(app.pond)({"type": "lifespan"}, fake.receive, fake.send)
    assert [m["type"] for m in fake.sent] == [
        "lifespan.startup.complete",
        "lifespan.shutdown.complete",
    ]
    assert shutdowns == [False]  # a host closed its connections first: no drain
