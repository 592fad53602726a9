"""Channel history on the core side: positions, what a member has seen, catching up.

A channel of a lobby with history (``lobby.history(size=..., ttl=...)``) does not deliver
its broadcasts at once: it hands them to its :class:`Recorder`, which stores each one
(giving it an *offset* within an *epoch*) and then has the channel deliver it, in offset
order, with the position in the payload under :data:`POSITION_KEY`. The recorder does the
I/O; this module only keeps the per-member bookkeeping that makes delivery exactly-once:
the last offset each member got, and the frames held for a member while it catches up.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from pondsocket.errors import UsageError

if TYPE_CHECKING:
    from pondsocket.core.channel import Channel
    from pondsocket.core.relay import Recipients

POSITION_KEY = "_position"
"""The payload key of a recorded broadcast's position: ``{"offset": int, "epoch": str}``.
Reserved on channels with history: the server sets it; a value sent by a client is replaced."""

RECOVER_KEY = "recover"
"""The join-params key a client rejoins with: ``{"recover": {"offset": n, "epoch": "..."}}``."""

RECOVERY_EVENT = "recovery"
"""``SYSTEM`` event sent after every join of a history channel (see docs/recovery.md)."""

CONTINUITY_LOST_EVENT = "continuity_lost"
"""``SYSTEM`` event telling members that messages of the channel may have been lost."""

HOLD_LIMIT = 10_000
"""Live messages held for one member while it catches up; past this, its recovery fails."""


@dataclass(frozen=True, slots=True)
class HistoryConfig:
    """How much of each channel's broadcasts a lobby keeps: the last ``size`` messages,
    none older than ``ttl`` seconds. A channel idle for ``meta_ttl`` seconds forgets its
    position and starts a new epoch."""

    size: int = 100
    ttl: float = 300.0
    meta_ttl: float = 86_400.0

    def __post_init__(self) -> None:
        if not isinstance(self.size, int) or not 1 <= self.size <= 100_000:
            raise UsageError(f"history size must be an int from 1 to 100000, not {self.size!r}")
        for name in ("ttl", "meta_ttl"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
                raise UsageError(f"history {name} must be a positive number of seconds")
        if self.meta_ttl < self.ttl:
            raise UsageError("history meta_ttl must be at least ttl")


@dataclass(frozen=True, slots=True)
class Position:
    """Where a channel's stream is: the last offset, in an epoch."""

    offset: int
    epoch: str

    def as_payload(self) -> dict[str, Any]:
        return {"offset": self.offset, "epoch": self.epoch}


INVALID = "invalid"


def requested_position(join_params: dict[str, Any]) -> Position | str | None:
    """The position a join asks to recover from: ``None`` if it asks nothing,
    :data:`INVALID` if the ``recover`` value is malformed."""
    value = join_params.get(RECOVER_KEY)
    if value is None:
        return None
    return _position(value) or INVALID


def position_of(payload: dict[str, Any]) -> Position | None:
    """The position a peer node put in a recorded broadcast, if well-formed."""
    return _position(payload.get(POSITION_KEY))


def _position(value: object) -> Position | None:
    if not isinstance(value, dict):
        return None
    offset, epoch = value.get("offset"), value.get("epoch")
    if (
        isinstance(offset, int)
        and not isinstance(offset, bool)
        and 0 <= offset < 2**63
        and isinstance(epoch, str)
        and 0 < len(epoch) <= 64
    ):
        return Position(offset, epoch)
    return None


@dataclass(slots=True)
class Recorded:
    """One stored broadcast, as the channel delivers it (not frozen: a frozen dataclass's
    ``__init__`` costs a microsecond more, once per broadcast; nothing changes it)."""

    offset: int
    epoch: str
    event: str
    payload: dict[str, Any]
    """The app's payload; :meth:`positioned` adds the position."""
    recipients: Recipients
    sender_id: str
    request_id: str
    framed: dict[str, Any] | None = field(default=None, compare=False, repr=False)
    """:meth:`positioned`'s result, built once and shared by every recipient."""

    def positioned(self) -> dict[str, Any]:
        framed = self.framed
        if framed is None:
            framed = {**self.payload, POSITION_KEY: {"offset": self.offset, "epoch": self.epoch}}
            self.framed = framed
        return framed


class Recorder(Protocol):
    """Stores a history channel's broadcasts and has the channel deliver them in order."""

    def record(
        self,
        channel: Channel,
        event: str,
        payload: dict[str, Any],
        recipients: Recipients,
        sender_id: str,
        request_id: str,
    ) -> None:
        """A local broadcast: store it, then deliver it here and tell the other nodes."""

    def received(self, channel: Channel, position: Position, recorded: Recorded) -> None:
        """A recorded broadcast from another node: deliver it in order."""

    def recover(self, channel: Channel, user_id: str, since: Position | str | None) -> None:
        """A member just joined (and is held): catch it up, then release it."""

    def forget(self, channel: Channel) -> None:
        """The channel closed on this node."""

    async def read(self, channel: Channel, after: int, limit: int) -> list[Recorded]:
        """The stored broadcasts after offset ``after`` (for the app)."""
        ...

    async def wait_for_room(self) -> None:
        """Return when the store keeps up again (backpressure for client input)."""


@dataclass(slots=True)
class _Hold:
    at: int | None = None
    """The last offset delivered here when the hold began (``None``: none yet)."""
    epoch: str | None = None
    messages: list[Recorded] = field(default_factory=list)
    overflowed: bool = False


class MemberPositions:
    """Who of one history channel's members must not get the next broadcasts yet.

    The channel delivers in offset order, so in the steady state every member simply gets
    every broadcast and nothing is checked per member. Only a member that is catching up
    (*held*: its live broadcasts wait) or has just caught up (a *floor*: it already has
    every offset up to it, from the store) is looked at; a floor goes as soon as the live
    stream passes it."""

    def __init__(self) -> None:
        self.epoch: str | None = None
        self.last: int | None = None
        """The last offset delivered to this channel's members here."""
        self._floors: dict[str, int] = {}
        self._held: dict[str, _Hold] = {}

    def admit(self, recorded: Recorded) -> set[str] | None:
        """The members that must not get ``recorded`` now (held ones keep it for later);
        ``None``: nobody is excluded."""
        if recorded.epoch != self.epoch:
            self.reset(recorded.epoch)
        self.last = recorded.offset
        if not self._held and not self._floors:
            return None
        skip: set[str] = set()
        for uid, hold in self._held.items():
            if len(hold.messages) < HOLD_LIMIT:
                hold.messages.append(recorded)
            else:
                hold.overflowed = True
            skip.add(uid)
        floors = self._floors
        for uid, floor in list(floors.items()):
            if recorded.offset <= floor:
                skip.add(uid)
            else:
                del floors[uid]  # offsets only grow from here: no more checks
        return skip

    def reset(self, epoch: str) -> None:
        """The stream restarted (a new epoch): what members had says nothing any more."""
        self.epoch, self.last = epoch, None
        self._floors.clear()

    def hold(self, user_id: str) -> None:
        self._held[user_id] = _Hold(self.last, self.epoch)

    def is_held(self, user_id: str) -> bool:
        return user_id in self._held

    def release(
        self, user_id: str, replay: list[Recorded], start: Position | None
    ) -> tuple[list[Recorded], list[Recorded], bool, int | None]:
        """End a member's hold. Before ``replay`` it is at ``start``; ``None``: nothing is
        replayed and it starts where it joined (it gets every broadcast delivered here
        since then). Returns the replay to send, then the held messages to send after the
        recovery signal (both past what it has), whether the hold overflowed, and (for
        ``start=None``) the offset it joined at, if known: the position to tell it."""
        hold = self._held.pop(user_id, _Hold())
        floor, joined_at = 0, None
        if start is not None:
            if self.epoch is None:
                self.epoch = start.epoch
            if start.epoch == self.epoch:
                floor = start.offset
        elif hold.at is not None and hold.epoch == self.epoch:
            joined_at = hold.at
        else:
            first = next((r for r in hold.messages if r.epoch == self.epoch), None)
            joined_at = None if first is None else first.offset - 1
        replayed, floor = self._past(floor, replay)
        later, floor = self._past(floor, hold.messages)
        if floor:
            self._floors[user_id] = floor
        return replayed, later, hold.overflowed, joined_at

    def _past(self, floor: int, messages: list[Recorded]) -> tuple[list[Recorded], int]:
        out: list[Recorded] = []
        for recorded in messages:
            if recorded.epoch == self.epoch and recorded.offset > floor:
                floor = recorded.offset
                out.append(recorded)
        return out, floor

    def forget(self, user_id: str) -> None:
        self._floors.pop(user_id, None)
        self._held.pop(user_id, None)
