"""The published Python client (PyPI ``pondsocket-client`` 0.0.6) on a channel with
history: it joins, gets the ``recovery`` signal as a SYSTEM message and the positions in
the payloads, and reports no error."""

from __future__ import annotations

from typing import Any

from pondsocket_client import ClientOptions, PondClient
from pondsocket_common import ChannelState
from tests.support import eventually

from pondsocket import PondSocket
from pondsocket.transports.standalone import StandaloneServer


async def test_pypi_client_on_a_history_channel() -> None:
    pond = PondSocket()
    endpoint = pond.create_endpoint("/socket", lambda ctx: ctx.accept())
    lobby = endpoint.create_channel("/room/:id", lambda ctx: ctx.accept()).history(size=10)
    lobby.on_message("say", lambda ctx: ctx.broadcast("said", ctx.payload))
    server = StandaloneServer(pond, "127.0.0.1", 0)
    port = await server.start()
    options = ClientOptions(max_reconnect_attempts=0, response_timeout=5.0)
    client = PondClient(f"ws://127.0.0.1:{port}/socket", {}, options)
    errors: list[BaseException] = []
    client.on_error(errors.append)
    messages: list[tuple[str, str, dict[str, Any]]] = []
    try:
        await client.connect()
        channel = client.create_channel("/room/1", {})
        channel.on_message(lambda m: messages.append((str(m.action), m.event, dict(m.payload))))
        channel.join()
        await eventually(lambda: channel.channel_state == ChannelState.JOINED, "joined")
        channel.send_message("say", {"n": 1})
        await eventually(lambda: any(event == "said" for _, event, _ in messages), "the echo")
        signal = next(p for action, event, p in messages if event == "recovery")
        said = next(p for action, event, p in messages if event == "said")
        assert signal["recovered"] is False and signal["reason"] == "not_requested"
        assert said == {"n": 1, "_position": {"offset": 1, "epoch": signal["epoch"]}}
        assert errors == []
    finally:
        await client.disconnect()
        await server.aclose()
