"""``await pond.serve()`` inside the app's own event loop: SIGTERM is a graceful shutdown
(clients get 1001, leave handlers run), not a crash (1006, peers see no leave)."""

from __future__ import annotations

import asyncio
import signal
import sys
import textwrap

import orjson
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

APP = textwrap.dedent(
    """
    import asyncio, sys
    from pondsocket import PondSocket

    pond = PondSocket()
    endpoint = pond.create_endpoint("/socket", lambda ctx: ctx.accept())
    lobby = endpoint.create_channel("/room/:id", lambda ctx: ctx.accept())
    lobby.on_leave(lambda ctx: print("LEFT", ctx.reason, flush=True))

    async def main() -> None:
        ready = asyncio.get_running_loop().create_future()
        ready.add_done_callback(lambda f: print("PORT", f.result(), flush=True))
        await pond.serve("127.0.0.1", 0, ready=ready)
        print("SERVE RETURNED", flush=True)

    asyncio.run(main())
    """
)


async def _line(stream: asyncio.StreamReader) -> str:
    async with asyncio.timeout(10):
        return (await stream.readline()).decode().strip()


async def test_sigterm_shuts_an_app_run_serve_down_gracefully() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", APP, stdout=asyncio.subprocess.PIPE
    )
    assert proc.stdout is not None
    try:
        port = int((await _line(proc.stdout)).split()[1])
        async with connect(f"ws://127.0.0.1:{port}/socket") as ws:
            await ws.recv()  # CONNECTION
            join = {
                "action": "JOIN_CHANNEL",
                "event": "JOIN_CHANNEL",
                "channelName": "/room/1",
                "requestId": "j1",
                "payload": {},
            }
            await ws.send(orjson.dumps(join).decode())
            assert orjson.loads(await ws.recv())["event"] == "ACKNOWLEDGE"
            proc.send_signal(signal.SIGTERM)
            async with asyncio.timeout(10):
                try:
                    while True:
                        await ws.recv()
                except ConnectionClosed:
                    pass
            assert ws.close_code == 1001
        assert await _line(proc.stdout) == "LEFT connection_closed"
        assert await _line(proc.stdout) == "SERVE RETURNED"
        async with asyncio.timeout(10):
            assert await proc.wait() == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
