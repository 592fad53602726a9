"""The app the admin tests look at: one endpoint, rooms whose members are tracked with the
presence they join with, and a way to call the server's HTTP seam directly."""

from __future__ import annotations

from typing import Any

import orjson

from pondsocket import PondOptions, PondSocket
from pondsocket.core.contexts import JoinContext
from pondsocket.core.request import ConnectionRequest
from pondsocket.transports.host import HttpResponse

TOKEN = "s3cret-admin-token-0123456789"
AUTH = {"authorization": f"Bearer {TOKEN}"}
ACTION = {**AUTH, "x-pond-admin": "1"}


def make_pond(options: PondOptions | None = None, **admin: Any) -> PondSocket:
    """A server with the admin page at ``/admin`` (unless ``options`` say otherwise)."""
    if options is None:
        admin.setdefault("admin_token", TOKEN)
        options = PondOptions(admin_path="/admin", **admin)
    pond = PondSocket(options, node_id="node-under-test")
    endpoint = pond.create_endpoint("/socket", lambda ctx: ctx.accept())

    @endpoint.create_channel("/room/:id")
    def join(ctx: JoinContext) -> None:
        ctx.accept().track(dict(ctx.join_params))

    return pond


async def call(
    pond: PondSocket, method: str, target: str, headers: dict[str, str] | None = None
) -> HttpResponse | None:
    """What a transport gets from the server for a plain HTTP request."""
    path, _, query = target.partition("?")
    request = ConnectionRequest.from_raw(path, query, (headers or {}).items(), ("127.0.0.1", 40000))
    return await pond.http_request(method, path, lambda: request)


async def state(pond: PondSocket, query: str = "") -> dict[str, Any]:
    answer = await call(pond, "GET", f"/admin/api/state{query}", AUTH)
    assert answer is not None and answer.status == 200, answer
    body: dict[str, Any] = orjson.loads(answer.body)
    return body
