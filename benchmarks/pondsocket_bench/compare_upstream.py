"""``--systems upstream``: the PyPI ``pondsocket`` (the upstream Python port) on uvicorn.

Installed into its own cache venv (``<cache>/upstream-venv``, see
:mod:`pondsocket_bench.compare`) and only *run*: the app below is written against its
public API (``PondSocket``, ``create_endpoint``, ``create_channel``, ``on_message``,
``pondsocket_asgi.PondASGIApp``) and generated into the cache dir at run time. It is our
benchmark app: endpoint ``/socket``, channel ``/room/:id`` (optional presence
``{"n": <member number>}``), event ``send`` broadcast back as ``msg`` with the payload
unchanged. It speaks the PondSocket wire protocol, so our picows load generator drives it
unchanged. Upstream has no inbound rate limit unless one is configured.
"""

from __future__ import annotations

from pondsocket_bench.compare import SystemSpec

UPSTREAM_VERSION = "0.0.7"
UPSTREAM_ASGI_VERSION = "0.0.6"

_APP = """
import itertools

from pondsocket import PondSocket
from pondsocket_asgi import PondASGIApp


def build_app(args):
    pond = PondSocket()
    members = itertools.count(1)

    async def connect(ctx):
        ctx.accept()

    endpoint = pond.create_endpoint("/socket", connect)

    async def join(ctx):
        await ctx.accept()
        if args.presence:
            await ctx.track({"n": next(members)})

    room = endpoint.create_channel("/room/:id", join)

    async def send(ctx):
        await ctx.broadcast("msg", ctx.get_payload())

    room.on_message("send", send)
    return PondASGIApp(pond)
"""

UPSTREAM = SystemSpec(
    name="upstream",
    requirements=(
        f"pondsocket=={UPSTREAM_VERSION}",
        f"pondsocket-asgi=={UPSTREAM_ASGI_VERSION}",
    ),
    app_source=_APP,
    scenarios=frozenset({"fanout", "idle", "join-storm"}),
)
