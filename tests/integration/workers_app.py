"""The app ``pondsocket serve --workers`` runs in test_workers.py: each connection is told
which node (worker) took it, each member is tracked with its node (the presence list
spans every node), and ``shout`` goes to everyone in the room, on every node."""

from __future__ import annotations

from pondsocket import ConnectionContext, EventContext, JoinContext, PondSocket

pond = PondSocket()


def connect(ctx: ConnectionContext) -> None:
    ctx.accept()
    ctx.reply("node", {"node": pond.cluster.node_id})  # the frame after CONNECTION


endpoint = pond.create_endpoint("/socket", connect)


def join(ctx: JoinContext) -> None:
    ctx.accept().track({"node": pond.cluster.node_id})


lobby = endpoint.create_channel("/room/:id", join)


@lobby.on_message("shout")
def shout(ctx: EventContext) -> None:
    ctx.broadcast("shouted", {**ctx.payload, "node": pond.cluster.node_id})


def fresh() -> PondSocket:
    """A new server each call, for the in-process usage-error tests (the options they give
    are applied to the server they load)."""
    return PondSocket()
