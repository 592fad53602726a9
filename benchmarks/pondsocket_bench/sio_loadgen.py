"""Socket.IO load generator: :mod:`pondsocket_bench.loadgen` speaking Engine.IO v4 /
Socket.IO v5 instead of the PondSocket protocol.

    python -m pondsocket_bench.sio_loadgen '<json config>'

Same process, orchestrator protocol (READY/GO/SENT/P/RESULT), connection set-up, send loop
and accounting as ``loadgen``: only the client class differs (picows, one WebSocket per
client, ``EIO=4&transport=websocket``, no HTTP long-polling first). Per connection:

* server ``0{...}`` (Engine.IO open) -> client ``40`` (connect to namespace ``/``);
  server ``40{"sid":...}``: connected;
* join: client ``420["join","/room/1"]``, server ack ``430["ok"]``: joined;
* send: client ``42["send","/room/1",{"t":...,"pad":...}]``;
* delivery: server ``42["msg",{"t":...}]``; Engine.IO ping ``2`` is answered ``3``.

The config's ``url`` (``ws://host:port/socket``) becomes
``ws://host:port/socket/?EIO=4&transport=websocket``.
"""

from __future__ import annotations

import sys
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import orjson
from picows import WSFrame, WSMsgType, WSTransport

from pondsocket_bench import loadgen
from pondsocket_bench.loadgen import BROADCAST_EVENT, Client, LoadConfig, config_json


class SioClient(Client):
    """One Socket.IO connection: connect, join a room, then count ``msg`` events."""

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type is not WSMsgType.TEXT:
            if frame.msg_type is WSMsgType.CLOSE:
                transport.disconnect()
            return
        data = frame.get_payload_as_bytes()
        kind = data[:1]
        if kind == b"4":  # Engine.IO message: a Socket.IO packet
            self._packet(data[1:])
        elif kind == b"2":  # Engine.IO ping (the server pings in v4)
            transport.send(WSMsgType.TEXT, b"3")
        elif kind == b"0":  # Engine.IO open: connect to the default namespace
            transport.send(WSMsgType.TEXT, b"40")
        elif kind == b"1":  # Engine.IO close
            transport.disconnect()

    def _packet(self, data: bytes) -> None:
        kind = data[:1]
        if kind == b"2":  # EVENT [ack id] [name, args...]
            args = orjson.loads(data[data.index(b"[") :])
            if args and args[0] == BROADCAST_EVENT:
                payload = args[1] if len(args) > 1 else None
                self.stats.delivery(payload.get("t") if isinstance(payload, dict) else None)
                self._settle()
        elif kind == b"0":  # CONNECT ack
            if not self.connected.done():
                self.connected.set_result(None)
        elif kind == b"3":  # ACK (of the join)
            if not self.joined.done():
                self.joined.set_result(None)
        elif kind in (b"4", b"1"):  # CONNECT_ERROR, DISCONNECT
            self.stats.errors += 1
            self.stats.last_error = f"socket.io packet {data[:200]!r}"
            for future in (self.connected, self.joined):
                if not future.done():
                    future.set_exception(RuntimeError(self.stats.last_error))

    def send(self, action: str, event: str, channel: str, request_id: str, payload: Any) -> None:
        assert self.transport is not None
        if action == "JOIN_CHANNEL":
            frame = b"420" + orjson.dumps(["join", channel])
        else:
            frame = b"42" + orjson.dumps([event, channel, payload])
        self.transport.send(WSMsgType.TEXT, frame)


def socketio_url(url: str) -> str:
    parts = urlsplit(url)
    path = parts.path.rstrip("/") + "/"
    return urlunsplit((parts.scheme, parts.netloc, path, "EIO=4&transport=websocket", ""))


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    config = LoadConfig(**orjson.loads(args[0]))
    config.url = socketio_url(config.url)
    # loadgen.open_connections builds its clients from the module's ``Client``: this
    # process only ever speaks Socket.IO, so every connection is a SioClient.
    loadgen.Client = SioClient  # type: ignore[misc]
    loadgen.main([config_json(config)])


if __name__ == "__main__":
    main()
