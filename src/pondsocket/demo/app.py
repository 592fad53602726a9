"""The demo chat: rooms with presence, typing indicators and a message history (the
rooms keep history: ``lobby.history``, docs/recovery.md).

Endpoint ``/socket?username=alice``; right after the CONNECTION frame the server sends a
connection-level ``welcome`` ``{"userId", "username", "node"}``: the id the room gives
this connection's messages, its name as the server keeps it (sanitised) and the node it
is connected to (the page marks a message as its
own when ``from`` is that id, never by comparing names). Channels ``/room/:room``.

Names are distinct in a room: a join is refused (status 409, "the name … is taken in this
room: pick another") while a member has the same name, compared without case, and the
page asks for another. Refused, not renamed: the name is what the user typed and what the
others see, and a silent ``ada-2`` would be a name nobody chose. The check covers the
members this node knows of, on every node (a node that opens the room waits up to
:data:`CLUSTER_STATE_WAIT` for the others' members); two joins with one name at the same
moment on two nodes can still both pass.

Client events:

* ``message`` ``{"text"}``: broadcast ``{"username", "from", "text", "at"}`` (``from``:
  the sender's user id; ``at``: epoch ms) to the room;
* ``typing`` ``{"typing": bool}``: sent to everyone in the room but the typist;
* ``status`` ``{"status": "online" | "away" | "busy"}``: updates the user's presence;
* ``history``: replied to with ``{"messages": [...]}``, the room's last 50 messages (read
  from the channel's history, so a page that rejoins with ``{"recover": position}`` gets
  what it missed without asking).
"""

from __future__ import annotations

import asyncio
import secrets
import time
from importlib.resources import files
from typing import Any

from pondsocket import (
    ConnectionContext,
    EventContext,
    HandlerError,
    JoinContext,
    PondSocket,
)
from pondsocket.pubsub.memory import InMemoryPubSub

MAX_USERNAME = 32
MAX_TEXT = 2000
HISTORY_SIZE = 50
STATUSES = frozenset({"online", "away", "busy"})
USERNAME_PUNCTUATION = frozenset(" -_.")
CLUSTER_STATE_WAIT = 0.3
"""Seconds a join waits for the other nodes' members when it opens the room on this node."""

DEMO_PAGE: bytes = files("pondsocket.demo").joinpath("static/index.html").read_bytes()
"""The single-page browser client (plain HTML and JavaScript, no external resources)."""


def sanitise_username(raw: str) -> str:
    """Keep letters, digits and `` -_.``; collapse runs of spaces; trim."""
    kept = "".join(ch for ch in raw if ch.isalnum() or ch in USERNAME_PUNCTUATION)
    return " ".join(kept.split())


def _text(payload: dict[str, Any], key: str) -> str:
    value = payload.get(key)
    if not isinstance(value, str):
        raise HandlerError(f"{key!r} must be a string", 400)
    return value


def create_demo() -> PondSocket:
    """Build the demo chat server (a fresh one per call: rooms and history are in memory
    unless the server joins a cluster)."""
    pond = PondSocket()

    def connect(ctx: ConnectionContext) -> None:
        username = sanitise_username(ctx.query.get("username", ""))
        if len(username) > MAX_USERNAME:
            ctx.decline(400, f"username must be at most {MAX_USERNAME} characters")
            return
        ctx.accept({"username": username or f"guest-{secrets.randbelow(10_000):04d}"})
        welcome = {"userId": ctx.connection_id, "node": pond.cluster.node_id}
        ctx.reply("welcome", {**welcome, "username": ctx.assigns["username"]})

    endpoint = pond.create_endpoint("/socket", connect)

    async def join(ctx: JoinContext) -> None:
        username: str = ctx.user.assigns["username"]
        if not ctx.channel.user_ids and not isinstance(pond.pubsub, InMemoryPubSub):
            # The room's first member on this node: the node has just asked the cluster
            # who is in it; give the other nodes' answers a moment to arrive.
            for _ in range(round(CLUSTER_STATE_WAIT / 0.02)):
                if ctx.presence:  # (no event says when the answers are in: poll)
                    break
                await asyncio.sleep(0.02)
        taken = {
            str(p.get("username", "")).casefold()
            for user_id, p in ctx.presence.items()
            if user_id != ctx.user.id
        }
        if username.casefold() in taken:
            ctx.decline(409, f"the name {username} is taken in this room: pick another")
            return
        ctx.accept()
        ctx.track({"username": username, "status": "online"})

    room = endpoint.create_channel("/room/:room", join)
    # On a broker without a history store (RabbitMQ, Kafka, ...) the rooms run without it.
    room.history(size=HISTORY_SIZE, ttl=86_400, required=False)

    @room.on_message("message")
    def message(ctx: EventContext) -> None:
        text = _text(ctx.payload, "text")
        if not text.strip():
            raise HandlerError("message text is empty", 400)
        if len(text) > MAX_TEXT:
            raise HandlerError(f"message text is longer than {MAX_TEXT} characters", 400)
        entry = {
            "username": ctx.user.assigns["username"],
            "from": ctx.user.id,
            "text": text,
            "at": int(time.time() * 1000),
        }
        ctx.broadcast("message", entry)  # stored in the room's history, then delivered

    @room.on_message("typing")
    def typing(ctx: EventContext) -> None:
        others = [uid for uid in ctx.channel.all_user_ids if uid != ctx.user.id]
        if not others:
            return
        ctx.broadcast_to(  # direct messages: not kept in the room's history
            "typing",
            {
                "username": ctx.user.assigns["username"],
                "typing": ctx.payload.get("typing") is not False,
            },
            others,
        )

    @room.on_message("status")
    def status(ctx: EventContext) -> None:
        value = _text(ctx.payload, "status")
        if value not in STATUSES:
            raise HandlerError(f"status must be one of {', '.join(sorted(STATUSES))}", 400)
        ctx.update_presence({"username": ctx.user.assigns["username"], "status": value})

    @room.on_message("history")
    async def history(ctx: EventContext) -> None:
        if ctx.channel.recorded is None:
            ctx.reply("history", {"messages": []})
            return
        entries = await ctx.channel.history(0, limit=HISTORY_SIZE)
        messages = [e.payload for e in entries if e.event == "message"]
        ctx.reply("history", {"messages": messages})

    return pond
