"""``pondsocket client`` driven through a subprocess: stdin lines in, frames out, exit codes."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator

import pytest

from pondsocket.client import PondClient
from pondsocket.client.cli import LineError, parse_line
from pondsocket.transports.standalone import StandaloneServer
from tests.client.app import TOKEN, make_app

TIMEOUT = 15.0


@pytest.fixture
async def port() -> AsyncIterator[int]:
    pond, _ = make_app()
    server = StandaloneServer(pond, "127.0.0.1", 0)
    yield await server.start()
    await server.aclose()


async def spawn(*args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "pondsocket", "client", *args,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip


async def cli(stdin: str, *args: str) -> tuple[int, str, str]:
    process = await spawn(*args)
    async with asyncio.timeout(TIMEOUT):
        out, err = await process.communicate(stdin.encode())
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


def url(port: int) -> str:
    return f"ws://127.0.0.1:{port}/socket"


async def test_join_send_request_leave_exit_0(port: int) -> None:
    lines = '+ /room/1 {"x": 1}\n/room/1 say {"text":"hi"}\n? /room/1 whoami {"n":2}\n- /room/1\n'
    code, out, err = await cli(lines, url(port), "--token", TOKEN, "-q", "name=ada")
    assert code == 0, err
    assert '< /room/1 BROADCAST said {"from":"ada","text":"hi"}' in out
    assert '< /room/1 SYSTEM you {"name":"ada","echo":{"n":2}}' in out
    assert "< /room/1 PRESENCE JOIN" in out and "EXIT_ACKNOWLEDGE" in out
    assert "# joined /room/1" in err and "# left /room/1" in err


async def test_json_lines_and_join_option(port: int) -> None:
    code, out, err = await cli(
        "? /room/2 whoami {}\n", url(port), "--token", TOKEN, "-j", "/room/2={}", "--json"
    )
    assert code == 0, err
    frames = [json.loads(line) for line in out.splitlines()]
    assert frames[0]["event"] == "CONNECTION"
    assert {"SYSTEM", "PRESENCE"} <= {f["action"] for f in frames}
    assert any(f["event"] == "you" and f["payload"]["name"] == "anon" for f in frames)
    assert all(set(f) == {"action", "event", "channelName", "requestId", "payload"} for f in frames)


async def test_refused_handshake_exits_1_at_once(port: int) -> None:
    code, _, err = await cli("", url(port), "--token", "wrong")
    assert code == 1 and "HTTP 401" in err and "invalid token" in err


async def test_failures_exit_1(port: int) -> None:
    code, _, err = await cli("? /room/1 boom {}\n", url(port), "--token", TOKEN, "-j", "/room/1")
    assert code == 1 and "request 'boom' failed (404)" in err
    code, _, err = await cli("", url(port), "--token", TOKEN, "-j", "/room/secret")
    assert code == 1 and "declined (403): private room" in err
    code, _, err = await cli("/room/9 say {}\n", url(port), "--token", TOKEN)
    assert code == 1 and "not joined" in err


async def test_usage_errors_exit_2(port: int) -> None:
    code, _, err = await cli("this is not a command\n", url(port), "--token", TOKEN)
    assert code == 2 and "expected" in err
    code, _, err = await cli("", "ftp://127.0.0.1/", "--token", TOKEN)
    assert code == 2 and "unsupported URL" in err
    code, _, _ = await cli("")  # no URL: argparse
    assert code == 2


async def test_presence_changes_are_shown(port: int) -> None:
    process = await spawn(url(port), "--token", TOKEN, "-q", "name=cli", "-j", "/room/p")
    assert process.stdout is not None and process.stdin is not None
    seen: list[str] = []

    async def until(text: str) -> None:
        assert process.stdout is not None
        while not any(text in line for line in seen):
            line = (await process.stdout.readline()).decode()
            assert line, f"the CLI ended before {text!r}: {seen}"
            seen.append(line)

    async with asyncio.timeout(TIMEOUT):
        await until('PRESENCE JOIN {"name":"cli"}')
        async with PondClient(url(port), query={"token": TOKEN, "name": "bob"}) as bob:
            await bob.channel("/room/p").join()
            await until('PRESENCE JOIN {"name":"bob"} (2 present)')
        await until('PRESENCE LEAVE {"name":"bob"} (1 present)')
        process.stdin.close()
        assert await process.wait() == 0


def test_line_syntax() -> None:
    assert parse_line("  # a comment") is None and parse_line("") is None
    join = parse_line('+ /room/1 {"a": [1]}')
    assert join is not None and (join.kind, join.channel, join.payload) == (
        "join",
        "/room/1",
        {"a": [1]},
    )
    request = parse_line("? /room/1 whoami")
    assert request is not None and (request.kind, request.event, request.payload) == (
        "request",
        "whoami",
        {},
    )
    send = parse_line('/room/1 say {"text": "a b"}')
    assert send is not None and send.payload == {"text": "a b"}
    for bad in (
        "say hi",
        "/room/1",
        "/room/1 say [1]",
        "/room/1 say {",
        "- /room/1 extra",
        "? room x",
    ):
        with pytest.raises(LineError):
            parse_line(bad)
