"""Interoperability with the real published Python client (PyPI ``pondsocket-client``
0.0.6), over both transports, with the same checks as the npm client's tests."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from functools import partial
from typing import Any

import pytest
from pondsocket_client import ClientOptions, PondClient
from pondsocket_common import ChannelState
from tests.integration.peer_app import DEPLOYMENTS, LOBBY, Deployment, deploy
from tests.support import eventually
from websockets.exceptions import InvalidStatus


@pytest.fixture(params=DEPLOYMENTS, ids=lambda d: f"{d[0]}-{d[1]}node")
async def app_url(request: pytest.FixtureRequest) -> AsyncIterator[tuple[Deployment, str]]:
    transport, nodes = request.param
    async with deploy(transport, nodes) as deployment:
        yield deployment, deployment.urls[0]


class Peer:
    """One PyPI client and what it saw on one channel."""

    def __init__(self, url: str, name: str, token: str = "secret") -> None:
        options = ClientOptions(max_reconnect_attempts=0, response_timeout=5.0)
        self.name = name
        self.client = PondClient(url, {"token": token, "name": name}, options)
        self.errors: list[BaseException] = []
        self.client.on_error(self.errors.append)
        self.messages: list[tuple[str, str, dict[str, Any]]] = []  # (action, event, payload)
        self.joins: list[dict[str, Any]] = []
        self.leaves: list[dict[str, Any]] = []
        self.states: list[str] = []
        self.channel: Any = None

    async def connect(self) -> None:
        await self.client.connect()

    async def join(self, name: str = LOBBY) -> str:
        """Join and return the state the channel settled in (JOINED or DECLINED)."""
        channel = self.client.create_channel(name, {})
        channel.on_message(
            lambda m: self.messages.append((str(m.action), m.event, dict(m.payload)))
        )
        channel.on_join(self.joins.append)
        channel.on_leave(self.leaves.append)
        channel.on_channel_state_change(lambda s: self.states.append(str(s)))
        channel.join()
        await eventually(lambda: channel.channel_state in (ChannelState.JOINED, "DECLINED"))
        if channel.channel_state == ChannelState.JOINED:
            self.channel = channel
        return str(channel.channel_state)

    def names(self) -> list[str]:
        return sorted(p["name"] for p in self.channel.presence)

    def events(self, event: str) -> list[dict[str, Any]]:
        return [payload for _, e, payload in self.messages if e == event]

    async def close(self) -> None:
        await self.client.disconnect()


@pytest.fixture
async def peers(app_url: tuple[Deployment, str]) -> AsyncIterator[Callable[[str], Peer]]:
    deployment, _ = app_url
    made: list[Peer] = []

    def make(name: str) -> Peer:
        peer = Peer(deployment.next_url(), name)
        made.append(peer)
        return peer

    yield make
    for peer in made:
        await peer.close()


async def joined(make: Callable[[str], Peer], *names: str) -> list[Peer]:
    result = []
    for name in names:
        peer = make(name)
        await peer.connect()
        assert await peer.join() == "JOINED"
        result.append(peer)
    return result


async def test_join_presence_lists_and_join_leave_events(
    app_url: tuple[Deployment, str], peers: Callable[[str], Peer]
) -> None:
    app, _ = app_url
    alice, bob = await joined(peers, "alice", "bob")
    await eventually(lambda: alice.names() == ["alice", "bob"])
    await eventually(lambda: bob.names() == ["alice", "bob"])
    assert [j["name"] for j in alice.joins] == ["alice", "bob"]  # her own JOIN, then bob's

    bob.channel.send_message("away", {})
    await eventually(lambda: any(p.get("away") for p in alice.channel.presence))

    bob.channel.leave()
    await eventually(lambda: [p["name"] for p in alice.leaves] == ["bob"])
    assert alice.leaves[0]["away"] is True
    await eventually(lambda: alice.names() == ["alice"])
    await eventually(lambda: ("bob", "explicit_leave") in app.left)
    assert not alice.errors and not bob.errors


async def test_broadcast_and_broadcast_to(peers: Callable[[str], Peer]) -> None:
    a, b, c = await joined(peers, "a", "b", "c")
    await eventually(lambda: a.names() == ["a", "b", "c"])
    ids = {p["name"]: p["id"] for p in a.channel.presence}
    a.channel.send_message("say", {"text": "all"})

    def heard_all(peer: Peer) -> bool:
        return peer.events("message") == [{"text": "all"}]

    for peer in (a, b, c):
        await eventually(partial(heard_all, peer))
    a.channel.send_message("whisper", {"text": "psst", "to": [ids["b"]]})
    a.channel.send_message("others", {"text": "not a"})
    await eventually(lambda: bool(c.events("others")) and bool(b.events("others")))
    await eventually(lambda: b.events("whisper") == [{"text": "psst"}])
    assert c.events("whisper") == [] and a.events("whisper") == []
    assert a.events("others") == []


async def test_request_reply_and_unknown_event(peers: Callable[[str], Peer]) -> None:
    (a,) = await joined(peers, "a")
    assert await a.channel.send_for_response("echo", {"n": 42}) == {"n": 42}
    error = await a.channel.send_for_response("no-such-event", {})
    assert (error["code"], error["status"]) == (404, 404)


async def test_eviction_notice_carries_reason_and_stops_delivery(
    app_url: tuple[Deployment, str], peers: Callable[[str], Peer]
) -> None:
    app, _ = app_url
    a, b, c = await joined(peers, "a", "b", "c")
    await eventually(lambda: a.names() == ["a", "b", "c"])
    ids = {p["name"]: p["id"] for p in a.channel.presence}
    a.channel.send_message("kick", {"user": ids["b"]})
    await eventually(lambda: bool(b.events("kicked_out")))
    assert b.events("kicked_out") == [
        {"reason": "misbehaving", "message": "misbehaving", "code": 403}
    ]
    await eventually(lambda: c.events("kicked") == [{"userId": ids["b"], "reason": "misbehaving"}])
    await eventually(lambda: c.names() == ["a", "c"])
    a.channel.send_message("say", {"text": "after"})
    await eventually(lambda: bool(c.events("message")))
    assert b.events("message") == []
    await eventually(lambda: ("b", "evicted:misbehaving") in app.left)


async def test_declined_join_and_unknown_channel_are_declined(peers: Callable[[str], Peer]) -> None:
    # 0.0.6 declines only on SYSTEM/UNAUTHORIZED or SYSTEM/NOT_FOUND: with ERROR frames
    # these joins stayed JOINING for ever.
    a = peers("a")
    await a.connect()
    assert await a.join("/chat/secret") == "DECLINED"
    assert await a.join("/nowhere/1") == "DECLINED"
    assert await a.join() == "JOINED"  # the connection is fine
    assert not a.errors


async def test_bad_token_is_refused_before_the_upgrade(app_url: tuple[Deployment, str]) -> None:
    _, url = app_url
    peer = Peer(url, "x", token="wrong")
    try:
        await peer.connect()
        await eventually(lambda: bool(peer.errors))
        assert isinstance(peer.errors[0], InvalidStatus)
        assert peer.errors[0].response.status_code == 401
        assert peer.client.get_state() == "disconnected"
    finally:
        await peer.close()


async def test_dropped_socket_leaves_every_channel(
    app_url: tuple[Deployment, str], peers: Callable[[str], Peer]
) -> None:
    app, _ = app_url
    a, b = await joined(peers, "a", "b")
    await eventually(lambda: a.names() == ["a", "b"])
    socket = b.client._socket
    assert socket is not None
    socket.transport.abort()  # no close frame: the network went away
    await eventually(lambda: [p["name"] for p in a.leaves] == ["b"], timeout=10)
    await eventually(lambda: ("b", "connection_closed") in app.left)
    await eventually(lambda: app.connections_open == 1)
