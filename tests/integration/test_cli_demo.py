"""The demo chat (through the in-process test client) and the ``pondsocket`` command."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import textwrap
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.exceptions import InvalidMessage
from websockets.sync.client import ClientConnection
from websockets.sync.client import connect as ws_connect

from pondsocket import PondSocket, __version__
from pondsocket.cli import main
from pondsocket.demo import DEMO_PAGE, create_demo
from pondsocket.testing import ConnectionDeclined, TestClient, TestConnection
from pondsocket.transports import standalone

ROOM = "/room/lobby"


# -- the demo app ------------------------------------------------------------------


async def connect(pond: PondSocket, username: str | None = None) -> TestConnection:
    query = "" if username is None else f"username={username}"
    return await TestClient(pond).connect("/socket", query=query)


async def joined(pond: PondSocket, username: str, room: str = ROOM) -> TestConnection:
    conn = await connect(pond, username)
    ack = await conn.join(room)
    assert (ack["action"], ack["event"]) == ("SYSTEM", "ACKNOWLEDGE")
    conn.take()
    return conn


def events(conn: TestConnection, event: str) -> list[dict[str, Any]]:
    return [f["payload"] for f in conn.take() if f["event"] == event]


async def settle() -> None:
    for _ in range(5):  # leave handlers run as tasks
        await asyncio.sleep(0)


async def test_username_is_sanitised_into_the_assigns() -> None:
    pond = create_demo()
    conn = await connect(pond, "%20%20Al%3Cb%3Ei%26ce%20%20%20Smith!%20")
    assert conn.context.assigns == {"username": "Albice Smith"}


async def test_missing_username_gets_a_guest_name() -> None:
    pond = create_demo()
    for query in (None, "", "%3C%3E"):
        conn = await connect(pond, query)
        name = conn.context.assigns["username"]
        assert name.startswith("guest-") and len(name) == len("guest-1234")
        assert name[6:].isdigit()


async def test_a_username_over_32_characters_is_declined() -> None:
    pond = create_demo()
    await connect(pond, "x" * 32)
    with pytest.raises(ConnectionDeclined) as declined:
        await connect(pond, "x" * 33)
    assert declined.value.status == 400
    assert "at most 32 characters" in declined.value.message


async def test_join_tracks_presence() -> None:
    pond = create_demo()
    alice = await connect(pond, "alice")
    ack = await alice.join(ROOM)
    assert (ack["action"], ack["event"]) == ("SYSTEM", "ACKNOWLEDGE")
    bob = await connect(pond, "bob")
    await bob.join(ROOM)
    presence = [f for f in alice.frames if f["action"] == "PRESENCE"]
    assert [f["event"] for f in presence] == ["JOIN", "JOIN"]
    assert presence[-1]["payload"]["changed"] == {"username": "bob", "status": "online"}
    assert sorted(p["username"] for p in presence[-1]["payload"]["presence"]) == ["alice", "bob"]


async def test_message_is_broadcast_to_the_room() -> None:
    pond = create_demo()
    alice, bob = await joined(pond, "alice"), await joined(pond, "bob")
    before = int(time.time() * 1000)
    await alice.send(ROOM, "message", {"text": "hello"})
    await settle()  # stored in the room's history first
    for conn in (alice, bob):
        (payload,) = events(conn, "message")
        assert payload["username"] == "alice" and payload["text"] == "hello"
        assert payload["from"] == alice.id  # what the page marks as its own
        assert before <= payload["at"] <= int(time.time() * 1000)


async def test_welcome_tells_the_page_its_user_id_name_and_node() -> None:
    pond = create_demo()
    conn = await connect(pond, "Al%3Ci%3Ece")
    (welcome,) = [f for f in conn.frames if f["event"] == "welcome"]
    assert (welcome["action"], welcome["channelName"]) == ("BROADCAST", "ENDPOINT")
    assert welcome["payload"] == {
        "userId": conn.id,
        "username": "Alice",  # as the server keeps it: sanitised
        "node": pond.cluster.node_id,
    }


async def test_a_name_present_in_the_room_is_refused() -> None:
    """Names are distinct in a room (compared without case): the second "alice" is
    refused with 409 and a message the page shows; another room, or the same room once
    alice has left, takes the name."""
    pond = create_demo()
    alice = await joined(pond, "alice")
    twin = await connect(pond, "ALICE")
    refused = await twin.join(ROOM)
    assert (refused["action"], refused["event"]) == ("SYSTEM", "UNAUTHORIZED")
    assert refused["payload"]["status"] == 409
    assert refused["payload"]["message"] == "the name ALICE is taken in this room: pick another"
    assert [f for f in alice.take() if f["action"] == "PRESENCE"] == []  # nobody joined
    other = await twin.join("/room/other")
    assert (other["action"], other["event"]) == ("SYSTEM", "ACKNOWLEDGE")
    await alice.leave(ROOM)
    await settle()
    again = await twin.join(ROOM)
    assert (again["action"], again["event"]) == ("SYSTEM", "ACKNOWLEDGE")


@pytest.mark.parametrize("payload", [{"text": ""}, {"text": "   "}, {"text": "x" * 2001}, {}])
async def test_empty_or_too_long_text_is_refused(payload: dict[str, Any]) -> None:
    pond = create_demo()
    alice, bob = await joined(pond, "alice"), await joined(pond, "bob")
    answer = await alice.request(ROOM, "message", payload)
    assert (answer["action"], answer["event"]) == ("ERROR", "HANDLER_ERROR")
    assert answer["payload"]["status"] == 400
    assert events(bob, "message") == []


async def test_history_replies_with_the_last_50_messages() -> None:
    pond = create_demo()
    alice = await joined(pond, "alice")
    await alice.send(ROOM, "message", {"text": "x" * 2000})  # the longest allowed
    for n in range(60):
        await alice.send(ROOM, "message", {"text": f"m{n}"})
    await settle()
    reply = await alice.request(ROOM, "history")
    assert (reply["action"], reply["event"]) == ("SYSTEM", "history")
    messages = reply["payload"]["messages"]
    assert [m["text"] for m in messages] == [f"m{n}" for n in range(10, 60)]
    assert all(m["username"] == "alice" for m in messages)


async def test_history_is_per_room_and_outlives_an_empty_room() -> None:
    pond = create_demo()
    alice = await joined(pond, "alice")
    other = await joined(pond, "bob", "/room/other")
    await alice.send(ROOM, "message", {"text": "hi"})
    await settle()
    assert (await other.request("/room/other", "history"))["payload"] == {"messages": []}
    await alice.leave(ROOM)
    await settle()
    carol = await joined(pond, "carol")
    reply = await carol.request(ROOM, "history")
    assert [m["text"] for m in reply["payload"]["messages"]] == ["hi"]


async def test_typing_goes_to_everyone_but_the_typist() -> None:
    pond = create_demo()
    alice, bob, carol = [await joined(pond, name) for name in ("alice", "bob", "carol")]
    await alice.send(ROOM, "typing", {"typing": True})
    assert events(alice, "typing") == []
    for conn in (bob, carol):
        assert events(conn, "typing") == [{"username": "alice", "typing": True}]
    await alice.send(ROOM, "typing", {"typing": False})
    assert events(bob, "typing") == [{"username": "alice", "typing": False}]


async def test_status_updates_presence() -> None:
    pond = create_demo()
    alice, bob = await joined(pond, "alice"), await joined(pond, "bob")
    await alice.send(ROOM, "status", {"status": "away"})
    (update,) = [f for f in bob.take() if f["action"] == "PRESENCE"]
    assert update["event"] == "UPDATE"
    assert {"username": "alice", "status": "away"} in update["payload"]["presence"]
    refused = await alice.request(ROOM, "status", {"status": "asleep"})
    assert (refused["event"], refused["payload"]["status"]) == ("HANDLER_ERROR", 400)


def test_demo_page_is_self_contained() -> None:
    page = DEMO_PAGE.decode()
    assert page.startswith("<!doctype html>")
    assert "location.host" in page and "/socket" in page
    assert "http://" not in page and "https://" not in page  # nothing fetched from elsewhere


# -- the command line ------------------------------------------------------------


@pytest.fixture
def app_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A directory holding ``chatapp.py``, made the current directory; cleaned from
    ``sys.path``/``sys.modules`` afterwards."""
    (tmp_path / "chatapp.py").write_text(
        textwrap.dedent(
            """
            from pondsocket import PondSocket

            pond = PondSocket()
            pond.create_endpoint("/ws", lambda ctx: ctx.accept())
            number = 42

            def factory():
                return pond

            def needs_args(name):
                return pond

            def wrong():
                return "nope"
            """
        )
    )
    (tmp_path / "brokenapp.py").write_text("import no_such_dependency_xyz\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    yield tmp_path
    for name in ("chatapp", "brokenapp"):
        sys.modules.pop(name, None)


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("nope", "must have the form module:attribute"),
        ("chatapp:", "must have the form module:attribute"),
        (":pond", "must have the form module:attribute"),
        ("no_such_module_xyz:pond", "cannot import module 'no_such_module_xyz'"),
        ("no_such_package_xyz.sub:pond", "cannot import module 'no_such_package_xyz.sub'"),
        ("brokenapp:pond", "importing 'brokenapp' failed: No module named 'no_such_dependency"),
        ("chatapp:missing", "module 'chatapp' has no attribute 'missing'"),
        ("chatapp:number", "'chatapp:number' is a int, not a PondSocket"),
        ("chatapp:wrong", "chatapp:wrong() returned a str, not a PondSocket"),
        ("chatapp:needs_args", "needs arguments"),
    ],
)
def test_serve_reports_a_bad_target_in_one_line(
    app_dir: Path, capsys: pytest.CaptureFixture[str], target: str, message: str
) -> None:
    assert main(["serve", target]) == 2
    err = capsys.readouterr().err
    assert message in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_load_target_accepts_an_instance_or_a_factory(app_dir: Path) -> None:
    from pondsocket.cli import load_target

    pond = load_target("chatapp:pond")
    assert isinstance(pond, PondSocket)
    assert load_target("chatapp:factory") is pond


@pytest.fixture
def runs(monkeypatch: pytest.MonkeyPatch) -> list[tuple[PondSocket, str, int, dict[str, Any]]]:
    """Replace the blocking standalone ``run`` (what ``PondSocket.run`` and the command
    line call) with a recorder of its calls."""
    calls: list[tuple[PondSocket, str, int, dict[str, Any]]] = []

    def run(pond: PondSocket, host: str, port: int, **kwargs: Any) -> None:
        calls.append((pond, host, port, kwargs))

    monkeypatch.setattr(standalone, "run", run)
    return calls


def test_serve_passes_host_port_and_options(app_dir: Path, runs: list[Any]) -> None:
    argv = ["serve", "chatapp:factory", "--host", "0.0.0.0", "--port", "9001"]
    assert main([*argv, "--max-message-size", "2048", "--ping-interval", "0"]) == 0
    ((pond, host, port, kwargs),) = runs
    assert (host, port, kwargs) == ("0.0.0.0", 9001, {"tune_gc": True})
    assert (pond.options.max_message_size, pond.options.ping_interval) == (2048, None)
    assert all(endpoint.options is pond.options for endpoint in pond.endpoints)
    assert main(["serve", "chatapp:factory", "--no-gc-tuning"]) == 0
    assert runs[1][3] == {"tune_gc": False}


def test_allowed_origins_from_the_command_line(
    app_dir: Path, runs: list[Any], capsys: pytest.CaptureFixture[str]
) -> None:
    origins = ["--allowed-origin", "https://app.example", "--allowed-origin", "https://*.b.example"]
    assert main(["serve", "chatapp:factory", *origins]) == 0
    pond = runs[0][0]
    assert pond.options.allowed_origins == ("https://app.example", "https://*.b.example")
    assert main(["serve", "chatapp:factory", "--allowed-origin", "app.example"]) == 2
    assert "allowed_origins entry 'app.example' is not an origin" in capsys.readouterr().err


def test_demo_serves_the_page_at_the_root(
    runs: list[Any], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["demo", "--port", "9002", "--ping-interval", "5"]) == 0
    ((pond, host, port, kwargs),) = runs
    assert (host, port, pond.options.ping_interval) == ("127.0.0.1", 9002, 5.0)
    on_ready = kwargs.pop("on_ready")
    assert kwargs == {
        "tune_gc": True,
        "http_routes": {"/": ("text/html; charset=utf-8", DEMO_PAGE)},
    }
    assert capsys.readouterr().out == ""  # nothing before the port is bound
    on_ready(9002)
    assert capsys.readouterr().out == (
        f"PondSocket demo chat (node {pond.cluster.node_id}): open http://127.0.0.1:9002/"
        " in two browser tabs\n"
    )


@pytest.mark.parametrize(
    ("host", "shown"),
    [("0.0.0.0", "localhost"), ("::", "localhost"), ("::1", "[::1]"), ("10.1.2.3", "10.1.2.3")],
)
def test_demo_prints_an_address_a_browser_can_open(
    runs: list[Any], capsys: pytest.CaptureFixture[str], host: str, shown: str
) -> None:
    assert main(["demo", "--host", host, "--port", "9003"]) == 0
    runs[0][3]["on_ready"](9003)
    assert f"open http://{shown}:9003/ in two browser tabs" in capsys.readouterr().out


def test_bad_options_are_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--port", "70000"]) == 2
    assert "invalid port" in capsys.readouterr().err
    assert main(["demo", "--max-message-size", "0"]) == 2
    assert main(["serve"]) == 2
    assert main([]) == 2


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"pondsocket {__version__}"


def test_asgi_without_uvicorn_says_what_to_install(
    app_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "uvicorn", None)  # makes ``import uvicorn`` fail
    assert main(["serve", "chatapp:pond", "--asgi"]) == 2
    assert "install pondsocket-cluster[asgi]" in capsys.readouterr().err


def test_bench_without_its_package_says_how_to_install_it(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # the benchmarks are a distribution of their own (benchmarks/), not in the library's wheel
    monkeypatch.setitem(sys.modules, "pondsocket_bench", None)  # makes the import fail
    assert main(["bench", "fanout"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "pip install -e ./benchmarks" in err


@pytest.mark.parametrize(("flags", "tuned"), [([], 1), (["--no-gc-tuning"], 0)])
def test_asgi_serve_tunes_gc_unless_told_not_to(
    app_dir: Path, monkeypatch: pytest.MonkeyPatch, flags: list[str], tuned: int
) -> None:
    import uvicorn

    import pondsocket.cli.serve

    calls: list[str] = []
    monkeypatch.setattr(pondsocket.cli.serve, "tune_gc", lambda: calls.append("tune_gc"))
    monkeypatch.setattr(uvicorn.Server, "run", lambda self, **kwargs: calls.append("uvicorn"))
    assert main(["serve", "chatapp:pond", "--asgi", *flags]) == 0
    assert calls == ["tune_gc"] * tuned + ["uvicorn"]


# -- real processes ----------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """``python -m pondsocket ARGS`` in a subprocess, output captured to a file."""

    def __init__(self, args: list[str], cwd: Path, log: Path) -> None:
        self.port = free_port()
        self.log = log
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        with log.open("wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "pondsocket", *args, "--port", str(self.port)],
                cwd=cwd,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    @property
    def output(self) -> str:
        return self.log.read_text()

    def wait_listening(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"server exited with {self.proc.returncode}:\n{self.output}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)
        pytest.fail(f"server did not listen within {timeout}s:\n{self.output}")

    def interrupt(self, timeout: float = 10.0) -> int:
        """SIGINT, like Ctrl+C; returns the exit status."""
        self.proc.send_signal(signal.SIGINT)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            pytest.fail(f"server did not stop within {timeout}s of SIGINT:\n{self.output}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Any]:
    servers: list[Server] = []

    def start(*args: str, cwd: Path = tmp_path) -> Server:
        server = Server(list(args), cwd, tmp_path / f"server{len(servers)}.log")
        servers.append(server)
        server.wait_listening()
        return server

    yield start
    for server in servers:
        server.stop()


def receive(ws: ClientConnection) -> dict[str, Any]:
    frame: dict[str, Any] = json.loads(ws.recv(timeout=5))
    return frame


def send(ws: ClientConnection, action: str, channel: str, event: str) -> str:
    request_id = f"req-{time.monotonic_ns()}"
    message = {
        "action": action,
        "event": event,
        "channelName": channel,
        "requestId": request_id,
        "payload": {},
    }
    ws.send(json.dumps(message))
    return request_id


def test_demo_command_serves_page_and_chat(spawn: Any) -> None:
    server = spawn("demo")
    base = f"http://127.0.0.1:{server.port}"
    with urllib.request.urlopen(f"{base}/", timeout=5) as response:
        assert response.status == 200
        assert response.headers["Content-Type"] == "text/html; charset=utf-8"
        assert response.read() == DEMO_PAGE
    with ws_connect(f"ws://127.0.0.1:{server.port}/socket?username=tester") as ws:
        hello = receive(ws)
        assert (hello["action"], hello["event"]) == ("CONNECT", "CONNECTION")
        welcome = receive(ws)
        assert (welcome["event"], welcome["payload"]["userId"]) == (
            "welcome",
            hello["payload"]["connectionId"],
        )
        join_id = send(ws, "JOIN_CHANNEL", ROOM, "JOIN_CHANNEL")
        ack = receive(ws)
        assert (ack["action"], ack["event"], ack["channelName"]) == ("SYSTEM", "ACKNOWLEDGE", ROOM)
        assert ack["requestId"] == join_id
        presence = receive(ws)
        assert presence["payload"]["presence"] == [{"username": "tester", "status": "online"}]
        assert server.interrupt() == 0
    output = server.output
    node = welcome["payload"]["node"]
    line = f"PondSocket demo chat (node {node}): open http://127.0.0.1:{server.port}/ in two"
    assert line in output
    assert "Traceback" not in output


def _demo_process(*args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "-m", "pondsocket", "demo", *args]
    return subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def test_demo_prints_its_address_once_listening() -> None:
    """With ``--port 0`` the port exists only once bound: the printed address has it."""
    process = _demo_process("--port", "0")
    try:
        assert process.stdout is not None
        line = process.stdout.readline()  # the only stdout line; the logs go to stderr
        prefix = "PondSocket demo chat (node "
        assert line.startswith(prefix) and line.endswith(" in two browser tabs\n"), line
        url = line.split("open ", 1)[1].split(" ", 1)[0]
        assert url.startswith("http://127.0.0.1:") and url.endswith("/")
        assert int(url.rsplit(":", 1)[1].rstrip("/")) > 0
        with urllib.request.urlopen(url, timeout=5) as page:
            assert page.read() == DEMO_PAGE
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0 and out == "" and "Traceback" not in err


def test_demo_on_a_port_in_use_says_so_in_one_line() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        process = _demo_process("--port", str(port))
        out, err = process.communicate(timeout=20)
    assert process.returncode == 1
    assert out == ""  # no address printed: nothing listens there
    (line,) = err.strip().splitlines()
    assert line.startswith(f"pondsocket: error: cannot serve on 127.0.0.1:{port}: ")
    assert "address already in use" in line


def test_demo_with_an_unreachable_broker_says_so_in_one_line() -> None:
    process = _demo_process("--port", "0", "--redis", "redis://127.0.0.1:1/0")
    out, err = process.communicate(timeout=30)
    assert process.returncode == 1 and out == ""
    (line,) = err.strip().splitlines()
    assert line.startswith("pondsocket: error: cannot start: the broker is unreachable: "), line


def _join(ws: ClientConnection) -> str:
    """Join the lobby; returns this socket's user id (from ``welcome``)."""
    assert receive(ws)["event"] == "CONNECTION"
    welcome = receive(ws)
    assert welcome["event"] == "welcome"
    request_id = send(ws, "JOIN_CHANNEL", ROOM, "JOIN_CHANNEL")
    ack = receive(ws)
    assert (ack["event"], ack["requestId"]) == ("ACKNOWLEDGE", request_id), ack
    user_id: str = welcome["payload"]["userId"]
    return user_id


def _refused(url: str, name: str) -> dict[str, Any]:
    with ws_connect(f"{url}/socket?username={name}") as ws:
        receive(ws)  # CONNECTION
        receive(ws)  # welcome
        request_id = send(ws, "JOIN_CHANNEL", ROOM, "JOIN_CHANNEL")
        frame = receive(ws)
        assert frame["requestId"] == request_id
        return frame


def test_two_demos_on_one_redis_form_a_cluster(spawn: Any) -> None:
    """``pondsocket demo --redis URL`` and ``--pubsub URL`` on two ports, one namespace:
    a message sent on one node reaches a client of the other, names are distinct across
    the nodes, and each page is told its own node."""
    from tests.redis.servers import ping
    from tests.support import unavailable

    if not ping(6379):
        unavailable("no Redis answers on 127.0.0.1:6379", "Redis")
    namespace = f"demo-{os.getpid()}-{time.monotonic_ns()}"
    redis = "redis://127.0.0.1:6379/0"
    first = spawn("demo", "--redis", redis, "--namespace", namespace)
    second = spawn("demo", "--pubsub", redis, "--namespace", namespace)
    one, two = (f"ws://127.0.0.1:{server.port}" for server in (first, second))
    with ws_connect(f"{one}/socket?username=ann") as ann:
        ann_id = _join(ann)
        # The room's first member on node 2 is checked against node 1's members too.
        refused = _refused(two, "ANN")
        assert (refused["event"], refused["payload"]["status"]) == ("UNAUTHORIZED", 409)
        with ws_connect(f"{two}/socket?username=bob") as bob:
            bob_id = _join(bob)
            assert _presence_names(ann, 2.0) == ["ann", "bob"]
            bob.send(
                json.dumps(
                    {
                        "action": "BROADCAST",
                        "event": "message",
                        "channelName": ROOM,
                        "requestId": "m1",
                        "payload": {"text": "hi from node 2"},
                    }
                )
            )
            frame = receive(ann)
            while frame["event"] != "message":
                frame = receive(ann)
            assert frame["payload"]["text"] == "hi from node 2"
            assert (frame["payload"]["username"], frame["payload"]["from"]) == ("bob", bob_id)
            assert bob_id != ann_id
    nodes = []
    for server in (first, second):
        assert server.interrupt() == 0
        assert "Traceback" not in server.output
        line = next(x for x in server.output.splitlines() if "PondSocket demo chat" in x)
        assert f"of cluster pondsocket:{namespace}): open http://127.0.0.1:{server.port}/" in line
        nodes.append(line.split("(node ", 1)[1].split(" ", 1)[0])
    assert nodes[0] != nodes[1]


APP = """
from pondsocket import PondSocket

pond = PondSocket()

@pond.create_endpoint("/ws")
def connect(ctx):
    ctx.accept({"name": ctx.query.get("name", "anon")})
"""


@pytest.mark.parametrize("asgi", [False, True], ids=["standalone", "asgi"])
def test_serve_command_runs_a_module_of_the_current_directory(
    spawn: Any, tmp_path: Path, asgi: bool
) -> None:
    if asgi:
        pytest.importorskip("uvicorn")
    (tmp_path / "myapp.py").write_text(APP)
    server = spawn("serve", "myapp:pond", *(["--asgi"] if asgi else []), cwd=tmp_path)
    with ws_connect(f"ws://127.0.0.1:{server.port}/ws?name=x") as ws:
        hello = receive(ws)
        assert (hello["action"], hello["event"]) == ("CONNECT", "CONNECTION")
        assert hello["payload"]["connectionId"]
    assert server.interrupt() == 0
    assert "Traceback" not in server.output


@pytest.mark.parametrize(
    ("asgi", "option", "url"),
    [
        (False, "--redis", "redis://127.0.0.1:6379/0"),
        (True, "--redis", "redis://127.0.0.1:6379/0"),
        (False, "--pubsub", "nats://127.0.0.1:4222"),
        (False, "--pubsub", "amqp://guest:guest@127.0.0.1/"),
    ],
    ids=["redis-standalone", "redis-asgi", "nats", "rabbitmq"],
)
def test_serve_with_a_broker_joins_a_cluster(spawn: Any, asgi: bool, option: str, url: str) -> None:
    """Two ``pondsocket serve --pubsub/--redis`` processes: a message sent on one reaches
    the other (the brokers run on this machine; CI starts them)."""
    namespace = f"cli-{os.getpid()}-{time.monotonic_ns()}"
    args = ["serve", "pondsocket.demo.app:create_demo", *(["--asgi"] if asgi else [])]
    cluster = [option, url, "--namespace", namespace]
    first, second = spawn(*args, *cluster), spawn(*args, *cluster)
    with (
        ws_connect(f"ws://127.0.0.1:{first.port}/socket?username=ann") as ann,
        ws_connect(f"ws://127.0.0.1:{second.port}/socket?username=bob") as bob,
    ):
        for ws in (ann, bob):
            receive(ws)  # CONNECTION
            send(ws, "JOIN_CHANNEL", ROOM, "JOIN_CHANNEL")
        # ann sees bob join through the other node: the presence list spans both.
        deadline = time.monotonic() + 10
        names: list[str] = []
        while sorted(names) != ["ann", "bob"] and time.monotonic() < deadline:
            frame = receive(ann)
            if frame["action"] == "PRESENCE":
                names = [p["username"] for p in frame["payload"]["presence"]]
        assert sorted(names) == ["ann", "bob"]
        message = {
            "action": "BROADCAST",
            "event": "message",
            "channelName": ROOM,
            "requestId": "m1",
            "payload": {"text": "hi from node 2"},
        }
        bob.send(json.dumps(message))
        while True:
            frame = receive(ann)
            if frame["event"] == "message":
                break
        assert frame["payload"]["text"] == "hi from node 2"
        assert frame["payload"]["username"] == "bob"
    for server in (first, second):
        assert server.interrupt() == 0
        assert "Traceback" not in server.output
        assert "joined cluster pondsocket:" + namespace in server.output


def _presence_names(ws: Any, wait: float) -> list[str]:
    """The last presence list ``ws`` gets within ``wait`` seconds."""
    names: list[str] = []
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        try:
            raw = ws.recv(timeout=max(0.05, deadline - time.monotonic()))
        except TimeoutError:
            break
        frame = json.loads(raw)
        if frame["action"] == "PRESENCE":
            names = sorted(p["username"] for p in frame["payload"]["presence"])
    return names


def test_cluster_secret_file_signs_the_cluster(spawn: Any, tmp_path: Path) -> None:
    """Nodes started with the same ``--cluster-secret-file`` form a cluster; a node without
    it is not believed (its unsigned envelopes are dropped)."""
    secret = tmp_path / "cluster.key"
    secret.write_text("# rotated 2026-12\nfirst-key-of-the-cli-test-cluster\n")
    namespace = f"cli-signed-{os.getpid()}-{time.monotonic_ns()}"
    base = ["serve", "pondsocket.demo.app:create_demo", "--redis", "redis://127.0.0.1:6379/0"]
    base += ["--namespace", namespace]
    signed = [spawn(*base, "--cluster-secret-file", str(secret)) for _ in range(2)]
    outsider = spawn(*base)
    with (
        ws_connect(f"ws://127.0.0.1:{signed[0].port}/socket?username=ann") as ann,
        ws_connect(f"ws://127.0.0.1:{signed[1].port}/socket?username=bob") as bob,
        ws_connect(f"ws://127.0.0.1:{outsider.port}/socket?username=eve") as eve,
    ):
        for ws in (ann, bob, eve):
            receive(ws)  # CONNECTION
            send(ws, "JOIN_CHANNEL", ROOM, "JOIN_CHANNEL")
        assert _presence_names(ann, 3.0) == ["ann", "bob"]
    for server in (*signed, outsider):
        assert server.interrupt() == 0
        assert "Traceback" not in server.output
    assert "dropped an envelope" in signed[0].output and "unsigned" in signed[0].output


def test_a_bad_cluster_secret_file_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    weak = tmp_path / "weak.key"
    weak.write_text("short\n")
    command = ["serve", "pondsocket.demo.app:create_demo", "--redis", "redis://127.0.0.1:6379"]
    for path in (weak, tmp_path / "missing.key"):
        code = main([*command, "--cluster-secret-file", str(path)])
        assert code == 2
        err = capsys.readouterr().err
        assert err.startswith("pondsocket: error: ") and len(err.strip().splitlines()) == 1


# -- TLS -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (openssl, as on any server)."""
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    request = ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2"]
    subject = ["-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1"]
    files = ["-keyout", str(key), "-out", str(cert)]
    subprocess.run([*request, *subject, *files], check=True, capture_output=True)
    return cert, key


def _trusting(cert: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(cert))
    return context


@pytest.mark.parametrize("asgi", [False, True], ids=["standalone", "asgi"])
def test_serve_over_tls(spawn: Any, certificate: tuple[Path, Path], asgi: bool) -> None:
    cert, key = certificate
    args = ["serve", "pondsocket.demo.app:create_demo", "--certfile", str(cert)]
    server = spawn(*args, "--keyfile", str(key), *(["--asgi"] if asgi else []))
    url = f"wss://127.0.0.1:{server.port}/socket?username=ann"
    with ws_connect(url, ssl=_trusting(cert)) as ws:
        assert receive(ws)["event"] == "CONNECTION"
        assert receive(ws)["event"] == "welcome"
        request_id = send(ws, "JOIN_CHANNEL", ROOM, "JOIN_CHANNEL")
        assert receive(ws)["requestId"] == request_id  # joined, over TLS
    # Plain ws:// to the TLS port is no WebSocket: the upgrade fails.
    with (
        pytest.raises((OSError, InvalidMessage)),
        ws_connect(f"ws://127.0.0.1:{server.port}/socket", open_timeout=3),
    ):
        pass
    assert server.interrupt() == 0
    if not asgi:
        assert f"listening on wss://127.0.0.1:{server.port}" in server.output


def test_demo_over_tls_serves_the_page_over_https(
    spawn: Any, certificate: tuple[Path, Path]
) -> None:
    cert, key = certificate
    server = spawn("demo", "--certfile", str(cert), "--keyfile", str(key))
    page = urllib.request.urlopen(
        f"https://127.0.0.1:{server.port}/", context=_trusting(cert), timeout=5
    )
    assert page.status == 200 and b"<html" in page.read().lower()
    assert f"https://127.0.0.1:{server.port}/" in server.output
    assert server.interrupt() == 0


def test_tls_options_are_checked_before_serving(
    certificate: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cert, key = certificate
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    command = ["serve", "pondsocket.demo.app:create_demo"]
    cases = [
        ["--certfile", str(cert)],
        ["--keyfile", str(key)],
        ["--certfile", str(tmp_path / "missing.pem"), "--keyfile", str(key)],
        ["--certfile", str(garbage), "--keyfile", str(key)],
        ["--certfile", str(key), "--keyfile", str(cert)],
    ]
    for flags in cases:
        assert main([*command, *flags]) == 2, flags
        err = capsys.readouterr().err
        assert err.startswith("pondsocket: error: ") and len(err.strip().splitlines()) == 1, err


def test_asgi_sigterm_closes_sse_streams_and_sockets_with_1001(spawn: Any) -> None:
    """uvicorn alone waited for ever for an open SSE response on SIGTERM (the app's
    shutdown never ran), and its WebSocket clients got 1012: the server now closes every
    stream and socket itself first (1001), then uvicorn stops."""
    import threading

    import httpx
    from websockets.exceptions import ConnectionClosed

    server = spawn("serve", "pondsocket.demo.app:create_demo", "--asgi")
    base = f"127.0.0.1:{server.port}/socket?username="
    ended = threading.Event()
    first_event: list[str] = []

    def read_stream() -> None:
        headers = {"Accept": "text/event-stream"}
        with httpx.stream("GET", f"http://{base}sse", headers=headers, timeout=30) as reply:
            for line in reply.iter_lines():
                if line.startswith("data:") and not first_event:
                    first_event.append(line)
        ended.set()

    reader = threading.Thread(target=read_stream, daemon=True)
    reader.start()
    with ws_connect(f"ws://{base}ann") as ws:
        assert receive(ws)["event"] == "CONNECTION"
        deadline = time.monotonic() + 5
        while not first_event and time.monotonic() < deadline:
            time.sleep(0.05)
        assert first_event, "the SSE stream did not open"
        started = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                ws.recv(timeout=10)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001
    assert ended.wait(10), "the SSE stream was not ended"
    # uvicorn re-raises the SIGTERM it caught once it has stopped: killed by it, cleanly
    assert server.proc.wait(15) in (0, -signal.SIGTERM)
    assert time.monotonic() - started < 8
    assert "Traceback" not in server.output


def test_redis_flag_takes_only_redis_urls(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "pondsocket.demo.app:create_demo", "--redis", "nats://x:4222"]) == 2
    err = capsys.readouterr().err
    assert "--redis takes a redis:// URL" in err and "--pubsub" in err


def test_the_listening_line_names_transport_bus_and_node(spawn: Any) -> None:
    server = spawn("serve", "pondsocket.demo.app:create_demo")
    assert server.interrupt() == 0
    line = next(x for x in server.output.splitlines() if "listening on" in x)
    assert f"ws://127.0.0.1:{server.port}" in line
    assert "standalone" in line and "pubsub: InMemoryPubSub" in line and "node " in line
