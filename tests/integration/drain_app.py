"""The app ``pondsocket serve --drain-grace`` runs in test_drain.py: ``shout`` goes to
everyone in the room, so a client still joined during the drain sees traffic."""

from __future__ import annotations

from pondsocket import EventContext, PondSocket

pond = PondSocket()
endpoint = pond.create_endpoint("/socket", lambda ctx: ctx.accept())
lobby = endpoint.create_channel("/room/:id", lambda ctx: ctx.accept())


@lobby.on_message("shout")
def shout(ctx: EventContext) -> None:
    ctx.broadcast("shouted", ctx.payload)
