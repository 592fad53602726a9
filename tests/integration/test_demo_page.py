"""The demo chat's page in a real browser: headless Chromium (Debian's package) driven by
``tests/js/demo_page.mjs`` through playwright-core, against ``pondsocket demo`` itself
(the command, on a port it picks and prints once bound). Two tabs of one browser: each
asks for a name before it connects, the second tab's try with the first tab's name is
refused and it picks another, a message shows in both tabs and as its sender's own in
the sender's tab only, and a reload rejoins with the tab's name. This test checks what
the script saw and the screenshots it took."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from tests.support import unavailable

JS_DIR = Path(__file__).resolve().parents[1] / "js"
SCRIPT = JS_DIR / "demo_page.mjs"
CHROMIUM = Path("/usr/bin/chromium")
PNG = b"\x89PNG\r\n\x1a\n"
# Client-chosen text: the page must show it as text, never as elements.
TEXT = "hello <b>bold</b><script>alert(1)</script> from Ada"
REPLY = "hi Ada, Bob here"


def _tools() -> str:
    node = shutil.which("node")
    if node is None:
        unavailable("node is not installed", "browser")
    if not CHROMIUM.exists():
        unavailable(f"{CHROMIUM} is missing (apt-get install chromium)", "browser")
    if not (JS_DIR / "node_modules" / "playwright-core").is_dir():
        unavailable("playwright-core is not installed (npm ci --prefix tests/js)", "browser")
    return node


@pytest.fixture
def demo() -> Iterator[tuple[str, str]]:
    """``pondsocket demo --port 0``: its printed address and node id."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "pondsocket", "demo", "--port", "0"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()  # printed once the port is bound
        assert line.startswith("PondSocket demo chat (node "), line
        node = line.removeprefix("PondSocket demo chat (node ").split(")", 1)[0]
        url = line.split("open ", 1)[1].split(" ", 1)[0]
        yield url, node
        process.send_signal(signal.SIGINT)
        assert process.wait(10) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()


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
async def test_demo_page_in_chromium(demo: tuple[str, str], tmp_path: Path) -> None:
    node = _tools()
    url, node_id = demo
    config = {
        "url": url,
        "node": node_id,
        "first": "Ada",
        "taken": "ada",  # Ada's name in other letter case: taken all the same
        "second": "Bob",
        "text": TEXT,
        "reply": REPLY,
        "screenshots": str(tmp_path),
    }
    code, report = await _run_script(node, config)
    assert code == 0, report.get("error")

    # Asked for a name first: no socket until one was typed, then one with that name.
    assert report["askA"] == "Pick a name to join"
    assert report["sockets"]["a"][0].endswith("/socket?username=Ada")
    assert report["meA"] == "Ada" and report["nodeA"] == f"node {node_id}"
    # The same name in the second tab is refused (by the server), another one is taken.
    assert report["refusedB"] == "The name ada is taken in this room: pick another."
    assert [s.rsplit("=", 1)[1] for s in report["sockets"]["b"]] == ["ada", "Bob"]
    assert report["meB"] == "Bob"
    assert sorted(report["usersA"]) == sorted(report["usersB"]) == ["Ada", "Bob"]
    # Each message in both tabs, marked as its own (class, label, right-aligned) only in
    # the tab that sent it.
    ada_text = {"who": "Ada", "text": TEXT, "own": False, "align": "flex-start"}
    bob_reply = {"who": "Bob", "text": REPLY, "own": False, "align": "flex-start"}
    ada_own = {"who": "Ada (you)", "text": TEXT, "own": True, "align": "flex-end"}
    bob_own = {"who": "Bob (you)", "text": REPLY, "own": True, "align": "flex-end"}
    assert report["messagesA"] == [ada_own, bob_reply]
    assert report["messagesB"] == [ada_text, bob_own]
    # A reload rejoined as Ada without asking (one more socket), and the history it got
    # marks Ada's message as its own: by the user ids the server gave this tab.
    assert report["askedAfterReload"] is False and report["socketsA"] == 2
    assert report["messagesAfterReload"] == [ada_own, bob_reply]
    # Text stayed text; nothing but the page itself was fetched; no errors.
    assert report["injected"] == [0, 0]
    assert set(report["requests"]) == {url}
    assert report["consoleErrors"] == []
    _check_screenshots(tmp_path)


def _check_screenshots(directory: Path) -> None:
    shots = sorted(directory.glob("*.png"))
    assert [p.name for p in shots] == [
        "1-a-asks-for-a-name.png",
        "2-b-asks-for-a-name.png",
        "3-b-name-refused.png",
        "4-a-own-message.png",
        "5-b-sees-the-message.png",
        "6-a-reloaded.png",
    ]
    for shot in shots:
        data = shot.read_bytes()
        assert data.startswith(PNG) and len(data) > 5000, shot.name
