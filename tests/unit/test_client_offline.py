"""The client on its own: the join refusal read from each server's form of the frame,
and telling a late broadcast of a history channel from a duplicate."""

from __future__ import annotations

from typing import Any

import pytest

from pondsocket.client import JoinDeclinedError, PondClient
from pondsocket.client.frames import ServerFrame


@pytest.mark.parametrize(
    ("payload", "status", "code"),
    [
        # ours and JS: status and a string code
        ({"message": "no", "status": 403, "code": "UNAUTHORIZED_JOIN_REQUEST"}, 403,
         "UNAUTHORIZED_JOIN_REQUEST"),
        ({"message": "no", "statusCode": 401}, 401, None),
        # Go: a numeric code and details.statusCode
        ({"message": "no", "code": 403, "details": {"statusCode": 403}}, 403, None),
        # upstream Python 0.0.7: only a numeric code
        ({"message": "no", "code": 409}, 409, None),
        # nothing usable: no status, never a bool taken for a number
        ({"message": "no", "code": True, "status": "x"}, None, None),
    ],
)  # fmt: skip
def test_status_and_code(payload: dict[str, Any], status: int | None, code: str | None) -> None:
    error = JoinDeclinedError("/room/1", payload)
    assert (error.status, error.code, error.message) == (status, code, "no")


def _frame(event: str, payload: dict[str, Any], action: str = "BROADCAST") -> ServerFrame:
    return ServerFrame(action, event, "/h/1", "r", payload)


def _said(offset: int, epoch: str = "e1") -> ServerFrame:
    return _frame("said", {"n": offset, "_position": {"offset": offset, "epoch": epoch}})


def test_a_broadcast_arriving_just_below_the_position_is_new_a_repeat_is_not() -> None:
    channel = PondClient("ws://127.0.0.1:1/socket").channel("/h/1")
    got: list[int] = []
    channel.on("said", lambda message: got.append(message.payload["n"]))
    signal = {"recovered": False, "reason": "not_requested", "offset": 10, "epoch": "e1"}
    channel.handle(_frame("recovery", signal, "SYSTEM"))
    for offset in (9, 11, 9, 11, 12, 8, 10):  # 9, 8, 10: stored before the told position
        channel.handle(_said(offset))
    assert got == [9, 11, 12, 8, 10] and channel.duplicates == 2
    assert channel.position == {"offset": 12, "epoch": "e1"}  # never lowered
    channel.handle(_said(12 - 64))  # far below: an old copy, not a late one
    channel.handle(_said(3, "e2"))  # a new epoch starts over
    assert got[-1] == 3 and channel.duplicates == 3
    assert channel.position == {"offset": 3, "epoch": "e2"}
