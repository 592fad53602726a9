"""A small chat server: rooms with presence, messages, a ping request, a status.

    python examples/chat_app.py [--port 8080]

Clients connect to ``ws://127.0.0.1:8080/socket?name=ann`` and join ``/room/<room>``.
``test_chat_app.py`` beside it tests this app in process; ``cluster_node.py`` serves it
from a cluster of nodes on Redis, ``fastapi_app.py`` inside a FastAPI app;
``python_client.py`` talks to each of them.
"""

from __future__ import annotations

import argparse
import logging
import re
import time

from pondsocket import (
    ConnectionContext,
    Endpoint,
    EventContext,
    HandlerError,
    JoinContext,
    PondSocket,
)

ROOM_NAME = re.compile(r"[a-z0-9-]{1,32}")
MAX_TEXT = 500


def connect(ctx: ConnectionContext) -> None:
    name = ctx.query.get("name", "").strip()
    if not 1 <= len(name) <= 32:
        ctx.decline(400, "a name of 1-32 characters is required: ?name=...")
        return
    ctx.accept({"name": name})  # connection assigns: copied into every channel joined


def join(ctx: JoinContext) -> None:
    if ROOM_NAME.fullmatch(ctx.params["room"]) is None:
        ctx.decline(400, "room names are 1-32 lowercase letters, digits or dashes")
        return
    # Presence is what the other members see of you; assigns stay on the server.
    ctx.accept().track({"name": ctx.user.assigns["name"], "status": "online"})


def message(ctx: EventContext) -> None:
    text = ctx.payload.get("text")
    if not isinstance(text, str) or not 1 <= len(text.strip()) <= MAX_TEXT:
        raise HandlerError(f"text must be 1-{MAX_TEXT} characters", 400)  # an ERROR frame
    ctx.broadcast("message", {"from": ctx.user.assigns["name"], "text": text.strip()})


def ping(ctx: EventContext) -> None:
    ctx.reply("pong", {"at": ctx.payload.get("at"), "server_time": time.time()})


def status(ctx: EventContext) -> None:
    value = ctx.payload.get("status")
    if value not in ("online", "away", "busy"):
        raise HandlerError("status is one of online, away, busy", 400)
    ctx.update_presence({"name": ctx.user.assigns["name"], "status": value})


def build(pond: PondSocket) -> Endpoint:
    """Declare the chat on ``pond``: a function, so that cluster_node.py and fastapi_app.py
    serve the same app and each test gets a fresh server."""
    endpoint = pond.create_endpoint("/socket", connect)
    rooms = endpoint.create_channel("/room/:room", join)
    rooms.on_message("message", message)
    rooms.on_message("ping", ping)
    rooms.on_message("status", status)
    return endpoint


pond = PondSocket()
build(pond)


def main() -> None:
    parser = argparse.ArgumentParser(description="A small PondSocket chat server.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080, help="0: any free port (logged)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    pond.run(args.host, args.port)  # until Ctrl+C or SIGTERM, then a graceful shutdown


if __name__ == "__main__":
    main()
