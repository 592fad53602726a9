"""The server of the burst tests (test_flow_control.py), in its own process as in
production, so that it can outrun the readers (in the test's own event loop it never
could). Prints ``PORT <n>`` once listening; on SIGTERM shuts down gracefully and prints
``METRICS <json>`` (``pond.metrics``); ``LOG <logger> <message>`` for each line that
flow control logs (``pondsocket.flow``: stuck readers), as it happens.

    python -m tests.integration.flow_app [--asgi] [--outbox BYTES] [--soft FRACTION|none]
        [--stuck SECONDS]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
from typing import Any

import orjson

from pondsocket import EventContext, JoinContext, PondOptions, PondSocket
from pondsocket.transports.standalone import StandaloneServer

PATH = "/socket"


def build(args: argparse.Namespace) -> PondSocket:
    options: dict[str, Any] = {"rate_limit": None, "ping_interval": None}
    if args.outbox is not None:
        options["outbox_max_bytes"] = args.outbox
    if args.soft is not None:
        options["outbox_soft_watermark"] = None if args.soft == "none" else float(args.soft)
    if args.stuck is not None:
        options["outbox_stuck_timeout"] = args.stuck
    pond = PondSocket(PondOptions(**options))
    endpoint = pond.create_endpoint(PATH, lambda ctx: ctx.accept())

    def join(ctx: JoinContext) -> None:
        ctx.accept()

    def say(ctx: EventContext) -> None:
        ctx.broadcast("say", ctx.payload)

    lobby = endpoint.create_channel("/room/:id", join)
    lobby.on_message("say", say)
    return pond


class _Echo(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        print("LOG", record.name, record.getMessage(), flush=True)


async def main(args: argparse.Namespace) -> None:
    pond = build(args)
    logging.getLogger("pondsocket.flow").addHandler(_Echo())

    @pond.on_shutdown
    async def report() -> None:
        print("METRICS", orjson.dumps(pond.metrics.snapshot()).decode(), flush=True)

    if args.asgi:  # uvicorn handles SIGTERM: it shuts the pond down first
        server = pond.asgi.uvicorn_server(
            host="127.0.0.1", port=0, ws="websockets-sansio", lifespan="on", log_level="warning"
        )
        task = asyncio.create_task(server.serve())
        while not server.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.01)
        print("PORT", server.servers[0].sockets[0].getsockname()[1], flush=True)
        await task
        return
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    standalone = StandaloneServer(pond, "127.0.0.1", 0)
    print("PORT", await standalone.start(), flush=True)
    await stop.wait()
    await standalone.aclose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--asgi", action="store_true")
    parser.add_argument("--outbox", type=int)
    parser.add_argument("--soft")
    parser.add_argument("--stuck", type=float)
    arguments = parser.parse_args()
    try:
        import uvloop
    except ImportError:
        asyncio.run(main(arguments))
    else:
        uvloop.run(main(arguments))
