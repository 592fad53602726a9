"""The app ``pondsocket serve`` runs in the shutdown tests (test_shutdown_broker_down.py):
no inbound rate limit, so one client can flood; ``shout`` goes to everyone but the
sender (into a room of one: no local delivery, every message a cluster envelope)."""

from __future__ import annotations

from pondsocket import EventContext, JoinContext, PondOptions, PondSocket


def _join(ctx: JoinContext) -> None:
    ctx.accept()


pond = PondSocket(PondOptions(rate_limit=None))
endpoint = pond.create_endpoint("/socket", lambda ctx: ctx.accept())
lobby = endpoint.create_channel("/room/:id", _join)


@lobby.on_message("shout")
def shout(ctx: EventContext) -> None:
    ctx.broadcast_from("shouted", ctx.payload)
