"""A command-line chat client on pondsocket.client.PondClient, for chat_app.py,
cluster_node.py and fastapi_app.py (``/ws/socket``), or jwt_auth.py with ``--token``.

    python examples/python_client.py --url ws://127.0.0.1:8080/socket --name ann [--count 2]

Connects, joins ``/room/<room>``, prints presence changes, asks the server for a ``ping``
(request/reply), says one message, then prints every message until ``--count`` messages
arrived (0: until Ctrl+C), leaves and closes. Exit status 1 if the connection is refused,
the join declined or a request fails.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import time

from pondsocket.client import ClientError, JoinDeclinedError, PondClient, PresenceChange


def say(line: str) -> None:
    print(line, flush=True)  # flushed: another program may be reading the pipe


def on_presence(change: PresenceChange) -> None:
    verb = {"JOIN": "joined", "LEAVE": "left", "UPDATE": "updated"}.get(change.kind, change.kind)
    say(f"presence: {change.changed.get('name')} {verb} ({len(change.presence)} present)")


async def chat(args: argparse.Namespace) -> int:
    query = {"name": args.name}
    if args.token is not None:
        query["token"] = args.token
    try:
        async with PondClient(args.url, query=query, request_timeout=5) as client:
            room = client.channel(f"/room/{args.room}")
            room.presence.on_change(on_presence)  # JOIN, LEAVE and UPDATE
            try:
                await room.join()
            except JoinDeclinedError as exc:
                say(f"declined: {exc.status} {exc.message}")
                return 1
            say(f"joined {room.name}")
            started = time.perf_counter()
            pong = await room.request("ping", {"at": time.time()})  # the reply to this request
            say(f"{pong.event} after {(time.perf_counter() - started) * 1000:.1f} ms")
            await room.send("message", {"text": args.say or f"hello from {args.name}"})
            seen = 0
            async for message in room:  # ends when the channel closes
                if message.event == "message":
                    say(f"message from {message.payload['from']}: {message.payload['text']}")
                    seen += 1
                else:
                    say(f"{message.action} {message.event} {message.payload}")
                if args.count and seen >= args.count:
                    break
            await room.leave()
    except ClientError as exc:  # refused (HandshakeRefusedError: e.g. 401), timed out, ...
        say(f"error: {exc}")
        return 1
    say("bye")
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description="A PondSocket chat client.")
    parser.add_argument("--url", default="ws://127.0.0.1:8080/socket")
    parser.add_argument("--name", default="ann")
    parser.add_argument("--token", help="a JWT, for jwt_auth.py (which ignores the name)")
    parser.add_argument("--room", default="lobby")
    parser.add_argument("--say", help="the message to send (default: hello from NAME)")
    parser.add_argument("--count", type=int, default=0, help="exit after N messages (0: never)")
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl+C: the client has closed cleanly
        sys.exit(asyncio.run(chat(args)))


if __name__ == "__main__":
    main()
