"""``pondsocket client URL``: a wscat for PondSocket (docs/client.md).

Lines read on stdin (one command a line; blank lines and ``#`` comments are skipped):

    + /room/1 {"name": "ada"}      join a channel (params optional)
    - /room/1                      leave it
    /room/1 say {"text": "hi"}     send an event (payload optional, default {})
    ? /room/1 whoami {}            send a request and wait for its reply

Every frame received is printed on stdout (``--json``: one JSON object a line), what the
client does on stderr. Exit status: 0 all went well, 1 the connection was refused or lost
for good or a join/request/send failed, 2 a usage error (options, or a malformed line).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import threading
from dataclasses import dataclass
from typing import Any, TextIO

import orjson

from pondsocket.client.frames import ServerFrame
from pondsocket.errors import InvalidOptionError

OK, FAILED, USAGE = 0, 1, 2


class LineError(ValueError):
    """A stdin line that is not a command."""


@dataclass(frozen=True, slots=True)
class Command:
    kind: str  # "join", "leave", "send" or "request"
    channel: str
    event: str = ""
    payload: dict[str, Any] | None = None


def add_client_parser(commands: Any) -> None:
    """Register ``client`` on the ``pondsocket`` subcommands."""
    parser = commands.add_parser(
        "client",
        help="connect to a PondSocket server, join channels, type events (a wscat)",
        description="Connect to URL; read commands from stdin (see docs/client.md):\n"
        '  + /room/1 {"name":"ada"}   join     - /room/1   leave\n'
        '  /room/1 say {"text":"hi"}  send     ? /room/1 whoami {}   request',
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("url", help="ws://, wss://, http:// or https:// URL of the endpoint")
    parser.add_argument("-q", "--query", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("-H", "--header", action="append", default=[], metavar="'NAME: VALUE'")
    parser.add_argument("--token", help="shorthand for -q token=TOKEN")
    parser.add_argument(
        "-j", "--join", action="append", default=[], metavar="CHANNEL[=JSON]",
        help="join CHANNEL (with JSON join params) once connected (repeatable)",
    )  # fmt: skip
    parser.add_argument("--json", action="store_true", help="print frames as JSON lines")
    parser.add_argument("--no-reconnect", action="store_true", help="exit 1 when the link drops")
    parser.add_argument("--timeout", type=float, default=10.0, help="connect/join/request (s)")
    parser.add_argument(
        "--wait", type=float, default=0.0, metavar="SECONDS",
        help="keep printing frames this long after stdin ends ('inf': until interrupted)",
    )  # fmt: skip


def parse_line(line: str) -> Command | None:
    """The command on one stdin line, None for a blank line or comment; raises LineError."""
    text = line.strip()
    if not text or text.startswith("#"):
        return None
    head, _, rest = text.partition(" ")
    if head in ("+", "-", "?"):
        channel, _, rest = rest.strip().partition(" ")
        if not channel.startswith("/"):
            raise LineError(f"expected a channel name starting with '/' after {head!r}")
        if head == "+":
            return Command("join", channel, payload=_json_object(rest))
        if head == "-":
            if rest.strip():
                raise LineError("leave takes only a channel: - /room/1")
            return Command("leave", channel)
        event, _, rest = rest.strip().partition(" ")
        return Command("request", channel, _event(event), _json_object(rest))
    if head.startswith("/"):
        event, _, rest = rest.strip().partition(" ")
        return Command("send", head, _event(event), _json_object(rest))
    raise LineError(
        "expected '/channel event {json}', '? /channel event {json}', '+ /channel', '- /channel'"
    )


def _event(event: str) -> str:
    if not event:
        raise LineError("missing the event name")
    return event


def _json_object(text: str) -> dict[str, Any]:
    if not text.strip():
        return {}
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise LineError(f"invalid JSON payload: {exc}") from None
    if not isinstance(value, dict):
        raise LineError("the payload must be a JSON object")
    return value


def parse_pairs(items: list[str], sep: str, what: str) -> dict[str, str]:
    pairs = {}
    for item in items:
        key, found, value = item.partition(sep)
        if not found or not key.strip():
            raise InvalidOptionError(f"{what} {item!r}: expected NAME{sep}VALUE")
        pairs[key.strip()] = value.strip() if sep == ":" else value
    return pairs


def parse_joins(items: list[str]) -> list[tuple[str, dict[str, Any]]]:
    joins = []
    for item in items:
        channel, _, params = item.partition("=")
        if not channel.startswith("/"):
            raise InvalidOptionError(f"--join {item!r}: the channel must start with '/'")
        try:
            joins.append((channel, _json_object(params)))
        except LineError as exc:
            raise InvalidOptionError(f"--join {item!r}: {exc}") from None
    return joins


class Printer:
    """Frames on stdout, the client's own notes on stderr."""

    def __init__(self, json_lines: bool, out: TextIO = sys.stdout, err: TextIO = sys.stderr):
        self.json_lines, self.out, self.err = json_lines, out, err

    def frame(self, frame: ServerFrame) -> None:
        if self.json_lines:
            line = orjson.dumps(frame.to_dict()).decode()
        elif frame.action == "PRESENCE":
            users = frame.payload.get("presence")
            count = len(users) if isinstance(users, list) else 0
            changed = orjson.dumps(frame.payload.get("changed")).decode()
            line = f"< {frame.channelName} PRESENCE {frame.event} {changed} ({count} present)"
        else:
            payload = orjson.dumps(frame.payload).decode()
            line = f"< {frame.channelName} {frame.action} {frame.event} {payload}"
        print(line, file=self.out, flush=True)

    def note(self, text: str) -> None:
        print(f"# {text}", file=self.err, flush=True)


def stdin_lines(loop: asyncio.AbstractEventLoop, queue: asyncio.Queue[str | None]) -> None:
    """Read stdin in a daemon thread (works for ttys, pipes and files alike)."""

    def read() -> None:
        for line in sys.stdin:
            loop.call_soon_threadsafe(queue.put_nowait, line)
        loop.call_soon_threadsafe(queue.put_nowait, None)

    threading.Thread(target=read, name="pondsocket-client-stdin", daemon=True).start()
