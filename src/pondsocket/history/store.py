"""The ``HistoryStore`` interface: where a deployment keeps its channels' recent broadcasts.

A store holds, per channel key, an *epoch* (a random id, new whenever the stream starts
over: first use, data lost, idle past ``meta_ttl``), the *top* offset (the last one given)
and the last ``size`` records, each with its offset and the time it was stored. Offsets
start at 1, grow by one per record and are never reused within an epoch. A store is
shared by every node of a cluster; its conformance suite is
``tests/history/conformance.py``.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass

from pondsocket.errors import PondSocketError


class HistoryUnavailableError(PondSocketError):
    """The store could not be reached or answered badly; the call may be retried."""


@dataclass(frozen=True, slots=True)
class Stored:
    """One record a store holds."""

    offset: int
    """Its offset in its stream's epoch (from 1, one more per record)."""
    data: bytes
    """The record as appended."""
    time: float
    """When it was stored (seconds since the epoch, the storing node's clock)."""


@dataclass(frozen=True, slots=True)
class Slice:
    """What a read returns: the stream's epoch and top, and the records asked for that the
    store still holds (in offset order; none older than the ``ttl`` of the read)."""

    epoch: str
    """The stream's epoch: a random id, new whenever the stream starts over."""
    top: int
    """The last offset the stream gave out."""
    records: list[Stored]
    """The records read, in offset order."""


class HistoryStore(abc.ABC):
    """Where channels' recent broadcasts are kept, shared by every node of a cluster: pass
    one to ``PondSocket(history=...)`` (the model: :mod:`pondsocket.history.store`)."""

    @abc.abstractmethod
    async def append(
        self, key: str, records: Sequence[bytes], *, size: int, ttl: float, meta_ttl: float
    ) -> tuple[str, list[int]]:
        """Store ``records`` (in this order) at the end of ``key``'s stream, keeping its
        last ``size``; returns the epoch and each record's offset (increasing; other nodes'
        records may fall between them). Every record the service stores is unique (it
        carries an id), so a store may keep one copy of a record sent twice (a retry after a
        timeout) and answer with its first offset. Raises :class:`HistoryUnavailableError`."""

    @abc.abstractmethod
    async def read(self, key: str, after: int, limit: int, *, ttl: float, meta_ttl: float) -> Slice:
        """Up to ``limit`` records after offset ``after`` (``limit`` 0: only the position).
        Creates the stream's epoch if it has none, so a position read now stays valid.
        Raises :class:`HistoryUnavailableError`."""

    async def close(self) -> None:  # noqa: B027 - optional: stores without resources
        """Release what the store holds (a store passed in by the app is the app's)."""
