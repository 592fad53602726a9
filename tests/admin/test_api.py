"""The admin page's JSON API through the server's HTTP seam (``PondSocket.http_request``,
what both transports call): credentials, what the state shows, evict and close, and the
arguments and bodies it refuses."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import cast

import orjson
import pytest

from pondsocket import PondOptions
from pondsocket.admin import throttle
from pondsocket.core.request import ConnectionRequest
from pondsocket.errors import InvalidOptionError
from pondsocket.testing import TestClient
from tests.admin.app import ACTION, AUTH, TOKEN, call, make_pond, state


def test_admin_options_are_checked_when_built() -> None:
    with pytest.raises(InvalidOptionError, match="neither admin_token nor admin_auth"):
        PondOptions(admin_path="/admin")
    with pytest.raises(InvalidOptionError, match="at least 16"):
        PondOptions(admin_path="/admin", admin_token="short")
    with pytest.raises(InvalidOptionError, match="at least 16"):
        PondOptions(admin_path="/admin", admin_token="has a space in it, 16+")
    for path in ("admin", "/", "/admin/", "/ad min", "/a/<b>"):
        with pytest.raises(InvalidOptionError, match="admin_path must be a path"):
            PondOptions(admin_path=path, admin_token=TOKEN)
    with pytest.raises(InvalidOptionError, match="already the health"):
        PondOptions(admin_path="/healthz", admin_token=TOKEN)
    with pytest.raises(InvalidOptionError, match="callable"):
        PondOptions(admin_path="/admin", admin_auth="yes")  # type: ignore[arg-type]
    options = PondOptions(admin_path="/ops/admin", admin_token=TOKEN)
    assert TOKEN not in repr(options)  # options get logged; the token must not be


async def test_off_by_default() -> None:
    pond = make_pond(PondOptions())
    for target in ("/admin", "/admin/admin.js", "/admin/api/state"):
        assert await call(pond, "GET", target, AUTH) is None  # the transports answer 404


async def test_the_page_holds_no_data_and_is_locked_down() -> None:
    pond = make_pond()
    page = await call(pond, "GET", "/admin")
    assert page is not None and page.status == 200
    assert page.content_type == "text/html; charset=utf-8"
    assert b"node-under-test" not in page.body
    assert b'src="admin/admin.js"' in page.body  # relative: works under a mount point
    headers = dict(page.headers)
    assert headers["Cache-Control"] == "no-store"
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert "script-src 'self'" in headers["Content-Security-Policy"]
    assert "default-src 'none'" in headers["Content-Security-Policy"]
    assert headers["X-Frame-Options"] == "DENY"
    script = await call(pond, "GET", "/admin/admin.js")
    assert script is not None and script.status == 200
    assert script.content_type.startswith("text/javascript")
    assert b"innerHTML" not in script.body and b"eval(" not in script.body
    style = await call(pond, "GET", "/admin/admin.css")
    assert style is not None and style.content_type.startswith("text/css")
    posted = await call(pond, "POST", "/admin")
    assert posted is not None and posted.status == 405
    missing = await call(pond, "GET", "/admin/nothing")
    assert missing is not None and missing.status == 404
    assert await call(pond, "GET", "/administrator") is None  # not below the admin path


async def test_api_refuses_without_a_valid_token() -> None:
    pond = make_pond()
    offered = [
        {},
        {"authorization": "Bearer wrong-token-of-enough-length"},
        {"authorization": f"Basic {TOKEN}"},
        {"authorization": f"Bearer {TOKEN}x"},
        {"authorization": "Bearer \u00e9\u00e9\u00e9"},  # not ASCII: still just refused
        {"authorization": f"Bearer {TOKEN}, Bearer {TOKEN}"},  # two headers, merged
    ]
    for headers in offered:
        for method, name in (("GET", "state"), ("POST", "evict"), ("POST", "close")):
            answer = await call(
                pond, method, f"/admin/api/{name}", {**headers, "x-pond-admin": "1"}
            )
            assert answer is not None and answer.status == 401, (headers, name)
            assert orjson.loads(answer.body) == {"error": "unauthorized"}
            assert dict(answer.headers)["WWW-Authenticate"].startswith("Bearer")
            assert TOKEN.encode() not in answer.body
    assert (await state(pond))["node"]["id"] == "node-under-test"
    lower = await call(pond, "GET", "/admin/api/state", {"authorization": f"bearer {TOKEN}"})
    assert lower is not None and lower.status == 200  # the scheme is case-insensitive


async def test_state_shows_channels_members_presence_and_connections() -> None:
    pond = make_pond()
    client = TestClient(pond)
    alice, bob = await client.connect("/socket"), await client.connect("/socket")
    await alice.join("/room/1", {"name": "Alice", "status": "online"})
    await bob.join("/room/1", {"name": "<b>Bob</b>"})
    await bob.join("/room/2", {})
    body = await state(pond)
    assert body["node"] == {
        "id": "node-under-test",
        "notReady": "starting",
        "pubsub": "InMemoryPubSub",
    }
    assert body["nodes"] == [{"id": "node-under-test", "self": True, "lastHeard": 0.0}]
    assert body["channels"] == {
        "total": 2,
        "items": [  # the busiest first
            {"endpoint": "/socket", "name": "/room/1", "members": 2, "local": 2, "presence": 2},
            {"endpoint": "/socket", "name": "/room/2", "members": 1, "local": 1, "presence": 1},
        ],
    }
    assert body["members"] is None  # no channel asked for
    connections = body["connections"]
    assert connections["total"] == 2 and connections["queueLimit"] == 4 * 1024 * 1024
    by_id = {c["id"]: c for c in connections["items"]}
    assert by_id[bob.id]["channels"] == 2 and by_id[alice.id]["address"] == "127.0.0.1"
    assert body["counters"]["messages_received"] == 3
    assert body["errors"] == []

    members = (await state(pond, "?endpoint=/socket&channel=/room/1"))["members"]
    assert members["open"] is True and members["total"] == 2
    presence = {m["id"]: m["presence"] for m in members["items"]}
    assert presence == {
        alice.id: '{"name":"Alice","status":"online"}',
        bob.id: '{"name":"<b>Bob</b>"}',  # as text: the page shows it as text
    }
    assert {m["node"] for m in members["items"]} == {"node-under-test"}
    filtered = (await state(pond, "?filter=2"))["channels"]
    assert [c["name"] for c in filtered["items"]] == ["/room/2"] and filtered["total"] == 1
    gone = (await state(pond, "?endpoint=/socket&channel=/room/9"))["members"]
    assert gone == {
        "endpoint": "/socket",
        "name": "/room/9",
        "open": False,
        "total": 0,
        "items": [],
    }


async def test_lists_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    from pondsocket.admin import state as state_module

    monkeypatch.setattr(state_module, "LIST_LIMIT", 3)
    pond = make_pond(PondOptions(admin_path="/admin", admin_token=TOKEN, join_rate_limit=None))
    client = TestClient(pond)
    conns = [await client.connect("/socket") for _ in range(5)]
    for n, conn in enumerate(conns):
        await conn.join("/room/big", {"n": n})
        await conn.join(f"/room/{n}", {})
    body = await state(pond, "?endpoint=/socket&channel=/room/big")
    assert body["channels"]["total"] == 6 and len(body["channels"]["items"]) == 3
    assert body["channels"]["items"][0]["name"] == "/room/big"
    assert body["members"]["total"] == 5 and len(body["members"]["items"]) == 3
    assert body["connections"]["total"] == 5 and len(body["connections"]["items"]) == 3


async def test_evict_removes_the_user_from_the_channel() -> None:
    pond = make_pond()
    client = TestClient(pond)
    alice, bob = await client.connect("/socket"), await client.connect("/socket")
    await alice.join("/room/1", {"name": "Alice"})
    await bob.join("/room/1", {"name": "Bob"})
    target = f"/admin/api/evict?endpoint=%2Fsocket&channel=%2Froom%2F1&user={alice.id}"
    refused = await call(pond, "POST", target, AUTH)  # no X-Pond-Admin: a cross-site form?
    assert refused is not None and refused.status == 403
    channel = pond.endpoints[0].get_channel("/room/1")
    assert channel is not None and channel.has_user(alice.id)
    as_get = await call(pond, "GET", target, ACTION)
    assert as_get is not None and as_get.status == 405 and dict(as_get.headers)["Allow"] == "POST"
    answer = await call(pond, "POST", target + "&reason=spam", ACTION)
    assert answer is not None and answer.status == 200
    assert orjson.loads(answer.body) == {"evicted": alice.id, "channel": "/room/1"}
    assert not channel.has_user(alice.id) and channel.has_user(bob.id)
    [notice] = alice.frames_for("/room/1", event="kicked_out")
    assert notice["payload"]["reason"] == "spam"
    assert bob.frames_for("/room/1", event="kicked")[0]["payload"]["userId"] == alice.id
    assert not alice.outlet.closed  # evicted from the channel, still connected
    again = await call(pond, "POST", target, ACTION)
    assert again is not None and again.status == 404
    assert orjson.loads(again.body) == {"error": "not a member of this channel"}
    for wrong in ("endpoint=%2Fnope&channel=x&user=y", "endpoint=%2Fsocket&channel=nope&user=y"):
        answer = await call(pond, "POST", f"/admin/api/evict?{wrong}", ACTION)
        assert answer is not None and answer.status == 404


async def test_close_closes_the_connection() -> None:
    pond = make_pond()
    client = TestClient(pond)
    alice = await client.connect("/socket")
    await alice.join("/room/1", {})
    answer = await call(pond, "POST", f"/admin/api/close?connection={alice.id}", ACTION)
    assert answer is not None and answer.status == 200
    assert alice.outlet.closed == (4000, "closed by an administrator")
    await asyncio.sleep(0.01)  # the session ends as the socket's would
    assert pond.endpoints[0].connection_ids == []
    assert pond.endpoints[0].get_channel("/room/1") is None
    unknown = await call(pond, "POST", "/admin/api/close?connection=nobody", ACTION)
    assert unknown is not None and unknown.status == 404


@pytest.mark.parametrize(
    ("target", "error"),
    [
        ("/admin/api/close", "missing argument connection"),
        ("/admin/api/close?connection=", "missing argument connection"),
        ("/admin/api/close?connection=a&connection=b", "given twice"),
        ("/admin/api/close?connection=a&token=x", "unknown argument"),
        ("/admin/api/close?connection=" + "a" * 257, "longer than 256"),
        ("/admin/api/close?connection=%ff", "malformed query string"),
        ("/admin/api/state?" + "filter=x&" * 3, "given twice"),
        ("/admin/api/state?" + "filter=x&" * 20, "malformed query string"),
        ("/admin/api/state?filter=" + "x" * 5000, "query string too long"),
    ],
)
async def test_bad_arguments_are_refused(target: str, error: str) -> None:
    answer = await call(make_pond(), "POST" if "close" in target else "GET", target, ACTION)
    assert answer is not None and answer.status == 400
    assert error in orjson.loads(answer.body)["error"]


async def test_the_api_takes_no_body() -> None:
    pond = make_pond()
    for body in ({"content-length": "12"}, {"transfer-encoding": "chunked"}):
        answer = await call(pond, "POST", "/admin/api/close?connection=x", {**ACTION, **body})
        assert answer is not None and answer.status == 413
    empty = await call(
        pond, "POST", "/admin/api/close?connection=x", {**ACTION, "content-length": "0"}
    )
    assert empty is not None and empty.status == 404  # an empty body is no body


async def test_the_apps_own_check() -> None:
    seen: list[ConnectionRequest] = []

    async def by_cookie(request: ConnectionRequest) -> bool:
        seen.append(request)
        await asyncio.sleep(0)
        return request.cookies.get("session") == "admin"

    pond = make_pond(PondOptions(admin_path="/admin", admin_auth=by_cookie))
    admitted = await call(pond, "GET", "/admin/api/state", {"cookie": "session=admin"})
    assert admitted is not None and admitted.status == 200
    assert seen[0].client == ("127.0.0.1", 40000) and seen[0].path == "/admin/api/state"
    refused = await call(pond, "GET", "/admin/api/state", {"cookie": "session=user"})
    assert refused is not None and refused.status == 401
    token = await call(pond, "GET", "/admin/api/state", AUTH)  # no token configured
    assert token is not None and token.status == 401

    def verdicts(value: object) -> PondOptions:
        # Checks that return something else than a bool, as a mistaken app's would.
        return PondOptions(
            admin_path="/admin", admin_token=TOKEN, admin_auth=lambda r: cast("bool", value)
        )

    for value, status in ((True, 200), (1, 401), ("yes", 401), (None, 401)):
        answer = await call(make_pond(verdicts(value)), "GET", "/admin/api/state")
        assert answer is not None and answer.status == status, value
    either = await call(make_pond(verdicts(False)), "GET", "/admin/api/state", AUTH)
    assert either is not None and either.status == 200  # the token admits too

    def broken(request: ConnectionRequest) -> Awaitable[bool]:
        raise RuntimeError("the session store is down")

    failing = make_pond(PondOptions(admin_path="/admin", admin_auth=broken))
    answer = await call(failing, "GET", "/admin/api/state")
    assert answer is not None and answer.status == 401


async def test_configure_turns_it_on_later() -> None:
    pond = make_pond(PondOptions())
    assert await call(pond, "GET", "/ops") is None
    pond.configure(admin_path="/ops", admin_token=TOKEN)
    page = await call(pond, "GET", "/ops")
    assert page is not None and page.status == 200 and b'src="ops/admin.js"' in page.body
    answer = await call(pond, "GET", "/ops/api/state", AUTH)
    assert answer is not None and answer.status == 200


async def test_an_address_refused_too_often_waits_whatever_it_offers() -> None:
    pond = make_pond()
    wrong = {"authorization": "Bearer wrong-token-of-enough-length"}
    for _ in range(throttle.MAX_FAILURES):
        answer = await call(pond, "GET", "/admin/api/state", wrong)
        assert answer is not None and answer.status == 401
    for headers in (wrong, AUTH):  # now even the right token waits: guessing is bounded
        answer = await call(pond, "GET", "/admin/api/state", headers)
        assert answer is not None and answer.status == 429
        retry = int(dict(answer.headers)["Retry-After"])
        assert 1 <= retry <= throttle.WINDOW
        assert "too many refused requests" in orjson.loads(answer.body)["error"]
    # another address is not affected
    path = "/admin/api/state"
    other = ConnectionRequest.from_raw(path, "", AUTH.items(), ("10.0.0.2", 5000))
    answer = await pond.http_request("GET", path, lambda: other)
    assert answer is not None and answer.status == 200


def test_failed_sign_ins_reopen_after_the_window_and_stay_bounded() -> None:
    now = [0.0]
    failures = throttle.FailedSignIns(clock=lambda: now[0])
    for _ in range(throttle.MAX_FAILURES - 1):
        failures.failed("a")
    assert failures.retry_after("a") == 0.0  # one try left
    failures.failed("a")
    assert failures.retry_after("a") == throttle.WINDOW
    now[0] = throttle.WINDOW - 1
    assert failures.retry_after("a") == 1.0
    now[0] = throttle.WINDOW
    assert failures.retry_after("a") == 0.0  # the window is over: counted afresh
    failures.failed("a")
    assert failures.retry_after("a") == 0.0
    for n in range(throttle.MAX_ADDRESSES + 10):
        failures.failed(f"10.0.{n // 256}.{n % 256}")
    assert len(failures._windows) == throttle.MAX_ADDRESSES  # the oldest were forgotten
    assert throttle.FailedSignIns.header(0.2) == "1" and throttle.FailedSignIns.header(3.5) == "4"
