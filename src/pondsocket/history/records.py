"""What the history service stores and answers: the record format, the recovery verdict
and the ``recovery`` signal, and its counters. Pure functions and data."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from pondsocket.core.flow import Sender
from pondsocket.core.history import HistoryConfig, Position, Recorded
from pondsocket.core.relay import ALL_EXCEPT_SENDER, ALL_USERS, Recipients
from pondsocket.history.store import Slice, Stored

if TYPE_CHECKING:
    from pondsocket.core.channel import Channel


@dataclass(slots=True)
class Pending:
    channel: Channel
    key: str
    config: HistoryConfig
    event: str
    payload: dict[str, Any]
    recipients: Recipients
    sender_id: str
    request_id: str

    uid: str
    sender: Sender | None = None
    """The client whose message caused it (flow control holds it back, see core/flow.py)."""
    data: bytes | None = None

    def encode(self) -> bytes:
        """The record, encoded once: a retry sends the very same bytes."""
        if self.data is None:
            self.data = self._encode()
        return self.data

    def _encode(self) -> bytes:
        uid = self.uid
        return orjson.dumps(
            {
                "i": uid,  # unique per record: a store may drop a retried copy by it
                "e": self.event,
                "p": self.payload,
                "r": self.recipients,
                "s": self.sender_id,
                "q": self.request_id,
            }
        )


@dataclass(slots=True)
class HistoryStats:
    recorded: int = 0
    unrecorded: int = 0
    """Broadcasts delivered without being stored (the queue was full)."""
    gaps_filled: int = 0
    gaps_lost: int = 0
    recoveries: int = 0
    recoveries_failed: int = 0
    store_errors: int = 0
    invalid_records: int = 0


def decode_record(stored: Stored, epoch: str) -> Recorded | None:
    """A stored record, if it is one of ours (the store is shared, so it is checked)."""
    try:
        value = orjson.loads(stored.data)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(value, dict):
        return None
    event, payload, recipients = value.get("e"), value.get("p"), value.get("r")
    sender, request_id = value.get("s"), value.get("q")
    if (
        isinstance(event, str)
        and isinstance(payload, dict)
        and recipients in (ALL_USERS, ALL_EXCEPT_SENDER)
        and isinstance(sender, str)
        and isinstance(request_id, str)
    ):
        return Recorded(stored.offset, epoch, event, payload, recipients, sender, request_id)
    return None


def replay_for(since: Position, found: Slice) -> tuple[str | None, list[Recorded]]:
    if since.epoch != found.epoch:
        return "epoch_changed", []
    if since.offset > found.top:
        return "invalid", []
    records = [r for r in found.records if r.offset > since.offset]
    missed = found.top - since.offset
    if len(records) != missed or (records and records[0].offset != since.offset + 1):
        return "too_old", []
    replay = [decode_record(r, found.epoch) for r in records]
    if any(r is None for r in replay):
        return "too_old", []
    return None, [r for r in replay if r is not None]


def signal(recovered: bool, reason: str | None, missed: int, at: Position | None) -> dict[str, Any]:
    return {
        "recovered": recovered,
        "reason": reason,
        "missed": missed,
        "offset": None if at is None else at.offset,
        "epoch": None if at is None else at.epoch,
    }


def finish(
    channel: Channel,
    user_id: str,
    start: Position | None,
    replay: list[Recorded],
    signal: dict[str, Any],
) -> None:
    if channel.recorded is not None:
        channel.recorded.finish_recovery(user_id, start, replay, signal)
