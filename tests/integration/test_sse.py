"""The SSE transport (PROTOCOL §1.13) under a real uvicorn server, served directly and
mounted in FastAPI, with ``httpx`` streaming clients (and a WebSocket client to show both
transports share channels)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from tests.integration.test_asgi import LOBBY, TOKEN, ChatApp, Client, chat_app, message
from tests.support import eventually
from websockets.asyncio.client import connect

from pondsocket import PondOptions

if TYPE_CHECKING:
    from tests.integration.conftest import AsgiServe, AsgiServer

Frame = dict[str, Any]
TIMEOUT = 10.0
SOCKET = "/api/socket"


class SseClient:
    """One event stream plus the POSTs/DELETEs that go with it."""

    def __init__(self, http: httpx.AsyncClient, url: str, response: httpx.Response) -> None:
        self.http = http
        self.url = url
        self.response = response
        self.id = response.headers["x-connection-id"]
        self.frames: asyncio.Queue[Frame | None] = asyncio.Queue()
        self.raw: list[str] = []
        self._reader = asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        try:
            async for line in self.response.aiter_lines():
                self.raw.append(line)
                if line.startswith("data: "):
                    self.frames.put_nowait(json.loads(line[len("data: ") :]))
        except httpx.HTTPError:
            pass
        finally:
            self.frames.put_nowait(None)  # end of stream

    async def recv(self) -> Frame:
        frame = await asyncio.wait_for(self.frames.get(), TIMEOUT)
        assert frame is not None, "the stream ended"
        return frame

    async def ended(self) -> None:
        while await asyncio.wait_for(self.frames.get(), TIMEOUT) is not None:
            pass

    async def post(self, body: str | bytes, connection_id: str | None = None) -> httpx.Response:
        headers = {"content-type": "application/json"}
        if connection_id is None:
            connection_id = self.id
        if connection_id:
            headers["x-connection-id"] = connection_id
        return await self.http.post(self.url, content=body, headers=headers)

    async def send(
        self, action: str, channel: str, event: str, payload: Frame | None = None
    ) -> str:
        text, request_id = message(action, channel, event, payload)
        response = await self.post(text)
        assert response.status_code == 202
        return request_id

    async def joined(self, channel: str) -> Frame:
        request_id = await self.send("JOIN_CHANNEL", channel, "JOIN_CHANNEL")
        ack = await self.recv()
        assert (ack["event"], ack["requestId"]) == ("ACKNOWLEDGE", request_id)
        presence = await self.recv()
        assert (presence["action"], presence["event"]) == ("PRESENCE", "JOIN")
        return presence

    async def close(self) -> None:
        await self.response.aclose()
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader


@dataclass
class Harness:
    serve: AsgiServe
    stack: contextlib.AsyncExitStack
    http: httpx.AsyncClient
    app: ChatApp | None = None
    server: AsgiServer | None = None

    async def start(self, options: PondOptions | None = None) -> ChatApp:
        self.app = chat_app(options)
        self.server = await self.serve(self.app.pond)
        return self.app

    def url(self, name: str, token: str = TOKEN) -> str:
        assert self.server is not None
        return f"{self.server.http_url}{SOCKET}?token={token}&name={name}"

    async def open(self, name: str, token: str = TOKEN) -> httpx.Response:
        request = self.http.build_request(
            "GET", self.url(name, token), headers={"accept": "text/event-stream"}
        )
        response = await self.http.send(request, stream=True)
        self.stack.push_async_callback(response.aclose)
        return response

    async def connect(self, name: str) -> SseClient:
        response = await self.open(name)
        assert response.status_code == 200
        client = SseClient(self.http, self.url(name), response)
        self.stack.push_async_callback(client.close)
        first = await client.recv()
        assert (first["action"], first["event"]) == ("CONNECT", "CONNECTION")
        assert first["payload"]["connectionId"] == client.id
        return client

    async def websocket(self, name: str) -> Client:
        assert self.server is not None
        url = f"{self.server.ws_url}{SOCKET}?token={TOKEN}&name={name}"
        ws = await self.stack.enter_async_context(connect(url, open_timeout=TIMEOUT))
        client = Client(ws, "")
        first = await client.recv()
        client.id = first["payload"]["connectionId"]
        return client


@pytest.fixture
async def harness(asgi_serve: AsgiServe) -> AsyncIterator[Harness]:
    async with (
        contextlib.AsyncExitStack() as stack,
        httpx.AsyncClient(timeout=TIMEOUT) as http,
    ):
        yield Harness(asgi_serve, stack, http)


# -- handshake ----------------------------------------------------------------


async def test_connection_event_first_with_headers(harness: Harness) -> None:
    app = await harness.start()
    client = await harness.connect("alice")
    headers = client.response.headers
    assert headers["content-type"].startswith("text/event-stream")
    assert headers["cache-control"] == "no-cache"
    assert headers["x-accel-buffering"] == "no"
    assert client.raw[0].startswith("data: {")  # no `event:` field, ever
    assert app.paths == [SOCKET]


async def test_declined_handshake_answers_http_401(harness: Harness) -> None:
    await harness.start()
    response = await harness.open("mallory", token="wrong")
    await response.aread()
    assert (response.status_code, response.text) == (401, "invalid token")


async def test_plain_get_still_answers_426(harness: Harness) -> None:
    await harness.start()
    response = await harness.http.get(harness.url("x"))
    assert response.status_code == 426


# -- messages -----------------------------------------------------------------


async def test_join_echo_and_presence(harness: Harness) -> None:
    await harness.start()
    alice = await harness.connect("alice")
    presence = await alice.joined(LOBBY)
    assert [p["name"] for p in presence["payload"]["presence"]] == ["alice"]
    request_id = await alice.send("BROADCAST", LOBBY, "echo", {"hello": 1})
    reply = await alice.recv()
    assert (reply["action"], reply["event"], reply["requestId"]) == ("SYSTEM", "echo", request_id)
    assert reply["payload"] == {"hello": 1}
    assert not any(line.startswith("event:") for line in alice.raw)


async def test_sse_and_websocket_clients_share_a_channel(harness: Harness) -> None:
    await harness.start()
    alice = await harness.connect("alice")
    bob = await harness.connect("bob")
    carol = await harness.websocket("carol")
    await alice.joined(LOBBY)
    await bob.joined(LOBBY)
    assert (await alice.recv())["event"] == "JOIN"  # bob's presence
    await carol.joined(LOBBY)
    for client in (alice, bob):
        assert (await client.recv())["event"] == "JOIN"  # carol's presence

    await alice.send("BROADCAST", LOBBY, "say", {"from": "alice"})
    for frame in (await bob.recv(), await carol.recv(), await alice.recv()):
        assert (frame["event"], frame["payload"]) == ("said", {"from": "alice"})

    await carol.send("BROADCAST", LOBBY, "say", {"from": "carol"})
    for frame in (await alice.recv(), await bob.recv(), await carol.recv()):
        assert (frame["event"], frame["payload"]) == ("said", {"from": "carol"})


async def test_bad_json_gets_202_and_an_error_on_the_stream(harness: Harness) -> None:
    await harness.start()
    alice = await harness.connect("alice")
    response = await alice.post("{not json")
    assert response.status_code == 202
    error = await alice.recv()
    assert error["action"] == "ERROR"


async def test_post_rejections(harness: Harness) -> None:
    await harness.start(PondOptions(max_message_size=1024))
    alice = await harness.connect("alice")
    text, _ = message("BROADCAST", LOBBY, "echo")
    missing = await alice.post(text, connection_id="")
    assert (missing.status_code, missing.text) == (400, "X-Connection-ID header required")
    unknown = await alice.post(text, connection_id="no-such-connection")
    assert unknown.status_code == 404
    too_big, _ = message("BROADCAST", LOBBY, "echo", {"x": "y" * 2000})
    assert (await alice.post(too_big)).status_code == 413
    # The stream is still fine.
    await alice.joined(LOBBY)


# -- disconnects --------------------------------------------------------------


async def test_delete_ends_the_stream_and_leaves(harness: Harness) -> None:
    app = await harness.start()
    alice = await harness.connect("alice")
    await alice.joined(LOBBY)
    response = await harness.http.delete(alice.url, headers={"x-connection-id": alice.id})
    assert response.status_code == 204
    await alice.ended()
    await eventually(
        lambda: [(c, r) for c, _, r in app.leaves] == [(LOBBY, "connection_closed")], "leave"
    )
    text, _ = message("BROADCAST", LOBBY, "echo")
    assert (await alice.post(text)).status_code == 404


async def test_closing_the_stream_leaves_at_once(harness: Harness) -> None:
    app = await harness.start()
    alice = await harness.connect("alice")
    bob = await harness.connect("bob")
    await alice.joined(LOBBY)
    await bob.joined(LOBBY)
    await alice.close()
    await eventually(
        lambda: [(c, r) for c, _, r in app.leaves] == [(LOBBY, "connection_closed")], "leave"
    )
    leave = await bob.recv()
    while leave["action"] != "PRESENCE" or leave["event"] != "LEAVE":
        leave = await bob.recv()
    assert [p["name"] for p in leave["payload"]["presence"]] == ["bob"]


async def test_keepalive_comments(harness: Harness) -> None:
    await harness.start(PondOptions(ping_interval=0.05, ping_timeout=0.05))
    alice = await harness.connect("alice")
    await eventually(lambda: ": keepalive" in alice.raw, "a keep-alive comment")


async def test_cors_preflight_and_headers(harness: Harness) -> None:
    app = await harness.start()
    app.pond.asgi.sse.cors_origin = "https://app.example"
    assert harness.server is not None
    response = await harness.http.options(harness.url("x"))
    assert response.status_code == 204
    assert response.headers["access-control-allow-origin"] == "https://app.example"
    assert response.headers["access-control-allow-methods"] == "GET, POST, DELETE, OPTIONS"
    assert response.headers["access-control-allow-headers"] == "Content-Type, X-Connection-ID"
    alice = await harness.connect("alice")
    assert alice.response.headers["access-control-expose-headers"] == "X-Connection-ID"
    text, _ = message("BROADCAST", LOBBY, "echo")
    posted = await alice.post(text)
    assert posted.headers["access-control-allow-origin"] == "https://app.example"


async def test_a_user_id_learnt_from_the_channel_cannot_drive_the_victims_stream(
    harness: Harness,
) -> None:
    # The channel's `kicked` notice carries the evicted user's id; the stream's POSTs are
    # authorised by a secret of its own, so that id is worth nothing to another member.
    app = await harness.start()
    victim = await harness.connect("victim")
    mallory = await harness.connect("mallory")
    await victim.joined(LOBBY)
    await mallory.joined(LOBBY)
    victim_user_id = next(iter(app.endpoint.connection_ids))
    assert victim.id != victim_user_id and len(victim.id) >= 40
    await mallory.send("BROADCAST", LOBBY, "kick", {"user": victim_user_id})
    kicked = await mallory.recv()
    while kicked["event"] != "kicked":
        kicked = await mallory.recv()
    leaked = kicked["payload"]["userId"]
    text, _ = message("JOIN_CHANNEL", "/chat/other", "JOIN_CHANNEL")
    assert (await mallory.post(text, connection_id=leaked)).status_code == 404
    assert (
        await harness.http.delete(victim.url, headers={"x-connection-id": leaked})
    ).status_code == 404
    assert (await victim.post(text)).status_code == 202  # the victim's own secret works
