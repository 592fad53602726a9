"""The admin page through both transports: the standalone server (real sockets, real
WebSocket clients) and the ASGI app (also mounted below a prefix)."""

from __future__ import annotations

import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import Mount

from pondsocket import PondOptions
from pondsocket.transports.standalone import StandaloneServer
from tests.admin.app import ACTION, AUTH, TOKEN, make_pond
from tests.integration.helpers_standalone import Client
from tests.support import eventually


async def test_standalone_serves_the_page_and_the_api() -> None:
    pond = make_pond()
    async with StandaloneServer(pond, "127.0.0.1", 0) as server:
        base = f"http://127.0.0.1:{server.port}"
        alice = await Client.connect(f"ws://127.0.0.1:{server.port}/socket")
        await alice.expect(lambda f: f["event"] == "CONNECTION")
        await alice.join("/room/1", {"name": "Alice"})
        async with httpx.AsyncClient(base_url=base) as http:
            page = await http.get("/admin")
            assert page.status_code == 200 and page.headers["cache-control"] == "no-store"
            assert "script-src 'self'" in page.headers["content-security-policy"]
            assert (await http.get("/admin/admin.js")).status_code == 200
            assert (await http.get("/admin/api/state")).status_code == 401
            state = (await http.get("/admin/api/state", headers=AUTH)).json()
            assert state["node"]["id"] == "node-under-test"
            assert state["channels"]["items"][0]["members"] == 1
            [connection] = state["connections"]["items"]
            assert connection["id"] == alice.connection_id
            assert isinstance(connection["queueBytes"], int)  # the standalone outlet says
            evict = await http.post(
                "/admin/api/evict",
                params={"endpoint": "/socket", "channel": "/room/1", "user": alice.connection_id},
                headers=ACTION,
            )
            assert evict.status_code == 200, evict.text
            await alice.expect(lambda f: f["event"] == "kicked_out")
            channel = pond.endpoints[0].get_channel("/room/1")
            assert channel is None or not channel.has_user(alice.connection_id)
            close = await http.post(
                "/admin/api/close", params={"connection": alice.connection_id}, headers=ACTION
            )
            assert close.status_code == 200
            await eventually(lambda: pond.endpoints[0].connection_ids == [], "the close")
            assert alice.ws.close_code == 4000
            # websockets reads no request body: such a request is dropped, unanswered
            with pytest.raises(httpx.RemoteProtocolError):
                await http.post("/admin/api/close?connection=x", headers=ACTION, content=b"{}")


async def test_standalone_without_the_option_answers_404() -> None:
    pond = make_pond(PondOptions())
    async with StandaloneServer(pond, "127.0.0.1", 0) as server, httpx.AsyncClient() as http:
        for target in ("/admin", "/admin/admin.js", "/admin/api/state"):
            answer = await http.get(f"http://127.0.0.1:{server.port}{target}", headers=AUTH)
            assert answer.status_code == 404


async def test_asgi_serves_the_page_and_the_api() -> None:
    pond = make_pond()
    transport = httpx.ASGITransport(app=pond.asgi)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        page = await http.get("/admin")
        assert page.status_code == 200 and page.headers["x-content-type-options"] == "nosniff"
        assert (await http.get("/admin/api/state")).status_code == 401
        assert (await http.get("/admin/api/state", headers=AUTH)).json()["nodes"][0]["self"]
        # A body is refused before it is read.
        posted = await http.post("/admin/api/close?connection=x", headers=ACTION, content=b"x" * 10)
        assert posted.status_code == 413
        unknown = await http.post("/admin/api/close?connection=x", headers=ACTION)
        assert unknown.status_code == 404 and unknown.json() == {
            "error": "no such connection on this node"
        }
    off = make_pond(PondOptions())
    transport = httpx.ASGITransport(app=off.asgi)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        assert (await http.get("/admin")).status_code == 404


async def test_asgi_mounted_below_a_prefix() -> None:
    pond = make_pond(PondOptions(admin_path="/ops/admin", admin_token=TOKEN))
    host = Starlette(routes=[Mount("/ws", app=pond.asgi)])
    transport = httpx.ASGITransport(app=host)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        page = await http.get("/ws/ops/admin")
        assert page.status_code == 200
        assert 'src="admin/admin.js"' in page.text  # /ws/ops/ + admin/admin.js
        assert (await http.get("/ws/ops/admin/admin.js")).status_code == 200
        state = await http.get("/ws/ops/admin/api/state", headers=AUTH)
        assert state.status_code == 200
