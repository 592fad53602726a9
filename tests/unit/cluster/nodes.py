"""Nodes of a cluster sharing one in-memory broker (no sockets, no Redis), for the
cluster unit tests: a :class:`Node` with one room lobby, fast heartbeats, and helpers
to read presence and to forge other nodes' envelopes."""

from __future__ import annotations

import asyncio
from typing import Any

from pondsocket import EventContext, JoinContext, PondSocket
from pondsocket.cluster import ClusterOptions, Envelope, EnvelopeType
from pondsocket.pubsub import InMemoryPubSub
from pondsocket.pubsub.memory import InMemoryBroker
from pondsocket.testing import TestClient, TestConnection

ROOM = "/room/1"
FAST = ClusterOptions(
    heartbeat_interval=0.05, heartbeat_timeout=0.2, liveness_check_interval=0.02, resync_window=0.2
)


class Node:
    def __init__(
        self, broker: InMemoryBroker | None, node_id: str, options: ClusterOptions = FAST
    ) -> None:
        if broker is None:  # PondSocket's own default: a private in-memory bus
            self.pond = PondSocket(node_id=node_id, cluster=options)
            assert isinstance(self.pond.pubsub, InMemoryPubSub)
            self.pubsub = self.pond.pubsub
        else:
            self.pubsub = InMemoryPubSub(broker)
            self.pond = PondSocket(pubsub=self.pubsub, node_id=node_id, cluster=options)
        self.left: list[tuple[str, str]] = []
        endpoint = self.pond.create_endpoint("/socket", lambda ctx: ctx.accept())
        lobby = endpoint.create_channel("/room/:id", self.join)
        lobby.on_message("all", lambda ctx: ctx.broadcast("all", ctx.payload))
        lobby.on_message("to", lambda ctx: ctx.broadcast_to("to", {}, ctx.payload["ids"]))
        lobby.on_message("kick", lambda ctx: ctx.evict("bye", ctx.payload["id"]))
        lobby.on_message("remove", lambda ctx: ctx.channel.remove_user(ctx.payload["id"]))
        lobby.on_message("status", lambda ctx: ctx.update_presence(ctx.payload))
        lobby.on_message(
            "set", lambda ctx: ctx.channel.assign(ctx.payload["id"], ctx.payload["assigns"])
        )
        lobby.on_message("whois", self.whois)
        lobby.on_leave(lambda ctx: self.left.append((ctx.user.id, ctx.reason)))
        self.endpoint = endpoint

    @staticmethod
    def join(ctx: JoinContext) -> None:
        ctx.accept(ctx.join_params.get("assigns"))
        if "name" in ctx.join_params:
            ctx.track({"name": ctx.join_params["name"]})

    @staticmethod
    async def whois(ctx: EventContext) -> None:
        user = await ctx.channel.fetch_user(ctx.payload["id"], fresh=True)
        ctx.reply("whois", {"assigns": user.assigns, "presence": user.presence} if user else {})

    async def client(self, name: str | None = None, **assigns: Any) -> TestConnection:
        conn = await TestClient(self.pond).connect("/socket")
        params: dict[str, Any] = {"assigns": assigns}
        if name is not None:
            params["name"] = name
        ack = await conn.join(ROOM, params)
        assert ack["event"] == "ACKNOWLEDGE"
        return conn

    @property
    def channel(self) -> Any:
        return self.endpoint.get_channel(ROOM)


def presence_names(conn: TestConnection) -> list[str]:
    frames = conn.frames_for(ROOM, action="PRESENCE")
    return sorted(p["name"] for p in frames[-1]["payload"]["presence"]) if frames else []


async def settle() -> None:
    await asyncio.sleep(0.05)


def foreign_envelope(kind: EnvelopeType, node: Node, source: str, **fields: Any) -> bytes:
    channel = "__heartbeat__" if kind is EnvelopeType.NODE_HEARTBEAT else ROOM
    endpoint = "__heartbeat__" if kind is EnvelopeType.NODE_HEARTBEAT else "socket"
    return Envelope(kind, source, endpoint, channel, fields).encode()
