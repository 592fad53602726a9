"""Self-check of the JS-client harness against the FAKE server in selftest_server.py.

Not part of the pytest suite: it only proves that driver.mjs + tests/jsclient.py drive the real
npm client correctly (connect, join, presence, request, decline, leave, drop, disconnect), with
no dependency on the pondsocket package. Run after `npm ci --prefix tests/js`:

    python tests/js/selftest.py
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))  # the repository root, for tests.jsclient and tests.js

from tests.js.selftest_server import FakeServer  # noqa: E402
from tests.jsclient import JSClientHarness, JSCommandError, event_matches  # noqa: E402


def check(condition: bool, what: str, detail: Any = None) -> None:
    if not condition:
        raise AssertionError(f"{what}: {detail!r}")
    print(f"ok   {what}")


async def main() -> None:
    server = FakeServer()
    port = await server.start()
    url = f"ws://127.0.0.1:{port}/socket"
    async with await JSClientHarness.start() as js:
        # connect ------------------------------------------------------------------------------
        value = await js.command("connect", client="a", url=url, params={"token": "t1"})
        check(value == {"state": "connected"}, "connect", value)
        states = [e["state"] for e in js.events(type="connection", client="a")]
        check(states == ["disconnected", "connecting", "connected"], "connection events", states)

        # join + presence ----------------------------------------------------------------------
        value = await js.command("join", client="a", channel="/chat/lobby", params={"name": "al"})
        check(value["state"] == "JOINED", "join", value)
        joins = [m for c, m in server.received if m["action"] == "JOIN_CHANNEL"]
        check(joins[0]["payload"] == {"name": "al"}, "join params on the wire", joins)
        ev = await js.wait_event(event_matches(type="presence", kind="join", client="a"))
        check(ev["payload"] == {"n": 1}, "onJoin gets payload.changed", ev)
        ev = await js.wait_event(event_matches(type="users", client="a"))
        check(ev["presence"] == [{"n": 1}], "onUsersChange gets payload.presence", ev)
        value = await js.command("presence", client="a", channel="/chat/lobby")
        check(value == [{"n": 1}], "presence list", value)
        acks = js.events(type="message", event="ACKNOWLEDGE")
        check(len(acks) == 1, "onMessage also sees the ACKNOWLEDGE frame", acks)
        states = [e["state"] for e in js.events(type="channel_state", channel="/chat/lobby")]
        check(states == ["IDLE", "JOINING", "JOINED"], "channel_state events", states)

        # request / send / batching ------------------------------------------------------------
        value = await js.command(
            "request", client="a", channel="/chat/lobby", event="echo", payload={"x": 1}
        )
        check(value == {"x": 1}, "request -> response payload", value)
        await js.command("send", client="a", channel="/chat/lobby", event="hello", payload={"y": 2})
        ev = await js.wait_event(event_matches(type="message", event="hello"))
        check(ev["payload"] == {"y": 2}, "send + message event", ev)
        await js.command(
            "send", client="a", channel="/chat/lobby", event="chat:message", payload={}
        )
        ev = await js.wait_event(event_matches(type="message", event="chat:message"))
        check(True, "event names with ':' are sendable in 0.0.32")
        await js.command("send", client="a", channel="/chat/lobby", event="batch", payload={})
        await js.wait_event(event_matches(type="message", event="first"))
        await js.wait_event(event_matches(type="message", event="second"))
        check(True, "two newline-separated frames in one WebSocket message")

        # decline / silent join ----------------------------------------------------------------
        try:
            await js.command("join", client="a", channel="/deny/x")
        except JSCommandError as exc:
            check(exc.code == "DECLINED" and exc.payload["status"] == 403, "decline", exc.result)
        else:
            raise AssertionError("join of /deny/x should fail")
        try:
            await js.command("join", client="a", channel="/silent/x", timeout_ms=500)
        except JSCommandError as exc:
            check(exc.code == "TIMEOUT" and exc.result["state"] == "JOINING", "no ack", exc.result)
        else:
            raise AssertionError("join of /silent/x should time out")
        value = await js.command("state", client="a", channel="/silent/x")
        check(value == "JOINING", "0.0.32 stays JOINING without an ack", value)

        # an invalid frame ---------------------------------------------------------------------
        await js.command("send", client="a", channel="/chat/lobby", event="bad-frame", payload={})
        ev = await js.wait_event(event_matches(type="fatal"))
        check("payload" in ev["error"], "invalid frame -> fatal event", ev)
        await asyncio.sleep(0.3)
        lost = not js.events(type="message", event="after-bad")
        print(f"info valid frame after the invalid one in the same message lost: {lost}")
        value = await js.command(
            "request", client="a", channel="/chat/lobby", event="echo", payload={"still": True}
        )
        check(value == {"still": True}, "connection survives an invalid frame", value)

        # leave --------------------------------------------------------------------------------
        value = await js.command("leave", client="a", channel="/chat/lobby")
        check(value == {"state": "CLOSED"}, "leave", value)
        await asyncio.sleep(0.2)
        leaves = [m for c, m in server.received if m["action"] == "LEAVE_CHANNEL"]
        check(len(leaves) == 1 and leaves[0]["channelName"] == "/chat/lobby", "LEAVE sent", leaves)

        # drop (with automatic reconnect + rejoin) ---------------------------------------------
        await js.command("connect", client="b", url=url)
        await js.command("join", client="b", channel="/room/1")
        js.checkpoint()  # the JOINED/connected events so far must not satisfy the waits below
        value = await js.command("drop", client="b")
        check(value["method"] == "destroy", "drop destroys the TCP socket", value)
        await js.wait_event(event_matches(type="channel_state", client="b", state="STALLED"))
        await js.wait_event(event_matches(type="connection", client="b", state="connected"))
        await js.wait_event(event_matches(type="channel_state", client="b", state="JOINED"))
        b_joins = [c for c, m in server.received if m["action"] == "JOIN_CHANNEL" and c != "c1"]
        check(len(set(b_joins)) == 2, "after drop the client reconnects and rejoins", b_joins)
        await asyncio.sleep(0.2)
        first_b = next(c for c in server.closed if c.connection_id == "c2")
        check(not first_b.close_frame_received, "server saw no close frame on drop", first_b)
        value = await js.command("drop", client="b", reconnect=False, reset=True)
        check(value["method"] == "reset", "drop with reset, no reconnect", value)
        await asyncio.sleep(1.5)
        value = await js.command("state", client="b")
        check(value == "disconnected", "stays disconnected with reconnect:false", value)

        # disconnect ---------------------------------------------------------------------------
        value = await js.command("disconnect", client="a")
        check(value == {"state": "disconnected", "socket_closed": True}, "disconnect", value)
        await asyncio.sleep(0.2)
        a_close = next(c for c in server.closed if c.connection_id == "c1")
        check(a_close.close_frame_received, "disconnect does a close handshake", a_close)

        # connect failure ----------------------------------------------------------------------
        try:
            await js.command("connect", client="c", url="ws://127.0.0.1:1/x", timeout_ms=1500)
        except JSCommandError as exc:
            check(exc.code == "TIMEOUT", "connect to a dead port fails", exc.result)
        else:
            raise AssertionError("connect to port 1 should fail")

        fatals = js.events(type="fatal")
        check(len(fatals) == 1, "the only fatal event is the invalid frame", fatals)
    await server.stop()
    print("harness self-check OK")


if __name__ == "__main__":
    asyncio.run(main())
