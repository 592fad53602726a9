"""Recovery with the real npm client (0.0.32), as it is: its socket is killed during a
200 msg/s stream and the server refuses it for 3 s; it reconnects and rejoins by itself,
with the join-params object the app kept at the last position (docs/recovery.md)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
from tests.jsclient import JSClientHarness, ensure_js_client_installed, event_matches

from pondsocket import PondSocket
from pondsocket.core.contexts import ConnectionContext
from pondsocket.transports.standalone import StandaloneServer

pytestmark = pytest.mark.js

ROOM = "/room/live"
RATE = 200  # messages per second


@pytest.fixture(scope="module", autouse=True)
def _js_client_installed() -> None:
    ensure_js_client_installed()


class App:
    def __init__(self, size: int) -> None:
        self.pond = PondSocket()
        self.refusing = False
        endpoint = self.pond.create_endpoint("/socket", self.handshake)
        self.endpoint = endpoint
        endpoint.create_channel("/room/:id", lambda ctx: ctx.accept()).history(size=size)

    def handshake(self, ctx: ConnectionContext) -> None:
        if self.refusing:
            ctx.decline(503, "down for a moment")
        else:
            ctx.accept()

    async def tick(self, count: int) -> None:
        for n in range(count):
            self.endpoint.broadcast(ROOM, "tick", {"n": n})
            await asyncio.sleep(1 / RATE)


@contextlib.asynccontextmanager
async def serving(size: int) -> AsyncIterator[tuple[App, str]]:
    app = App(size)
    server = StandaloneServer(app.pond, "127.0.0.1", 0)
    port = await server.start()
    try:
        yield app, f"ws://127.0.0.1:{port}/socket"
    finally:
        await server.aclose()


def ticks(js: JSClientHarness, client: str) -> list[int]:
    return [e["payload"]["n"] for e in js.events(type="message", client=client, event="tick")]


def signals(js: JSClientHarness, client: str) -> list[dict[str, Any]]:
    return [e["payload"] for e in js.events(type="message", client=client, event="recovery")]


async def cut_for_three_seconds(app: App, harness: JSClientHarness, url: str) -> None:
    await harness.command("connect", client="a", url=url)
    # A listener keeps the channel open on the server while the client is away.
    await harness.command("connect", client="keeper", url=url)
    await harness.command("join", client="keeper", channel=ROOM)
    await harness.command("join", client="a", channel=ROOM, params={}, trackPosition=True)
    ticker = asyncio.create_task(app.tick(RATE * 6))
    try:
        await asyncio.sleep(1.5)
        app.refusing = True
        await harness.command("drop", client="a")  # the TCP stream dies; it will reconnect
        await asyncio.sleep(3.0)
        app.refusing = False
        await ticker
    finally:
        ticker.cancel()


async def test_npm_client_recovers_every_message_in_order() -> None:
    async with serving(size=2000) as (app, url):
        js = await JSClientHarness.start()
        try:
            await cut_for_three_seconds(app, js, url)
            total = RATE * 6
            # The rejoin's signal, which follows the replayed broadcasts (the last tick may be
            # among them: the client's backoff can outlast the stream).
            await js.wait_event(
                lambda e: (
                    e.get("event") == "recovery"
                    and e["client"] == "a"
                    and e["payload"]["reason"] != "not_requested"
                ),
                timeout=20,
            )
            await js.wait_event(
                lambda e: (
                    e.get("event") == "tick"
                    and e["client"] == "a"
                    and e["payload"]["n"] == total - 1
                ),
                timeout=20,
            )
            got = ticks(js, "a")
            assert got == list(range(total)), f"{len(got)} of {total}, first gap near {_gap(got)}"
            first, again = signals(js, "a")[0], signals(js, "a")[-1]
            assert first["reason"] == "not_requested"
            assert again["recovered"] is True and again["missed"] > RATE * 2, signals(js, "a")
        finally:
            await js.close()


async def test_npm_client_beyond_the_window_is_told_to_reload() -> None:
    async with serving(size=50) as (app, url):
        js = await JSClientHarness.start()
        try:
            await cut_for_three_seconds(app, js, url)
            for _ in range(2):  # the first join's, then the rejoin's (its backoff: up to ~8 s)
                await js.wait_event(
                    event_matches(type="message", client="a", event="recovery"), timeout=20
                )
            again = signals(js, "a")[-1]
            assert again["recovered"] is False and again["reason"] == "too_old", signals(js, "a")
            got = ticks(js, "a")
            assert got == sorted(set(got))  # never a duplicate nor out of order
        finally:
            await js.close()


def _gap(got: list[int]) -> int | None:
    for i, n in enumerate(got):
        if n != i:
            return i
    return None
