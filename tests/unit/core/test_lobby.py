"""Lobbies (core/lobby.py): event handlers found by pattern, outgoing handlers registered."""

from __future__ import annotations

import pytest
from tests.unit.core.chat_app import LOBBY, build, connect

from pondsocket import OutgoingContext, UsageError


async def test_event_reply_and_pattern_params() -> None:
    pond, _ = build()
    conn = await connect(pond, "alice")
    await conn.join(LOBBY)
    reply = await conn.request(LOBBY, "echo", {"x": 1})
    assert (reply["action"], reply["event"], reply["payload"]) == (
        "SYSTEM",
        "echo-response",
        {"x": 1},
    )
    assert (await conn.request(LOBBY, "vote/yes"))["payload"] == {"choice": "yes"}


def test_outgoing_handlers_must_be_plain_functions() -> None:
    pond, _ = build()
    found = pond.endpoints[0].find_lobby(LOBBY)
    assert found is not None

    async def slow(ctx: OutgoingContext) -> None: ...

    with pytest.raises(UsageError):
        found[0].on_outgoing("x", slow)  # type: ignore[type-var]  # the runtime check under test
