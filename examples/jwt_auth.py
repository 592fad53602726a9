"""An endpoint that authenticates with a JWT (PyJWT, HS256) and rooms the token allows.

    python examples/jwt_auth.py --mint ann --rooms lobby,dev     # prints a token
    python examples/jwt_auth.py [--port 8080]                    # serves

Clients connect to ``ws://127.0.0.1:8080/socket?token=<jwt>`` (or send the token in an
``Authorization: Bearer <jwt>`` header). The token must carry ``sub`` (the user id) and
``exp``; ``name`` and ``rooms`` (the rooms the user may join) are optional. Anything else
is refused with HTTP 401 before the WebSocket opens. The signing secret comes from
``PONDSOCKET_JWT_SECRET``; the default is for trying it out only.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from typing import Any

import jwt

from pondsocket import ConnectionContext, EventContext, JoinContext, PondSocket

DEV_SECRET = "dev-only-secret-set-PONDSOCKET_JWT_SECRET-in-production"
SECRET = os.environ.get("PONDSOCKET_JWT_SECRET", DEV_SECRET)
ALGORITHM = "HS256"


def mint(user: str, rooms: list[str], *, name: str | None = None, ttl: float = 3600) -> str:
    """A token for ``user`` that may join ``rooms``, valid for ``ttl`` seconds."""
    claims = {"sub": user, "name": name or user, "rooms": rooms, "exp": int(time.time() + ttl)}
    return jwt.encode(claims, SECRET, algorithm=ALGORITHM)


def token_of(ctx: ConnectionContext) -> str | None:
    """The token from ``?token=`` or ``Authorization: Bearer`` (header names are lower-case)."""
    if token := ctx.query.get("token"):
        return token
    scheme, _, value = ctx.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer":
        return None
    return value.strip() or None


def authenticate(ctx: ConnectionContext) -> None:
    token = token_of(ctx)
    if token is None:
        ctx.decline(401, "missing token: pass ?token=... or an Authorization: Bearer header")
        return
    try:
        # algorithms= pins HS256 (never trust the token's own "alg"); exp must be present.
        claims: dict[str, Any] = jwt.decode(
            token, SECRET, algorithms=[ALGORITHM], options={"require": ["exp", "sub"]}
        )
    except jwt.ExpiredSignatureError:
        ctx.decline(401, "token expired")
        return
    except jwt.InvalidTokenError as exc:
        ctx.decline(401, f"invalid token: {exc}")
        return
    rooms = claims.get("rooms")
    ctx.accept(  # connection assigns: server-side only, copied into each channel joined
        {
            "user_id": claims["sub"],
            "name": str(claims.get("name", claims["sub"])),
            "rooms": [r for r in rooms if isinstance(r, str)] if isinstance(rooms, list) else [],
        }
    )


def join(ctx: JoinContext) -> None:
    room = ctx.params["room"]
    if room not in ctx.user.assigns["rooms"]:
        ctx.decline(403, f"your token does not allow room {room!r}")
        return
    user = ctx.user.assigns
    ctx.accept().track({"user_id": user["user_id"], "name": user["name"]})


def message(ctx: EventContext) -> None:
    ctx.broadcast("message", {"from": ctx.user.assigns["user_id"], "text": ctx.payload.get("text")})


def ping(ctx: EventContext) -> None:
    ctx.reply("pong", {"at": ctx.payload.get("at")})  # to the sender: a request's answer


pond = PondSocket()
rooms = pond.create_endpoint("/socket", authenticate).create_channel("/room/:room", join)
rooms.on_message("message", message)
rooms.on_message("ping", ping)


def main() -> None:
    parser = argparse.ArgumentParser(description="A JWT-authenticated PondSocket server.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080, help="0: any free port (logged)")
    parser.add_argument("--mint", metavar="USER", help="print a token for USER and exit")
    parser.add_argument("--rooms", default="lobby", help="with --mint: comma-separated rooms")
    parser.add_argument("--ttl", type=float, default=3600, help="with --mint: seconds valid")
    args = parser.parse_args()
    if args.mint:
        print(mint(args.mint, [r for r in args.rooms.split(",") if r], ttl=args.ttl))
        return
    if SECRET == DEV_SECRET:
        print("warning: using the development JWT secret", file=sys.stderr)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    pond.run(args.host, args.port)


if __name__ == "__main__":
    main()
