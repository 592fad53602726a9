"""The Python client through the ASGI transport (uvicorn, served directly and mounted in
FastAPI): join, request, broadcast, and recovery of a history channel after a socket abort."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from tests.client.app import TOKEN, make_app

from pondsocket.client import PondClient, Recovery

if TYPE_CHECKING:
    from tests.integration.conftest import AsgiServe

TIMEOUT = 10.0


async def test_client_over_asgi(asgi_serve: AsgiServe) -> None:
    pond, endpoint = make_app()
    server = await asgi_serve(pond)
    url = f"{server.ws_url}/socket"
    async with PondClient(url, query={"token": TOKEN, "name": "ada"}, backoff_initial=0.1) as a:
        room = await a.channel("/room/1").join()
        reply = await room.request("whoami", {"k": "v"})
        assert reply.payload == {"name": "ada", "echo": {"k": "v"}}
        assert [u["name"] for u in room.presence.users] == ["ada"]
        history = a.channel("/hist/a")
        recoveries: list[Recovery] = []
        history.on_recovery(recoveries.append)
        got: list[int] = []
        history.on("n", lambda m: got.append(m.payload["n"]))
        await history.join()
        for n in range(20):
            endpoint.broadcast("/hist/a", "n", {"n": n})
        async with asyncio.timeout(TIMEOUT):
            while len(got) < 20:
                await asyncio.sleep(0.01)
        assert a._ws is not None
        a._ws.transport.abort()
        await asyncio.sleep(0.05)  # the client is away: these are missed, then recovered
        for n in range(20, 40):
            endpoint.broadcast("/hist/a", "n", {"n": n})
        async with asyncio.timeout(TIMEOUT):
            while len(got) < 40:
                await asyncio.sleep(0.01)
        assert got == list(range(40))
        assert recoveries[-1].requested and recoveries[-1].recovered
        assert a.reconnects == 1
