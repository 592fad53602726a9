"""One PondSocket cluster node as a process, for the multi-process tests in tests/cluster.

    python -m tests.cluster_node_app --port 0 --redis redis://127.0.0.1:6379/0 --node-id a \
        [--namespace NS] [--heartbeat-interval S --heartbeat-timeout S]

The application: endpoint ``/socket`` accepts every connection with assigns
``{"name": <query name>}``; channel ``/room/:id`` accepts every join (merging the join
params' ``assigns``) and tracks ``{"name": ...}``. Events:

========  ==================================================================================
say       broadcast ``say`` with the payload to everyone
others    broadcast_from: ``others`` to everyone but the sender
to        broadcast_to ``payload["ids"]``: event ``to``
kick      evict ``payload["id"]`` (reason ``payload.get("reason", "bye")``)
remove    ``channel.remove_user(payload["id"])``
status    update_presence(payload)
set       ``channel.assign(payload["id"], payload["assigns"])``
whois     reply ``whois`` with ``{"found", "assigns", "presence"}`` of ``payload["id"]``,
          asked fresh from the node hosting it
slow      sleep ``payload["seconds"]``, then reply ``slow``
big       broadcast ``big`` with a string of ``payload["size"]`` bytes
stats     reply ``stats`` with the node's counters (see below)
========  ==================================================================================

Stdout carries only machine-readable lines: ``READY <port> <node_id>`` once listening,
``STATS <json>`` on every SIGUSR1 (:func:`snapshot`: cluster stats, metrics, pubsub stats,
channel views, leave reasons) and ``BYE <node_id>`` after a graceful shutdown. Logs
go to stderr. SIGTERM/SIGINT shut down gracefully (``pond.shutdown()`` via the server, then
``pubsub.close()``) and exit 0.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import signal
import sys
from typing import Any

from pondsocket import ConnectionContext, EventContext, JoinContext, LeaveContext, PondSocket
from pondsocket.cluster import ClusterOptions
from pondsocket.pubsub import PubSub
from pondsocket.transports.standalone import StandaloneServer

log = logging.getLogger("cluster_node_app")

ENDPOINT = "/socket"
LOBBY = "/room/:id"
HISTORY_LOBBY = "/history/:id"
SHUTDOWN_TIMEOUT = 10.0


def build(pond: PondSocket) -> list[dict[str, str]]:
    """Declare the test application on ``pond``; returns the list its leave handler fills
    with ``{"user", "channel", "reason"}`` (reported by :func:`snapshot`)."""
    left: list[dict[str, str]] = []

    def on_leave(ctx: LeaveContext) -> None:
        left.append({"user": ctx.user.id, "channel": ctx.channel.name, "reason": ctx.reason})

    def connect(ctx: ConnectionContext) -> None:
        ctx.accept({"name": ctx.query.get("name", "anon")})

    def join(ctx: JoinContext) -> None:
        assigns = ctx.join_params.get("assigns")
        ctx.accept(assigns if isinstance(assigns, dict) else None)
        name = ctx.join_params.get("name") or ctx.user.assigns.get("name", "anon")
        ctx.track({"name": name})

    async def whois(ctx: EventContext) -> None:
        user = await ctx.channel.fetch_user(ctx.payload["id"], fresh=True)
        if user is None:
            ctx.reply("whois", {"found": False})
        else:
            ctx.reply("whois", {"found": True, "assigns": user.assigns, "presence": user.presence})

    async def slow(ctx: EventContext) -> None:
        seconds = float(ctx.payload.get("seconds", 1.0))
        await asyncio.sleep(seconds)
        ctx.reply("slow", {"slept": seconds})

    def big(ctx: EventContext) -> None:
        size = int(ctx.payload["size"])
        ctx.broadcast("big", {"size": size, "data": "x" * size})

    def stats(ctx: EventContext) -> None:
        ctx.reply("stats", snapshot(pond, left))

    endpoint = pond.create_endpoint(ENDPOINT, connect)
    lobby = endpoint.create_channel(LOBBY, join)
    lobby.on_message("say", lambda ctx: ctx.broadcast("say", ctx.payload))
    lobby.on_message("others", lambda ctx: ctx.broadcast_from("others", ctx.payload))
    lobby.on_message("to", lambda ctx: ctx.broadcast_to("to", ctx.payload, ctx.payload["ids"]))
    lobby.on_message(
        "kick", lambda ctx: ctx.channel.evict(ctx.payload["id"], ctx.payload.get("reason", "bye"))
    )
    lobby.on_message("remove", lambda ctx: ctx.channel.remove_user(ctx.payload["id"]))
    lobby.on_message("status", lambda ctx: ctx.update_presence(ctx.payload))
    lobby.on_message(
        "set", lambda ctx: ctx.channel.assign(ctx.payload["id"], ctx.payload["assigns"])
    )
    lobby.on_message("whois", whois)
    lobby.on_message("slow", slow)
    lobby.on_message("big", big)
    lobby.on_message("stats", stats)
    lobby.on_leave(on_leave)
    # Channels with history (docs/recovery.md), for the loss and recovery tests.
    recorded = endpoint.create_channel(HISTORY_LOBBY, join).history(size=10_000, ttl=600)
    recorded.on_message("say", lambda ctx: ctx.broadcast("say", ctx.payload))
    recorded.on_message("stats", stats)
    return left


def snapshot(pond: PondSocket, left: list[dict[str, str]]) -> dict[str, Any]:
    """The node's counters, its view of every channel (members on every node) and the
    leaves its handler saw."""
    pubsub_stats: Any = getattr(pond.pubsub, "stats", None)  # RedisPubSub.stats
    channels: dict[str, Any] = {}
    for endpoint in pond.endpoints:
        for name in endpoint.channel_names:
            channel = endpoint.get_channel(name)
            if channel is not None:
                channels[name] = {
                    "local": sorted(channel.user_ids),
                    "all": sorted(channel.all_user_ids),
                    "presence": channel.get_presence(),
                }
    return {
        "node_id": pond.cluster.node_id,
        "cluster": pond.cluster.stats.snapshot(),
        "metrics": pond.metrics.snapshot(),
        "pubsub": pubsub_stats.snapshot() if pubsub_stats is not None else {},
        "channels": channels,
        "left": left,
    }


def emit(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


async def connect_pubsub(url: str) -> PubSub:
    from pondsocket.pubsub.redis import RedisPubSub

    pubsub: PubSub = await RedisPubSub.connect(url)
    return pubsub


async def main(args: argparse.Namespace) -> int:
    options: dict[str, Any] = {"namespace": args.namespace}
    if args.heartbeat_interval is not None:
        options["heartbeat_interval"] = args.heartbeat_interval
    if args.heartbeat_timeout is not None:
        options["heartbeat_timeout"] = args.heartbeat_timeout
    pubsub = await connect_pubsub(args.redis)
    pond = PondSocket(pubsub=pubsub, node_id=args.node_id, cluster=ClusterOptions(**options))
    left = build(pond)
    server = StandaloneServer(pond, "127.0.0.1", args.port, shutdown_timeout=SHUTDOWN_TIMEOUT)
    try:
        port = await server.start()
    except BaseException:
        await pubsub.close()
        raise
    pond.cluster.start()  # heartbeat from the start, not only once a channel opens

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(
        signal.SIGUSR1, lambda: emit("STATS " + json.dumps(snapshot(pond, left), sort_keys=True))
    )
    log.info("node %s listening on 127.0.0.1:%d (namespace %s)", args.node_id, port, args.namespace)
    emit(f"READY {port} {args.node_id}")

    await stop.wait()
    log.info("node %s shutting down", args.node_id)
    try:
        async with asyncio.timeout(SHUTDOWN_TIMEOUT + 5):
            await server.aclose()  # closes the connections, then pond.shutdown()
    except TimeoutError:
        log.error("graceful shutdown timed out")
    finally:
        with contextlib.suppress(Exception):
            await pubsub.close()
    emit(f"BYE {args.node_id}")
    return 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=0, help="0: any free port (see READY)")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--node-id", required=True)
    parser.add_argument("--namespace", default="default")
    parser.add_argument("--heartbeat-interval", type=float, default=None)
    parser.add_argument("--heartbeat-timeout", type=float, default=None)
    parser.add_argument("--log-level", default="INFO")
    return parser.parse_args(argv)


def run(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        stream=sys.stderr,
        level=args.log_level.upper(),
        format=f"%(asctime)s.%(msecs)03d {args.node_id} %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    return asyncio.run(main(args))


if __name__ == "__main__":
    sys.exit(run())
