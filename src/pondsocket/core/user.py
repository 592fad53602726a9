"""Connection and member records, and the read-only user snapshot handed to handlers."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pondsocket.core.outlet import Outlet

if TYPE_CHECKING:
    from pondsocket.core.channel import Channel


@dataclass(frozen=True, slots=True)
class User:
    """A user as handlers see it: a snapshot, not a live object."""

    id: str
    """The user id: its connection's id."""
    assigns: dict[str, Any]
    """Its assigns (in a channel: that channel's copy)."""
    presence: dict[str, Any] | None = None
    """Its presence in the channel, or ``None`` if untracked."""


@dataclass(slots=True, eq=False)
class Connection:
    """One accepted client connection (= one user)."""

    id: str
    outlet: Outlet
    assigns: dict[str, Any]
    endpoint_path: str
    channels: dict[str, Channel] = field(default_factory=dict)
    closed: bool = False
    address: str | None = None
    """The client's address (behind trusted proxies: the forwarded one), for the limits."""


@dataclass(slots=True, eq=False)
class Member:
    """A connection's membership of one channel, with that channel's copy of its assigns."""

    connection: Connection
    assigns: dict[str, Any]

    @property
    def id(self) -> str:
        return self.connection.id

    @property
    def outlet(self) -> Outlet:
        return self.connection.outlet
