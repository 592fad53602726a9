"""Checks of application values (core/values.py)."""

from __future__ import annotations

from types import MappingProxyType

import pytest
from tests.unit.core.chat_app import LOBBY, build, connect

from pondsocket.core.values import check_object
from pondsocket.errors import PayloadError


# check_object refuses the list with PayloadError; the session answers HANDLER_ERROR.
async def test_non_object_broadcast_payload_raises_payload_error() -> None:
    pond, _ = build()
    conn = await connect(pond, "a")
    await conn.join(LOBBY)
    answer = await conn.request(LOBBY, "bad-payload")
    assert answer["event"] == "HANDLER_ERROR"


def test_check_object_takes_mappings_and_refuses_the_rest_with_payload_error() -> None:
    assert check_object({"a": 1}, "payload") == {"a": 1}
    assert check_object(MappingProxyType({"b": 2}), "payload") == {"b": 2}
    for value in ([1, 2], "text", 3, None):
        with pytest.raises(PayloadError, match="payload must be a dict"):
            check_object(value, "payload")
