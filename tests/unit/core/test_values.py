"""Checks of application values (core/values.py)."""

from __future__ import annotations

from tests.unit.core.chat_app import LOBBY, build, connect


# check_object refuses the list with PayloadError; the session answers HANDLER_ERROR.
async def test_non_object_broadcast_payload_raises_payload_error() -> None:
    pond, _ = build()
    conn = await connect(pond, "a")
    await conn.join(LOBBY)
    answer = await conn.request(LOBBY, "bad-payload")
    assert answer["event"] == "HANDLER_ERROR"
