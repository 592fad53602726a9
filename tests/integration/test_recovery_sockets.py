"""Recovery over real sockets with a Python client that keeps its last position: its TCP
connection is aborted during a 200 msg/s stream, it stays away 3 s, then rejoins with the
position (standalone and ASGI transports share the core, so one transport is enough here;
the npm client's run is tests/integration/test_js_recovery.py)."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.integration.helpers_standalone import Client

from pondsocket import PondSocket
from pondsocket.transports.standalone import StandaloneServer

ROOM = "/room/live"
RATE = 200


def ticks(client: Client) -> list[dict[str, Any]]:
    return [f for f in client.frames if f["channelName"] == ROOM and f["event"] == "tick"]


async def test_a_client_cut_for_three_seconds_recovers_everything() -> None:
    pond = PondSocket()
    endpoint = pond.create_endpoint("/socket", lambda ctx: ctx.accept())
    endpoint.create_channel("/room/:id", lambda ctx: ctx.accept()).history(size=2000)
    server = StandaloneServer(pond, "127.0.0.1", 0)
    port = await server.start()
    url = f"ws://127.0.0.1:{port}/socket"
    total = RATE * 6

    async def tick() -> None:
        for n in range(total):
            endpoint.broadcast(ROOM, "tick", {"n": n})
            await asyncio.sleep(1 / RATE)

    try:
        keeper = await Client.connect(url)  # keeps the channel open meanwhile
        await keeper.join(ROOM)
        first = await Client.connect(url)
        await first.join(ROOM)
        ticker = asyncio.create_task(tick())
        await asyncio.sleep(1.5)
        transport = first.ws.transport
        transport.abort()  # no close frame: the socket just dies
        await asyncio.sleep(3.0)
        seen = ticks(first)
        assert seen, "nothing arrived before the cut"
        position = seen[-1]["payload"]["_position"]
        second = await Client.connect(url)
        await second.join(ROOM, {"recover": position})
        await ticker
        signal = await second.expect(lambda f: f["event"] == "recovery")
        await second.expect(lambda f: f["event"] == "tick" and f["payload"]["n"] == total - 1)
        got = [f["payload"]["n"] for f in seen] + [f["payload"]["n"] for f in ticks(second)]
        assert got == list(range(total))
        assert signal["payload"]["recovered"] is True
        assert signal["payload"]["missed"] > RATE  # well over a second of the stream
        await asyncio.gather(keeper.close(), second.close())
    finally:
        await server.aclose()
