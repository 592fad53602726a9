"""The seam between a channel and the rest of the cluster.

A channel delivers to its local members itself and tells its relay what happened, so
other nodes can do their part. The relay must not block: it queues and returns.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from pondsocket.core.channel import Channel

ALL_USERS = "ALL_USERS"
ALL_EXCEPT_SENDER = "ALL_EXCEPT_SENDER"
SENDER_CHANNEL = "CHANNEL"
"""``fromUserId`` of messages the server (not a user) sent."""

Recipients = str | list[str]
"""``ALL_USERS``, ``ALL_EXCEPT_SENDER`` or an explicit list of user ids."""


class Relay(Protocol):
    def channel_opened(self, channel: Channel) -> None: ...

    def channel_closed(self, channel: Channel) -> None: ...

    def message_sent(
        self,
        channel: Channel,
        event: str,
        payload: dict[str, Any],
        recipients: Recipients,
        sender_id: str,
        request_id: str,
    ) -> None: ...


class NullRelay:
    """A relay for a server that is not part of a cluster."""

    def channel_opened(self, channel: Channel) -> None:
        pass

    def channel_closed(self, channel: Channel) -> None:
        pass

    def message_sent(
        self,
        channel: Channel,
        event: str,
        payload: dict[str, Any],
        recipients: Recipients,
        sender_id: str,
        request_id: str,
    ) -> None:
        pass
