"""A FastAPI app with HTTP routes and PondSocket (chat_app.py's chat) mounted at ``/ws``.

    uvicorn --app-dir examples fastapi_app:app --ws websockets-sansio --port 8000
    python examples/fastapi_app.py      # the same on port 8000, with PondSocket's shutdown

WebSocket clients connect to ``ws://127.0.0.1:8000/ws/socket?name=ann`` and join
``/room/<room>``. ``GET /rooms`` lists the open rooms with their members' presence;
``POST /rooms/<room>/announce`` with ``{"text": "..."}`` broadcasts an ``announcement``
into a room from outside any PondSocket handler.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, HTTPException
from pydantic import BaseModel

from chat_app import build
from pondsocket import PondSocket

pond = PondSocket()
endpoint = build(pond)  # its patterns see the path below the mount point: /socket

# A mounted app gets no lifespan events of its own: the host runs PondSocket's, which
# starts it and, when uvicorn stops, closes it (leave handlers run, a cluster is told).
app = FastAPI(lifespan=pond.asgi.lifespan)
app.mount("/ws", pond.asgi)


class Announcement(BaseModel):
    text: str


# The routes are async: they run on the event loop PondSocket lives on (a plain def
# route runs in a worker thread, where touching channels is not safe).
@app.get("/rooms")
async def list_rooms() -> dict[str, Any]:
    rooms: dict[str, list[dict[str, Any]]] = {}
    for name in endpoint.channel_names:  # the rooms with members on this node
        channel = endpoint.get_channel(name)
        if channel is not None:
            rooms[name] = list(channel.get_presence().values())
    return {"rooms": rooms}


@app.post("/rooms/{room}/announce")
async def announce(room: str, body: Announcement) -> dict[str, Any]:
    channel = endpoint.get_channel(f"/room/{room}")
    if channel is None:
        raise HTTPException(404, f"nobody is in room {room!r}")
    channel.broadcast("announcement", {"text": body.text})
    return {"room": room, "recipients": len(channel.all_user_ids)}


if __name__ == "__main__":  # PondSocket closes its sockets and streams first on SIGTERM
    pond.asgi.uvicorn_server(app=app, host="127.0.0.1", port=8000).run()
