"""``--systems socketio``: python-socketio with ``AsyncRedisManager`` on uvicorn (ASGI).

The most used Python alternative, in its scale-out configuration: every emit goes through
Redis (``--redis``, a fresh channel per run), as PondSocket's cross-node does. Installed
into its own cache venv (``<cache>/socketio-venv``, see :mod:`pondsocket_bench.compare`);
the app below is generated into the cache dir at run time:

* Socket.IO path ``/socket`` (``ws://127.0.0.1:<port>/socket/?EIO=4&transport=websocket``);
* event ``join`` (room name, with an ack) enters the room: the PondSocket join;
* event ``send`` (room, payload) emits ``msg`` with the payload unchanged to the room,
  the sender included (as our broadcast).

It is driven by :mod:`pondsocket_bench.sio_loadgen` (picows, Engine.IO v4 / Socket.IO v5
text packets). Presence has no Socket.IO equivalent: ``--presence`` is ignored.
"""

from __future__ import annotations

from pondsocket_bench.compare import SystemSpec

_APP = """
import socketio


def build_app(args):
    manager = socketio.AsyncRedisManager(args.redis, channel=args.namespace)
    sio = socketio.AsyncServer(async_mode="asgi", client_manager=manager)

    @sio.event
    async def join(sid, room):
        await sio.enter_room(sid, room)
        return "ok"

    @sio.event
    async def send(sid, room, payload):
        await sio.emit("msg", payload, room=room)

    return socketio.ASGIApp(sio, socketio_path="socket")
"""

SOCKETIO = SystemSpec(
    name="socketio",
    requirements=("python-socketio>=5.11,<6", "redis>=5"),
    app_source=_APP,
    scenarios=frozenset({"fanout", "idle", "join-storm"}),
    loadgen_module="pondsocket_bench.sio_loadgen",
    needs_redis=True,
)
