"""The system under test, run in its own process: the benchmark app on one transport.

    python -m pondsocket_bench.server --transport standalone|asgi [--presence]
        [--redis URL --namespace NS] [--max-seconds 600]

App: endpoint ``/socket`` (accepts everyone), channel ``/room/:id`` (accepts every join;
with ``--presence`` each member is tracked as ``{"n": <member number>}``), event ``send``
broadcasts the client's payload unchanged as event ``msg`` (the payload keeps the sender's
``time.monotonic_ns()`` stamp). The inbound rate limit is off: the sender floods on purpose. It listens on an ephemeral port of 127.0.0.1 and prints
``READY <port>`` on stdout once accepting; SIGTERM/SIGINT (or ``--max-seconds``) stops it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import os
import signal
import socket
from collections.abc import Sequence

from pondsocket import (
    ConnectionContext,
    EventContext,
    JoinContext,
    PondOptions,
    PondSocket,
    tune_gc,
)
from pondsocket.cluster.options import ClusterOptions
from pondsocket_bench.limits import die_with_parent, raise_open_file_limit

HOST = "127.0.0.1"
ENDPOINT = "/socket"
CHANNEL_PATTERN = "/room/:id"
SEND_EVENT = "send"
BROADCAST_EVENT = "msg"


def create_app(*, presence: bool = False) -> PondSocket:
    """The benchmark application (see the module docstring)."""
    # The sender is a deliberate flood: no inbound rate limit (PondOptions.rate_limit), and
    # thousands of clients come from one address: no per-address or join-rate limit.
    # PONDSOCKET_BENCH_PRESENCE_WINDOW: PondOptions.presence_coalesce_window for this run.
    window = float(os.environ.get("PONDSOCKET_BENCH_PRESENCE_WINDOW", "0"))
    options = PondOptions(
        rate_limit=None,
        join_rate_limit=None,
        max_connections_per_address=None,
        presence_coalesce_window=window,
    )
    pond = PondSocket(options)
    members = itertools.count(1)

    def connect(ctx: ConnectionContext) -> None:
        ctx.accept()

    endpoint = pond.create_endpoint(ENDPOINT, connect)

    def join(ctx: JoinContext) -> None:
        ctx.accept()
        if presence:
            ctx.track({"n": next(members)})

    room = endpoint.create_channel(CHANNEL_PATTERN, join)

    @room.on_message(SEND_EVENT)
    def send(ctx: EventContext) -> None:
        ctx.broadcast(BROADCAST_EVENT, ctx.payload)

    return pond


def _use_redis(pond: PondSocket, url: str, namespace: str) -> None:
    @pond.on_startup
    async def connect() -> None:
        from pondsocket.pubsub.redis import RedisPubSub

        pubsub = await RedisPubSub.connect(url)
        pond.use_pubsub(pubsub, ClusterOptions(namespace=namespace))
        pond.on_shutdown(pubsub.close)


async def _serve_standalone(pond: PondSocket, stop: asyncio.Event) -> None:
    from pondsocket.transports.standalone import StandaloneServer

    server = StandaloneServer(pond, HOST, 0, shutdown_timeout=3.0)
    port = await server.start()
    _ready(port)
    try:
        await stop.wait()
    finally:
        await server.aclose()


async def _serve_asgi(pond: PondSocket, stop: asyncio.Event) -> None:
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((HOST, 0))
    port = int(sock.getsockname()[1])
    config = uvicorn.Config(
        pond.asgi,
        ws="websockets-sansio",
        ws_per_message_deflate=False,  # as the standalone transport: compression off
        lifespan="on",
        log_level="warning",
        backlog=4096,
        timeout_graceful_shutdown=3,
        **pond.asgi.uvicorn_options(),
    )
    server = uvicorn.Server(config)
    # Our own SIGTERM/SIGINT handlers stop it (uvicorn's would re-raise the signal at exit).
    server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign,assignment]
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        if task.done():
            await task  # raises what made startup fail
            raise RuntimeError("uvicorn stopped during startup")
        await asyncio.sleep(0.01)
    _ready(port)
    try:
        await asyncio.wait(
            [task, asyncio.create_task(stop.wait())], return_when=asyncio.FIRST_COMPLETED
        )
    finally:
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, 10)


def _ready(port: int) -> None:
    print(f"READY {port}", flush=True)


async def serve(args: argparse.Namespace) -> None:
    pond = create_app(presence=args.presence)
    if args.redis:
        _use_redis(pond, args.redis, args.namespace)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    loop.call_later(args.max_seconds, stop.set)
    if args.transport == "asgi":
        await _serve_asgi(pond, stop)
    else:
        await _serve_standalone(pond, stop)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m pondsocket_bench.server")
    parser.add_argument("--transport", choices=("standalone", "asgi"), default="standalone")
    parser.add_argument("--presence", action="store_true")
    parser.add_argument("--redis", metavar="URL")
    parser.add_argument("--namespace", default="bench")
    parser.add_argument("--max-seconds", type=float, default=600.0)
    parser.add_argument("--parent", type=int, help="exit when this process dies")
    args = parser.parse_args(argv)
    if args.parent:
        die_with_parent(args.parent)
    raise_open_file_limit()
    # As `pondsocket serve` runs a node; PONDSOCKET_BENCH_GC=default keeps CPython's GC.
    if os.environ.get("PONDSOCKET_BENCH_GC", "tuned") != "default":
        tune_gc()
    try:
        import uvloop
    except ImportError:
        asyncio.run(serve(args))
    else:
        uvloop.run(serve(args))


if __name__ == "__main__":
    main()
