"""Runs ``pondsocket client``: connect, execute the stdin commands, print every frame."""

from __future__ import annotations

import argparse
import asyncio
import math

from pondsocket.client.channel import Channel
from pondsocket.client.cli import (
    FAILED,
    OK,
    USAGE,
    Command,
    LineError,
    Printer,
    parse_joins,
    parse_line,
    parse_pairs,
    stdin_lines,
)
from pondsocket.client.connection import PondClient
from pondsocket.client.errors import ClientError
from pondsocket.client.state import ConnectionState
from pondsocket.errors import InvalidOptionError


class Session:
    """Executes commands on one client; ``status`` is the exit status so far (the first
    error's)."""

    def __init__(self, client: PondClient, printer: Printer) -> None:
        self.client, self.printer = client, printer
        self.status = OK

    def fail(self, status: int, text: str) -> None:
        self.printer.note(f"error: {text}")
        if self.status == OK:
            self.status = status

    async def execute(self, command: Command) -> None:
        try:
            await self._execute(command)
        except ClientError as exc:
            self.fail(FAILED, str(exc))

    async def _execute(self, command: Command) -> None:
        if command.kind == "join":
            await self.client.channel(command.channel, command.payload).join()
            self.printer.note(f"joined {command.channel}")
            return
        channel = self._known(command.channel)
        if channel is None:
            self.fail(
                FAILED, f"{command.channel} is not joined: join it first with + {command.channel}"
            )
        elif command.kind == "leave":
            await channel.leave()
            self.printer.note(f"left {command.channel}")
        elif command.kind == "send":
            await channel.send(command.event, command.payload)
        else:
            reply = await channel.request(command.event, command.payload)
            self.printer.note(f"reply {reply.event} to {command.event}")

    def _known(self, name: str) -> Channel | None:
        return next((c for c in self.client.channels if c.name == name), None)

    async def read_stdin(self) -> None:
        queue: asyncio.Queue[str | None] = asyncio.Queue()
        stdin_lines(asyncio.get_running_loop(), queue)
        while (line := await queue.get()) is not None:
            try:
                command = parse_line(line)
            except LineError as exc:
                self.fail(USAGE, f"{exc}: {line.strip()!r}")
                continue
            if command is not None:
                await self.execute(command)


def make_client(args: argparse.Namespace) -> tuple[PondClient, list[tuple[str, dict[str, object]]]]:
    """The client the options describe; raises InvalidOptionError on a bad option."""
    query: dict[str, str] = parse_pairs(args.query, "=", "--query")
    if args.token is not None:
        query["token"] = args.token
    headers = parse_pairs(args.header, ":", "--header")
    if not args.timeout > 0 or not args.wait >= 0:
        raise InvalidOptionError("--timeout must be positive and --wait at least 0")
    client = PondClient(
        args.url,
        query=query,
        headers=headers,
        reconnect=not args.no_reconnect,
        connect_timeout=args.timeout,
        join_timeout=args.timeout,
        request_timeout=args.timeout,
        send_timeout=args.timeout,
    )
    return client, parse_joins(args.join)


async def run(args: argparse.Namespace) -> int:
    """``pondsocket client``; returns the exit status."""
    printer = Printer(args.json)
    try:
        client, joins = make_client(args)
    except InvalidOptionError as exc:
        printer.note(f"usage error: {exc}")
        return USAGE
    client.on_frame(printer.frame)
    try:
        await client.connect()
    except ClientError as exc:
        printer.note(f"error: {exc}")
        return FAILED
    printer.note(f"connected to {client.url} as {client.connection_id}")
    client.state.watch(lambda state: printer.note(f"connection {state}"))
    session = Session(client, printer)
    try:
        for channel, params in joins:
            await session.execute(Command("join", channel, payload=params))
        await _until_done(session, args.wait)
    finally:
        await client.close()
    return session.status


async def _until_done(session: Session, linger: float) -> None:
    client = session.client
    failed = asyncio.create_task(client.state.wait_for(ConnectionState.FAILED, timeout=None))
    reader = asyncio.create_task(session.read_stdin())
    try:
        await asyncio.wait([failed, reader], return_when=asyncio.FIRST_COMPLETED)
        if not failed.done():
            await asyncio.wait([failed], timeout=None if math.isinf(linger) else linger)
        if failed.done():
            session.fail(FAILED, f"connection failed: {client.error}")
    finally:
        for task in (failed, reader):
            task.cancel()
