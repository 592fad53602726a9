"""The Python client (and ``pondsocket client``) against the upstream Python server,
``pondsocket`` 0.0.7 on uvicorn, over real sockets: the same calls as against ours.

Upstream has no history, so there is nothing to recover: the client must not ask (no
``recover`` in the join) and must simply rejoin after a restart.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from pondsocket.client import (
    ChannelState,
    HandshakeRefusedError,
    JoinDeclinedError,
    Message,
    PondClient,
)
from pondsocket_bench.compare import SystemEnv
from tests.client.app import TOKEN
from tests.upstream import UpstreamNode, upstream_env

pytestmark = pytest.mark.slow

TIMEOUT = 10.0

# The same app as tests/client/app.py, written against upstream's API.
_APP = """
from pondsocket import PondSocket
from pondsocket_asgi import PondASGIApp


def build_app(args):
    pond = PondSocket()

    async def connect(ctx):
        if ctx.query.get("token") != "ok":
            ctx.decline(401, "invalid token")
            return
        ctx.accept(name=ctx.query.get("name", "anon"))

    endpoint = pond.create_endpoint("/socket", connect)

    async def join(ctx):
        params = ctx.get_join_params()
        await ctx.accept()
        await ctx.track({"name": await ctx.get_assign("name"), **params})

    room = endpoint.create_channel("/room/:id", join)

    async def say(ctx):
        await ctx.broadcast("said", {"from": ctx.get_user().assigns["name"], **ctx.get_payload()})

    async def whoami(ctx):
        await ctx.reply("you", {"name": ctx.get_user().assigns["name"], "echo": ctx.get_payload()})

    async def rename(ctx):
        await ctx.update_presence({"name": ctx.get_payload()["name"]})

    room.on_message("say", say)
    room.on_message("whoami", whoami)
    room.on_message("rename", rename)

    async def private(ctx):
        await ctx.decline(403, "private room")

    endpoint.create_channel("/secret/:id", private)
    return PondASGIApp(pond)
"""


@pytest.fixture(scope="module")
def env() -> SystemEnv:
    return upstream_env("upstream-client", _APP)


@pytest.fixture
async def upstream(env: SystemEnv, tmp_path: Path) -> AsyncIterator[UpstreamNode]:
    node = UpstreamNode(env, tmp_path / "upstream.log")
    await node.start()
    try:
        yield node
    finally:
        await node.kill()


def client(node: UpstreamNode, name: str, **options: Any) -> PondClient:
    return PondClient(node.url, query={"token": TOKEN, "name": name}, **options)


async def next_message(channel: Any, event: str) -> Message:
    async with asyncio.timeout(TIMEOUT):
        async for message in channel:
            if message.event == event:
                return message  # type: ignore[no-any-return]
    raise AssertionError(f"the channel ended before {event!r}")


async def until(condition: Any) -> None:
    async with asyncio.timeout(TIMEOUT):
        while not condition():
            await asyncio.sleep(0.01)


async def test_join_broadcast_request_presence_and_leave(upstream: UpstreamNode) -> None:
    async with client(upstream, "ada") as a, client(upstream, "bob") as b:
        room_a = a.channel("/room/1", {"role": "host"})
        kinds: list[str] = []
        room_a.presence.on_change(lambda change: kinds.append(change.kind))
        await room_a.join()
        room_b = await b.channel("/room/1").join()
        await until(lambda: len(room_a.presence.users) == 2)
        assert sorted(u["name"] for u in room_a.presence.users) == ["ada", "bob"]
        assert {"name": "ada", "role": "host"} in room_b.presence.users  # join params arrived

        await room_a.send("say", {"text": "hi"})
        got = await next_message(room_b, "said")
        assert (got.action, got.payload) == ("BROADCAST", {"from": "ada", "text": "hi"})

        reply = await room_b.request("whoami", {"x": 1}, timeout=TIMEOUT)
        assert (reply.action, reply.event) == ("SYSTEM", "you")
        assert reply.payload == {"name": "bob", "echo": {"x": 1}}

        await room_b.send("rename", {"name": "robert"})
        await until(lambda: "UPDATE" in kinds)
        assert sorted(u["name"] for u in room_a.presence.users) == ["ada", "robert"]

        await room_b.leave()  # upstream answers with EXIT_ACKNOWLEDGE
        assert room_b.state.value is ChannelState.CLOSED
        await until(lambda: [u["name"] for u in room_a.presence.users] == ["ada"])
        assert kinds[-1] == "LEAVE"


async def test_declined_join_and_refused_handshake(upstream: UpstreamNode) -> None:
    async with client(upstream, "ada") as a:
        with pytest.raises(JoinDeclinedError) as declined:
            await a.channel("/secret/1").join()
        assert declined.value.status == 403 and declined.value.message == "private room"
        room = await a.channel("/room/1").join()  # the connection is fine
        assert room.state.value is ChannelState.JOINED
    bad = PondClient(upstream.url, query={"token": "wrong"}, connect_timeout=TIMEOUT)
    with pytest.raises(HandshakeRefusedError):
        await bad.connect()


async def test_reconnects_and_rejoins_after_an_upstream_restart(upstream: UpstreamNode) -> None:
    a = client(upstream, "ada", backoff_initial=0.05, backoff_max=0.3)
    try:
        await a.connect()
        room = await a.channel("/room/r").join()
        first = a.connection_id
        await upstream.kill()
        await room.state.wait_for(ChannelState.STALLED, timeout=TIMEOUT)
        await upstream.start()  # the same port
        await room.state.wait_for(ChannelState.JOINED, timeout=TIMEOUT)
        assert a.connection_id != first and a.reconnects >= 1
        assert room.recovery is None  # upstream keeps no history: nothing was asked
        async with client(upstream, "bob") as b:
            await (await b.channel("/room/r").join()).send("say", {"text": "back"})
            got = await next_message(room, "said")
            assert got.payload == {"from": "bob", "text": "back"}
    finally:
        await a.close()


async def test_cli_client_against_upstream(upstream: UpstreamNode) -> None:
    lines = '+ /room/1\n/room/1 say {"text":"hi"}\n? /room/1 whoami {"n":2}\n- /room/1\n'
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "pondsocket", "client", upstream.url,
        "--token", TOKEN, "-q", "name=ada",
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    async with asyncio.timeout(TIMEOUT):
        out, err = await process.communicate(lines.encode())
    assert process.returncode == 0, err.decode()
    text = out.decode()
    assert '< /room/1 BROADCAST said {"from":"ada","text":"hi"}' in text
    assert '< /room/1 SYSTEM you {"name":"ada","echo":{"n":2}}' in text
    assert "< /room/1 PRESENCE JOIN" in text and "EXIT_ACKNOWLEDGE" in text
