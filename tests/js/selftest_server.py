"""A tiny FAKE PondSocket server, used ONLY to self-check the JS-client harness.

This is not our server and not a reference for the protocol: it speaks just enough of it
(/work/shared/spec/docs/protocol.md, Appendix A) for ``tests/js/selftest.py`` to prove that
``tests/js/driver.mjs`` + ``tests/jsclient.py`` can drive the real npm client without depending
on the pondsocket package. The real tests run the same harness against our real server. It is
deliberately not part of the pytest suite.

Behaviour:
  * on connect: the CONNECT/CONNECTION frame (connection ids c1, c2, ...);
  * JOIN_CHANNEL to a channel starting with ``/deny``: an ERROR/UNAUTHORIZED decline;
  * JOIN_CHANNEL to a channel starting with ``/silent``: no answer at all;
  * any other JOIN_CHANNEL: SYSTEM/ACKNOWLEDGE, then a PRESENCE/JOIN frame;
  * BROADCAST: a SYSTEM frame echoing the event, requestId and payload, except
      - event ``batch``: one WebSocket message holding two ``\\n``-separated frames,
      - event ``bad-frame``: one WebSocket message holding an invalid frame (payload null)
        followed by a valid ``after-bad`` frame (shows what the client does with bad frames);
  * LEAVE_CHANNEL and ``{"action":"ping"}``: recorded, no answer.

Run standalone with ``python tests/js/selftest_server.py --port 8765`` (path ``/`` or any).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed


def frame(action: str, event: str, channel: str, request_id: str, payload: Any) -> str:
    return json.dumps(
        {
            "action": action,
            "event": event,
            "channelName": channel,
            "requestId": request_id,
            "payload": payload,
        }
    )


@dataclass
class ClosedConnection:
    connection_id: str
    code: int | None
    close_frame_received: bool


@dataclass
class FakeServer:
    received: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    closed: list[ClosedConnection] = field(default_factory=list)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _server: Server | None = None

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        self._server = await serve(self._handle, host, port)
        sockname = next(iter(self._server.sockets)).getsockname()
        return int(sockname[1])

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _handle(self, ws: ServerConnection) -> None:
        connection_id = f"c{next(self._ids)}"
        await ws.send(
            frame("CONNECT", "CONNECTION", "ENDPOINT", "x", {"connectionId": connection_id})
        )
        try:
            async for raw in ws:
                message = json.loads(raw)
                self.received.append((connection_id, message))
                await self._answer(ws, message)
        except ConnectionClosed:
            pass
        finally:
            self.closed.append(
                ClosedConnection(connection_id, ws.close_code, ws.protocol.close_rcvd is not None)
            )

    async def _answer(self, ws: ServerConnection, message: dict[str, Any]) -> None:
        action = message.get("action")
        channel = message.get("channelName", "")
        request_id = message.get("requestId", "")
        if action == "JOIN_CHANNEL":
            if channel.startswith("/silent"):
                return
            if channel.startswith("/deny"):
                payload = {
                    "message": "no",
                    "status": 403,
                    "statusCode": 403,
                    "code": "UNAUTHORIZED",
                }
                await ws.send(frame("ERROR", "UNAUTHORIZED", channel, request_id, payload))
                return
            await ws.send(frame("SYSTEM", "ACKNOWLEDGE", channel, request_id, {}))
            presence = {"changed": {"n": 1}, "presence": [{"n": 1}]}
            await ws.send(frame("PRESENCE", "JOIN", channel, "p1", presence))
        elif action == "BROADCAST":
            event = message["event"]
            if event == "batch":
                await ws.send(
                    frame("BROADCAST", "first", channel, "b1", {"i": 1})
                    + "\n"
                    + frame("BROADCAST", "second", channel, "b2", {"i": 2})
                )
            elif event == "bad-frame":
                await ws.send(
                    frame("BROADCAST", "bad", channel, "b3", None)
                    + "\n"
                    + frame("BROADCAST", "after-bad", channel, "b4", {})
                )
            else:
                await ws.send(frame("SYSTEM", event, channel, request_id, message["payload"]))


async def _main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    args = parser.parse_args()
    server = FakeServer()
    port = await server.start(args.host, args.port)
    print(f"fake PondSocket server on ws://{args.host}:{port}/", flush=True)
    await asyncio.Future()  # run until interrupted


if __name__ == "__main__":
    asyncio.run(_main())
