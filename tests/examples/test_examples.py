"""Every example of examples/ run as examples/README.md says, as processes on real sockets
(the cluster on the machine's Redis, 127.0.0.1:6379; missing, it skips, or fails in CI)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest

from pondsocket.client import (
    HandshakeRefusedError,
    JoinDeclinedError,
    Message,
    PondClient,
    PresenceChange,
)
from tests import support
from tests.redis.servers import ping

ROOT = Path(__file__).resolve().parents[2]
LISTENING = re.compile(r"(?:listening on ws|Uvicorn running on http)://127\.0\.0\.1:(\d+)")
SECRET = f"examples-test-secret-{uuid.uuid4().hex}"  # unlike the dev default, on purpose


class Example:
    """One example's process (started in the repo's root); its output (stdout and stderr
    together) is read as it comes, so a chatty process never blocks on a full pipe."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.lines: list[str] = []
        self.reader = asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        async for raw in self.proc.stdout:
            self.lines.append(raw.decode(errors="replace").rstrip("\n"))

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    async def port(self) -> int:
        """The port the server logged it listens on (they are started with ``--port 0``)."""
        found: list[int] = []

        def listening() -> bool:
            found.extend(int(m[1]) for m in map(LISTENING.search, self.lines) if m)
            return bool(found) or self.proc.returncode is not None

        await support.eventually(listening, "the server listening", timeout=15)
        assert found, f"exited before listening:\n{self.output}"
        return found[0]

    async def finished(self, timeout: float = 15) -> int:
        """The exit status, once the process ended and its output was read."""
        async with asyncio.timeout(timeout):
            status = await self.proc.wait()
            await self.reader
        return status


@contextlib.asynccontextmanager
async def example(*args: str, env: dict[str, str] | None = None) -> AsyncIterator[Example]:
    """Run ``python *args``; SIGTERM at the end (what a deploy does), SIGKILL if stuck."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        *args,
        cwd=ROOT,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
    )
    running = Example(proc)
    try:
        yield running
    finally:
        if proc.returncode is None:
            proc.terminate()
        try:
            await running.finished(timeout=10)
        except TimeoutError:
            proc.kill()
            await proc.wait()
        running.reader.cancel()


async def run(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    """Run ``python *args`` to its end: (exit status, output)."""
    async with example(*args, env=env) as process:
        return await process.finished(), process.output


def recorder(room: Any) -> tuple[list[Message], list[PresenceChange]]:
    """Lists that fill with a client channel's messages and presence changes."""
    messages: list[Message] = []
    changes: list[PresenceChange] = []
    room.on("*", messages.append)
    room.presence.on_change(changes.append)
    return messages, changes


# -- jwt_auth.py ---------------------------------------------------------------------


async def refusal(url: str, **how: Any) -> HandshakeRefusedError:
    """The handshake refusal a client gets connecting with ``query=`` / ``headers=``."""
    with pytest.raises(HandshakeRefusedError) as refused:
        async with PondClient(url, reconnect=False, **how):
            pass
    return refused.value


async def test_jwt_auth_admits_valid_tokens_to_the_rooms_they_list() -> None:
    env = {"PONDSOCKET_JWT_SECRET": SECRET}
    status, minted = await run(
        "examples/jwt_auth.py", "--mint", "ann", "--rooms", "lobby,dev", env=env
    )
    assert status == 0, minted
    token = minted.strip()
    claims = jwt.decode(token, SECRET, algorithms=["HS256"])  # minted with the env's secret
    assert (claims["sub"], claims["rooms"]) == ("ann", ["lobby", "dev"])
    assert claims["exp"] > time.time() + 3000

    async with example("examples/jwt_auth.py", "--port", "0", env=env) as server:
        url = f"ws://127.0.0.1:{await server.port()}/socket"
        async with PondClient(url, query={"token": token}, reconnect=False) as client:
            lobby = client.channel("/room/lobby")
            messages, _ = recorder(lobby)
            await lobby.join()
            await support.eventually(
                lambda: lobby.presence.users == [{"user_id": "ann", "name": "ann"}]
            )
            await lobby.send("message", {"text": "hi"})
            await support.eventually(lambda: bool(messages), "the broadcast")
            assert messages[0].payload == {"from": "ann", "text": "hi"}  # the id from the claims
            with pytest.raises(JoinDeclinedError) as declined:
                await client.channel("/room/admin").join()
            assert declined.value.status == 403
            assert "does not allow room 'admin'" in declined.value.message

        bearer = {"Authorization": f"Bearer {token}"}
        async with PondClient(url, headers=bearer, reconnect=False) as client:
            await client.channel("/room/dev").join()

        client_args = ["examples/python_client.py", "--url", url, "--token", token, "--count", "1"]
        status, output = await run(*client_args)
        assert status == 0, output
        assert "message from ann: hello from ann" in output.splitlines(), output
        status, output = await run(*client_args, "--room", "admin")
        assert (status, output.strip()) == (
            1,
            "declined: 403 your token does not allow room 'admin'",
        )

        now = int(time.time())
        expired = jwt.encode({"sub": "ann", "exp": now - 60}, SECRET, algorithm="HS256")
        forged = jwt.encode({"sub": "ann", "exp": now + 60}, SECRET[::-1], algorithm="HS256")
        eternal = jwt.encode({"sub": "ann", "rooms": ["lobby"]}, SECRET, algorithm="HS256")
        unsigned = jwt.encode({"sub": "ann", "exp": now + 60}, "", algorithm="none")
        cases: list[tuple[dict[str, Any], str]] = [
            ({}, "missing token"),
            ({"headers": {"Authorization": "Basic YW5uOnB3"}}, "missing token"),
            ({"query": {"token": expired}}, "token expired"),
            ({"query": {"token": forged}}, "Signature verification failed"),
            ({"headers": {"Authorization": f"Bearer {eternal}"}}, '"exp"'),
            ({"query": {"token": unsigned}}, "invalid token"),
            ({"query": {"token": "not-a-jwt"}}, "invalid token"),
        ]
        for how, reason in cases:
            refused = await refusal(url, **how)
            assert refused.status == 401, (how, refused)
            assert reason in refused.body, (how, refused.body)


# -- fastapi_app.py ------------------------------------------------------------------


async def test_fastapi_app_serves_http_and_broadcasts_from_a_route() -> None:
    # `uvicorn --app-dir examples fastapi_app:app ...`, with this venv's uvicorn
    args = [
        "-m",
        "uvicorn",
        "--app-dir",
        "examples",
        "fastapi_app:app",
        "--ws",
        "websockets-sansio",
    ]
    async with example(*args, "--port", "0") as server:
        port = await server.port()
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as http:
            assert (await http.get("/rooms")).json() == {"rooms": {}}
            nobody = await http.post("/rooms/lobby/announce", json={"text": "hello?"})
            assert nobody.status_code == 404

            url = f"ws://127.0.0.1:{port}/ws/socket"  # the mount point, then the endpoint
            async with PondClient(url, query={"name": "ann"}, reconnect=False) as client:
                lobby = client.channel("/room/lobby")
                messages, _ = recorder(lobby)
                await lobby.join()
                assert (await lobby.request("ping", {"at": 7})).payload["at"] == 7
                rooms = (await http.get("/rooms")).json()
                assert rooms == {"rooms": {"/room/lobby": [{"name": "ann", "status": "online"}]}}

                sent = await http.post("/rooms/lobby/announce", json={"text": "maintenance"})
                assert sent.json() == {"room": "lobby", "recipients": 1}
                await support.eventually(lambda: bool(messages), "the announcement")
                assert (messages[0].event, messages[0].payload) == (
                    "announcement",
                    {"text": "maintenance"},
                )
                invalid = await http.post("/rooms/lobby/announce", json={"txt": "x"})
                assert invalid.status_code == 422  # FastAPI's validation of the body

            async def emptied() -> None:
                while (await http.get("/rooms")).json() != {"rooms": {}}:
                    await asyncio.sleep(0.05)

            async with asyncio.timeout(5):
                await emptied()  # the leave of a closed connection closed the room


# -- cluster_node.py -----------------------------------------------------------------


async def test_two_cluster_nodes_on_redis_share_broadcasts_and_presence() -> None:
    if not ping(6379):
        support.unavailable("no Redis answers on 127.0.0.1:6379", "Redis")
    node = ["examples/cluster_node.py", "--port", "0", "--namespace", f"ex{uuid.uuid4().hex[:10]}"]
    async with example(*node) as a, example(*node) as b:
        port_a, port_b = await asyncio.gather(a.port(), b.port())
        async with PondClient(f"ws://127.0.0.1:{port_a}/socket", query={"name": "ann"}) as ann:
            lobby = ann.channel("/room/lobby")
            messages, changes = recorder(lobby)
            await lobby.join()

            def heard(sender: str) -> bool:
                return any(m.event == "message" and m.payload["from"] == sender for m in messages)

            # bob, on node B, says hello and stays for two messages: his and ann's answer
            bob_url = f"ws://127.0.0.1:{port_b}/socket"
            client = [
                "examples/python_client.py",
                "--url",
                bob_url,
                "--name",
                "bob",
                "--count",
                "2",
            ]
            async with example(*client) as bob:
                await support.eventually(lambda: heard("bob"), "bob's message on node A")
                await lobby.send("message", {"text": "hi bob"})
                assert await bob.finished() == 0, bob.output
            await support.eventually(
                lambda: [(c.kind, c.changed["name"]) for c in changes][-1:] == [("LEAVE", "bob")],
                "bob's leave on node A",
            )

    assert ("JOIN", {"name": "bob", "status": "online"}) in [(c.kind, c.changed) for c in changes]
    assert "message from ann: hi bob" in bob.lines, bob.output  # node A's broadcast, on B
    assert any(line.startswith("presence: ann joined") for line in bob.lines), bob.output


# -- test_chat_app.py and python_client.py -------------------------------------------


@pytest.mark.parametrize("config", ["project", "plain"])
async def test_the_chat_app_tests_pass(config: str, tmp_path: Path) -> None:
    """As the README says (this project's pytest settings), and under a bare pytest
    configuration, as in a user's project without ``asyncio_mode = "auto"``."""
    settings = [] if config == "project" else ["-c", str(tmp_path / "pytest.ini")]
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    status, output = await run(
        "-m", "pytest", "-q", "-p", "no:cacheprovider", *settings, "examples/test_chat_app.py"
    )
    tests = (ROOT / "examples/test_chat_app.py").read_text().count("\nasync def test_")
    assert status == 0, output
    assert f"{tests} passed" in output, output


async def test_python_client_against_the_chat_app() -> None:
    async with example("examples/chat_app.py", "--port", "0") as server:
        url = f"ws://127.0.0.1:{await server.port()}/socket"
        client = ["examples/python_client.py", "--url", url]
        status, output = await run(*client, "--name", "bob", "--count", "1")
        assert status == 0, output
        lines = output.splitlines()
        assert lines[0] == "presence: bob joined (1 present)"
        assert lines[1] == "joined /room/lobby"
        assert re.fullmatch(r"pong after \d+\.\d ms", lines[2]), lines
        assert lines[3:] == ["message from bob: hello from bob", "bye"]

        status, output = await run(*client, "--name", "bob", "--room", "Lobby!")
        assert (status, output.strip()) == (
            1,
            "declined: 400 room names are 1-32 lowercase letters, digits or dashes",
        )
        status, output = await run(*client, "--name", "")
        assert status == 1 and "HTTP 400" in output and "a name of 1-32" in output, output
