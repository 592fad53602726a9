"""Interoperability with the real published JavaScript client (npm, 0.0.32), over both
transports: the standalone server and the ASGI app on uvicorn."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from tests.integration.peer_app import DEPLOYMENTS, LOBBY, App, Deployment, deploy
from tests.jsclient import (
    JSClientHarness,
    JSCommandError,
    ensure_js_client_installed,
    event_matches,
)

from pondsocket import PondOptions
from pondsocket.transports.standalone import StandaloneServer

pytestmark = pytest.mark.js


@pytest.fixture(scope="module", autouse=True)
def _js_client_installed() -> None:
    ensure_js_client_installed()


@pytest.fixture(params=DEPLOYMENTS, ids=lambda d: f"{d[0]}-{d[1]}node")
async def app_url(request: pytest.FixtureRequest) -> AsyncIterator[tuple[Deployment, str]]:
    transport, nodes = request.param
    async with deploy(transport, nodes) as deployment:
        yield deployment, deployment.urls[0]


@pytest.fixture
async def js() -> AsyncIterator[JSClientHarness]:
    harness = await JSClientHarness.start()
    try:
        yield harness
    finally:
        await harness.close()


async def connect(js: JSClientHarness, where: Deployment | str, name: str) -> None:
    """Connect ``name`` to ``where`` (a deployment: its next node in turn)."""
    url = where.next_url() if isinstance(where, Deployment) else where
    await js.command("connect", client=name, url=url, params={"token": "secret", "name": name})


async def join(js: JSClientHarness, name: str, channel: str = LOBBY) -> dict[str, Any]:
    result: dict[str, Any] = await js.command("join", client=name, channel=channel)
    return result


async def users(js: JSClientHarness, name: str, count: int) -> list[dict[str, Any]]:
    """Wait until ``name``'s presence list has ``count`` users and return it."""
    event = await js.wait_event(
        lambda e: e["type"] == "users" and e["client"] == name and len(e["presence"]) == count
    )
    presence: list[dict[str, Any]] = event["presence"]
    return presence


async def test_connect_join_presence_and_leave(
    app_url: tuple[Deployment, str], js: JSClientHarness
) -> None:
    app, _url = app_url
    await connect(js, app, "alice")
    joined = await join(js, "alice")
    assert joined["state"] == "JOINED"
    await connect(js, app, "bob")
    await join(js, "bob")
    seen_by_alice = await users(js, "alice", 2)
    assert sorted(u["name"] for u in seen_by_alice) == ["alice", "bob"]
    join_event = await js.wait_event(
        event_matches(
            type="presence",
            client="alice",
            kind="join",
            payload={"name": "bob", "id": seen_by_alice[1]["id"]},
        )
    )
    assert join_event["channel"] == LOBBY
    await users(js, "bob", 2)  # across nodes, alice reaches bob's list a moment later
    assert sorted(u["name"] for u in await js.command("presence", client="bob", channel=LOBBY)) == [
        "alice",
        "bob",
    ]

    await js.command("send", client="bob", channel=LOBBY, event="away", payload={})
    change = await js.wait_event(event_matches(type="presence", client="alice", kind="change"))
    assert change["payload"]["changed"]["away"] is True

    await js.command("leave", client="bob", channel=LOBBY)
    leave = await js.wait_event(event_matches(type="presence", client="alice", kind="leave"))
    assert leave["payload"]["name"] == "bob"
    assert [u["name"] for u in await users(js, "alice", 1)] == ["alice"]
    await _eventually(lambda: ("bob", "explicit_leave") in app.left)
    # 0.0.32 ignores our EXIT_ACKNOWLEDGE: it validates and drops it, nothing breaks.
    await js.command("send", client="alice", channel=LOBBY, event="say", payload={"ok": 1})
    await js.wait_event(event_matches(type="message", client="alice", event="message"))
    assert not js.events(type="fatal") and js.events(type="error") == []


async def test_broadcast_variants(app_url: tuple[Deployment, str], js: JSClientHarness) -> None:
    app, _url = app_url
    for name in ("a", "b", "c"):
        await connect(js, app, name)
        await join(js, name)
    everyone = await users(js, "a", 3)
    ids = {u["name"]: u["id"] for u in everyone}

    await js.command("send", client="a", channel=LOBBY, event="say", payload={"text": "all"})
    for name in ("a", "b", "c"):
        await js.wait_event(
            event_matches(type="message", client=name, event="message", payload={"text": "all"})
        )

    await js.command(
        "send",
        client="a",
        channel=LOBBY,
        event="whisper",
        payload={"text": "psst", "to": [ids["b"]]},
    )
    await js.command("send", client="a", channel=LOBBY, event="others", payload={"text": "not a"})
    await js.wait_event(event_matches(type="message", client="c", event="others"))
    await js.wait_event(event_matches(type="message", client="b", event="others"))
    await js.wait_event(event_matches(type="message", client="b", event="whisper"))
    # c received "others" after the whisper was sent, so a whisper to c would be here by now.
    assert js.events(type="message", client="c", event="whisper") == []
    assert js.events(type="message", client="a", event="whisper") == []
    assert js.events(type="message", client="a", event="others") == []


async def test_request_reply_and_unknown_event(
    app_url: tuple[Deployment, str], js: JSClientHarness
) -> None:
    app, _url = app_url
    await connect(js, app, "a")
    await join(js, "a")
    reply = await js.command("request", client="a", channel=LOBBY, event="echo", payload={"n": 42})
    assert reply == {"n": 42}
    error = await js.command(
        "request", client="a", channel=LOBBY, event="no-such-event", payload={}
    )
    assert error["code"] == 404
    assert not js.events(type="fatal")


async def test_eviction(app_url: tuple[Deployment, str], js: JSClientHarness) -> None:
    app, _url = app_url
    for name in ("a", "b", "c"):
        await connect(js, app, name)
        await join(js, name)
    ids = {u["name"]: u["id"] for u in await users(js, "a", 3)}
    await js.command("send", client="a", channel=LOBBY, event="kick", payload={"user": ids["b"]})
    notice = await js.wait_event(event_matches(type="message", client="b", event="kicked_out"))
    assert notice["payload"]["message"] == "misbehaving"
    kicked = await js.wait_event(event_matches(type="message", client="c", event="kicked"))
    assert kicked["payload"] == {"userId": ids["b"], "reason": "misbehaving"}
    assert [u["name"] for u in await users(js, "c", 2)] == ["a", "c"]
    await js.command("send", client="a", channel=LOBBY, event="say", payload={"text": "after"})
    await js.wait_event(event_matches(type="message", client="c", event="message"))
    assert js.events(type="message", client="b", event="message") == []
    await _eventually(lambda: ("b", "evicted:misbehaving") in app.left)


async def test_declined_join_and_unknown_channel(
    app_url: tuple[Deployment, str], js: JSClientHarness
) -> None:
    app, _url = app_url
    await connect(js, app, "a")
    with pytest.raises(JSCommandError) as declined:
        await join(js, "a", "/chat/secret")
    assert declined.value.code == "DECLINED"
    assert (declined.value.payload["status"], declined.value.payload["message"]) == (
        403,
        "members only",
    )
    with pytest.raises(JSCommandError) as unknown:
        await join(js, "a", "/nowhere/1")
    assert unknown.value.code == "DECLINED"
    assert unknown.value.payload["code"] == "CHANNEL_NOT_FOUND"
    assert unknown.value.payload["status"] == 404
    assert (await join(js, "a"))["state"] == "JOINED"  # the connection is fine
    # SYSTEM/UNAUTHORIZED declines the channel; 0.0.32 reports no client error for it.
    assert js.events(type="error", client="a") == []
    assert not js.events(type="fatal")


async def test_bad_token_is_refused_before_the_upgrade(
    app_url: tuple[Deployment, str], js: JSClientHarness
) -> None:
    _app, url = app_url
    with pytest.raises(JSCommandError):
        await js.command(
            "connect", client="x", url=url, params={"token": "wrong"}, timeout_ms=3000, timeout=10
        )
    refusal = await js.wait_event(event_matches(type="handshake_error", client="x"))
    assert "401" in refusal["error"]


async def test_dropped_socket_leaves_every_channel(
    app_url: tuple[Deployment, str], js: JSClientHarness
) -> None:
    app, _url = app_url
    await connect(js, app, "a")
    await join(js, "a")
    await connect(js, app, "b")
    await join(js, "b")
    await users(js, "a", 2)
    await js.command("drop", client="b", reconnect=False)
    leave = await js.wait_event(
        event_matches(type="presence", client="a", kind="leave"), timeout=10
    )
    assert leave["payload"]["name"] == "b"
    await _eventually(lambda: ("b", "connection_closed") in app.left)
    assert app.connections_open == 1


async def _eventually(condition: Any, timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.02)


async def test_coalesced_presence_leaves_every_js_client_with_the_full_list(
    js: JSClientHarness,
) -> None:
    app = App(PondOptions(presence_coalesce_window=0.05))
    server = StandaloneServer(app.pond, "127.0.0.1", 0)
    port = await server.start()
    url = f"ws://127.0.0.1:{port}/api/socket"
    names = [f"user{i}" for i in range(12)]
    try:
        for name in names:
            await connect(js, url, name)
        await asyncio.gather(*(join(js, name) for name in names))
        for name in names:
            assert sorted(u["name"] for u in await users(js, name, len(names))) == sorted(names)
        assert not js.events(type="fatal")
    finally:
        await server.aclose()
