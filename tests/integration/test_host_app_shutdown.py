"""``pond.asgi.uvicorn_server(app=host)``: a FastAPI app that mounts PondSocket, served by
uvicorn, still ends every SSE stream and WebSocket with 1001 on SIGTERM and stops (plain
``uvicorn host:app`` waits for ever for an open SSE response, and its sockets get 1012)."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time

import httpx
import orjson
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

APP = textwrap.dedent(
    """
    import sys
    from fastapi import FastAPI
    from pondsocket import PondSocket

    pond = PondSocket()
    endpoint = pond.create_endpoint("/socket", lambda ctx: ctx.accept())
    lobby = endpoint.create_channel("/room/:id", lambda ctx: ctx.accept())
    lobby.on_leave(lambda ctx: print("LEFT", flush=True))

    app = FastAPI(lifespan=pond.asgi.lifespan)
    app.mount("/ws", pond.asgi)

    @app.get("/hello")
    async def hello() -> dict[str, str]:
        return {"hello": "world"}

    pond.asgi.uvicorn_server(app=app, host="127.0.0.1", port=int(sys.argv[1])).run()
    print("STOPPED", flush=True)
    """
)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _wait_http(url: str) -> None:
    deadline = time.monotonic() + 15
    while True:
        try:
            httpx.get(url, timeout=1).raise_for_status()
            return
        except httpx.HTTPError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def test_sigterm_ends_streams_and_sockets_of_a_host_app_with_1001() -> None:
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-c", APP, str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _wait_http(f"http://127.0.0.1:{port}/hello")  # the host's own route
        ended = threading.Event()
        opened = threading.Event()

        def read_stream() -> None:
            headers = {"Accept": "text/event-stream"}
            url = f"http://127.0.0.1:{port}/ws/socket"
            with httpx.stream("GET", url, headers=headers, timeout=30) as reply:
                for line in reply.iter_lines():
                    if line.startswith("data:"):
                        opened.set()
            ended.set()

        threading.Thread(target=read_stream, daemon=True).start()
        with connect(f"ws://127.0.0.1:{port}/ws/socket") as ws:
            assert orjson.loads(ws.recv(timeout=5))["event"] == "CONNECTION"
            join = {
                "action": "JOIN_CHANNEL",
                "event": "JOIN_CHANNEL",
                "channelName": "/room/1",
                "requestId": "j1",
                "payload": {},
            }
            ws.send(orjson.dumps(join).decode())
            assert orjson.loads(ws.recv(timeout=5))["event"] == "ACKNOWLEDGE"
            assert opened.wait(5), "the SSE stream did not open"
            started = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            with pytest.raises(ConnectionClosed) as closed:
                while True:
                    ws.recv(timeout=10)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001
        assert ended.wait(10), "the SSE stream was not ended"
        out, err = proc.communicate(timeout=15)
        assert time.monotonic() - started < 8
        assert proc.returncode in (0, -signal.SIGTERM)
        # the leave handler ran (uvicorn's access log shares stdout)
        assert "LEFT" in out.splitlines() and "Traceback" not in out + err, (out, err)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
