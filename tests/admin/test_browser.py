"""The admin page in a real browser: headless Chromium (Debian's package) driven by
``tests/js/admin_page.mjs`` through playwright-core, against a standalone server with
real WebSocket clients. The script signs in, reads the live data, opens a channel and
evicts a member, taking screenshots; this test checks what it saw and that the user
really left the channel."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from typing import Any

import orjson
import pytest

from pondsocket import PondOptions, PondSocket
from pondsocket.core.contexts import EventContext, JoinContext
from pondsocket.transports.standalone import StandaloneServer
from tests.admin.app import TOKEN
from tests.integration.helpers_standalone import Client
from tests.support import eventually, unavailable

JS_DIR = Path(__file__).resolve().parents[1] / "js"
SCRIPT = JS_DIR / "admin_page.mjs"
CHROMIUM = Path("/usr/bin/chromium")
PNG = b"\x89PNG\r\n\x1a\n"
# Client-chosen text the page must show as text: markup here must not become elements.
HOSTILE_NAME = "Alice <b>bold</b><script>alert(1)</script>"


def _tools() -> str:
    node = shutil.which("node")
    if node is None:
        unavailable("node is not installed", "browser")
    if not CHROMIUM.exists():
        unavailable(f"{CHROMIUM} is missing (apt-get install chromium)", "browser")
    if not (JS_DIR / "node_modules" / "playwright-core").is_dir():
        unavailable("playwright-core is not installed (npm ci --prefix tests/js)", "browser")
    return node


def make_app() -> PondSocket:
    pond = PondSocket(PondOptions(admin_path="/admin", admin_token=TOKEN), node_id="browser-node")
    endpoint = pond.create_endpoint("/socket", lambda ctx: ctx.accept())

    def join(ctx: JoinContext) -> None:
        ctx.accept().track(dict(ctx.join_params))

    lobby = endpoint.create_channel("/room/:id", join)

    @lobby.on_message("fail")
    def fail(ctx: EventContext) -> None:
        raise ValueError("a handler bug the page must list")

    return pond


async def _run_script(node: str, config: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    process = await asyncio.create_subprocess_exec(
        node,
        str(SCRIPT),
        orjson.dumps(config).decode(),
        cwd=JS_DIR,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(90):
            out, err = await process.communicate()
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    lines = out.decode().strip().splitlines()
    assert lines, f"the browser script printed nothing; stderr:\n{err.decode()[-3000:]}"
    report: dict[str, Any] = orjson.loads(lines[-1])
    return process.returncode or 0, report


@pytest.mark.timeout(150)
async def test_admin_page_in_chromium(tmp_path: Path) -> None:
    node = _tools()
    pond = make_app()
    async with StandaloneServer(pond, "127.0.0.1", 0) as server:
        url = f"ws://127.0.0.1:{server.port}/socket"
        alice, bob = await Client.connect(url), await Client.connect(url)
        for client in (alice, bob):
            await client.expect(lambda f: f["event"] == "CONNECTION")
        await alice.join("/room/lobby", {"name": HOSTILE_NAME, "status": "online"})
        await bob.join("/room/lobby", {"name": "Bob"})
        await bob.send_message("BROADCAST", "/room/lobby", "fail", {})
        await eventually(lambda: len(pond.metrics.recent_errors) == 1, "the handler error")
        config = {
            "url": f"http://127.0.0.1:{server.port}/admin",
            "token": TOKEN,
            "nodeId": "browser-node",
            "channel": "/room/lobby",
            "members": 2,
            "user": alice.connection_id,
            "presence": HOSTILE_NAME,
            "errorKind": "event handler",
            "screenshots": str(tmp_path),
        }
        code, report = await _run_script(node, config)
        assert code == 0, report.get("error")

        # What the page showed, as the script read it.
        assert report["node"] == "node browser-node"
        assert report["channelMembers"] == 2
        assert HOSTILE_NAME in report["presence"]  # shown as text...
        assert report["injected"] == 0  # ...never as elements
        assert report["dialogs"] == [
            {"type": "confirm", "message": f"Evict {alice.connection_id} from /room/lobby?"}
        ]  # the eviction's confirm, and no alert() from the hostile presence
        assert report["memberRows"] == 2 and report["nodes"] == 1 and report["connections"] == 2
        assert report["action"] == f"evicted {alice.connection_id} from /room/lobby"
        assert report["tokenInStorage"] == TOKEN
        assert report["consoleErrors"] == [
            "Failed to load resource: the server responded with a status of 401 (Unauthorized)"
        ] * len(report["consoleErrors"])  # the two refused sign-ins; no CSP violation
        assert not any(TOKEN in request for request in report["requests"])  # never in a URL

        # The eviction really happened on the server.
        await alice.expect(lambda f: f["event"] == "kicked_out")
        channel = pond.endpoints[0].get_channel("/room/lobby")
        assert channel is not None and channel.user_ids == [bob.connection_id]
    _check_screenshots(tmp_path)


def _check_screenshots(directory: Path) -> None:
    shots = sorted(directory.glob("*.png"))
    names = [p.name for p in shots]
    assert names == ["1-login.png", "2-dashboard.png", "3-members.png", "4-evicted.png"]
    for shot in shots:
        data = shot.read_bytes()
        assert data.startswith(PNG) and len(data) > 5000, shot.name
