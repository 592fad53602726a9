"""One channel instance: its members, their assigns and presence, and delivery to them.

Everything here is synchronous: a broadcast encodes the frame once and hands the same
bytes to each recipient's outlet without awaiting (outgoing handlers that transform a
payload are the exception: they take a per-recipient path).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

from pondsocket.core.options import PondOptions
from pondsocket.core.presence import PresenceChange, PresenceTable
from pondsocket.core.relay import (
    ALL_EXCEPT_SENDER,
    ALL_USERS,
    SENDER_CHANNEL,
    Recipients,
    Relay,
)
from pondsocket.core.user import Member, User
from pondsocket.errors import NotJoinedError, PayloadError
from pondsocket.wire.codec import encode_frame, new_request_id
from pondsocket.wire.messages import ServerAction

if TYPE_CHECKING:
    from collections.abc import Coroutine

    from pondsocket.core.lobby import Lobby

log = logging.getLogger("pondsocket.channel")


class ChannelHost(Protocol):
    """What a channel needs from the endpoint that owns it."""

    options: PondOptions
    path: str
    relay: Relay

    def spawn(self, coro: Coroutine[Any, Any, None], what: str) -> None: ...

    def drop_channel(self, channel: Channel) -> None: ...


def check_object(value: object, what: str) -> dict[str, Any]:
    """Payloads, presence and assigns are JSON objects: the JS client rejects anything else."""
    if isinstance(value, dict):
        return value
    if isinstance(value, Mapping):
        return dict(value)
    raise PayloadError(f"{what} must be a dict (a JSON object), got {type(value).__name__}")


class Channel:
    """A named room. Obtain one from ``endpoint.get_channel(name)`` or a handler context."""

    def __init__(self, name: str, lobby: Lobby, host: ChannelHost) -> None:
        self.name = name
        self._lobby = lobby
        self._host = host
        self._members: dict[str, Member] = {}
        self._presence = PresenceTable()
        self._pending_joins = 0
        self.closed = False

    def __repr__(self) -> str:
        return f"<Channel {self.name!r} members={len(self._members)}>"

    # -- reading -------------------------------------------------------------

    @property
    def lobby(self) -> Lobby:
        return self._lobby

    @property
    def user_ids(self) -> list[str]:
        return list(self._members)

    def has_user(self, user_id: str) -> bool:
        return user_id in self._members

    def get_user(self, user_id: str) -> User | None:
        member = self._members.get(user_id)
        if member is None:
            return None
        return User(user_id, dict(member.assigns), self._presence.get(user_id))

    def get_presence(self) -> dict[str, dict[str, Any]]:
        """Presence of every tracked user, by user id."""
        return self._presence.as_dict()

    def get_assigns(self) -> dict[str, dict[str, Any]]:
        """Assigns of every member, by user id."""
        return {uid: dict(m.assigns) for uid, m in self._members.items()}

    # -- delivery ------------------------------------------------------------

    @property
    def endpoint_path(self) -> str:
        return self._host.path

    def broadcast(
        self,
        event: str,
        payload: dict[str, Any],
        *,
        request_id: str | None = None,
        sender_id: str = SENDER_CHANNEL,
    ) -> None:
        """Send ``event`` to every member, on every node."""
        request_id = request_id or new_request_id()
        self._deliver(ServerAction.BROADCAST, event, payload, self._members.values(), request_id)
        self._host.relay.message_sent(self, event, payload, ALL_USERS, sender_id, request_id)

    def broadcast_from(
        self, sender_id: str, event: str, payload: dict[str, Any], *, request_id: str | None = None
    ) -> None:
        """Send ``event`` to every member except ``sender_id``, on every node."""
        request_id = request_id or new_request_id()
        recipients = [m for uid, m in self._members.items() if uid != sender_id]
        self._deliver(ServerAction.BROADCAST, event, payload, recipients, request_id)
        self._host.relay.message_sent(
            self, event, payload, ALL_EXCEPT_SENDER, sender_id, request_id
        )

    def broadcast_to(
        self,
        event: str,
        payload: dict[str, Any],
        user_ids: str | Iterable[str],
        *,
        request_id: str | None = None,
        sender_id: str = SENDER_CHANNEL,
    ) -> None:
        """Send ``event`` to the listed members; raises if one of them is not a member."""
        request_id = request_id or new_request_id()
        members = self._members_of(user_ids)
        self._deliver(ServerAction.BROADCAST, event, payload, members, request_id)
        ids = [m.id for m in members]
        self._host.relay.message_sent(self, event, payload, ids, sender_id, request_id)

    def deliver_remote(
        self,
        event: str,
        payload: dict[str, Any],
        recipients: Recipients,
        sender_id: str,
        request_id: str | None,
    ) -> None:
        """Deliver a message another node sent to this channel's local members."""
        if recipients == ALL_USERS:
            members: Iterable[Member] = self._members.values()
        elif recipients == ALL_EXCEPT_SENDER:
            members = [m for uid, m in self._members.items() if uid != sender_id]
        else:
            members = [self._members[uid] for uid in recipients if uid in self._members]
        self._deliver(ServerAction.BROADCAST, event, payload, members, request_id)

    def send_system(
        self, event: str, payload: dict[str, Any], user_ids: Iterable[str], request_id: str
    ) -> None:
        """A direct ``SYSTEM`` frame (replies, notices); outgoing handlers do not apply."""
        frame = encode_frame(ServerAction.SYSTEM, event, self.name, request_id, payload)
        for member in self._members_of(user_ids):
            member.outlet.send(frame)

    def _members_of(self, user_ids: str | Iterable[str]) -> list[Member]:
        ids = [user_ids] if isinstance(user_ids, str) else list(user_ids)
        missing = [uid for uid in ids if uid not in self._members]
        if missing:
            raise NotJoinedError(f"not members of channel {self.name!r}: {', '.join(missing)}")
        return [self._members[uid] for uid in dict.fromkeys(ids)]

    def _deliver(
        self,
        action: ServerAction,
        event: str,
        payload: dict[str, Any],
        recipients: Iterable[Member],
        request_id: str | None,
    ) -> None:
        check_object(payload, "payload")
        request_id = request_id or new_request_id()
        frame = encode_frame(action, event, self.name, request_id, payload)
        interceptors = self._lobby.outgoing_handlers_for(event)
        if not interceptors:
            for member in recipients:
                member.outlet.send(frame)
            return
        from pondsocket.core.contexts import OutgoingContext  # import cycle: contexts use Channel

        for member in recipients:
            ctx = OutgoingContext(self, event, payload, member)
            for handler in interceptors:
                handler(ctx)
                if ctx.blocked:
                    break
            if ctx.blocked:
                continue
            if ctx.payload is payload:
                member.outlet.send(frame)
            else:
                member.outlet.send(encode_frame(action, event, self.name, request_id, ctx.payload))

    # -- presence ------------------------------------------------------------

    def track(self, user_id: str, presence: dict[str, Any]) -> None:
        """Start tracking ``user_id`` with ``presence``; tracked users get a JOIN frame."""
        self._member(user_id)
        self._publish_presence(
            self._presence.track(user_id, dict(check_object(presence, "presence")))
        )

    def update_presence(self, user_id: str, presence: dict[str, Any]) -> None:
        """Replace the presence of a tracked user; tracked users get an UPDATE frame."""
        self._member(user_id)
        change = self._presence.update(user_id, dict(check_object(presence, "presence")))
        self._publish_presence(change)

    def upsert_presence(self, user_id: str, presence: dict[str, Any]) -> None:
        """Track the user if it is not tracked yet, else update its presence."""
        if user_id in self._presence:
            self.update_presence(user_id, presence)
        else:
            self.track(user_id, presence)

    def untrack(self, user_id: str) -> None:
        """Stop tracking ``user_id`` (no-op if untracked); the rest get a LEAVE frame."""
        change = self._presence.untrack(user_id)
        if change is not None:
            self._publish_presence(change)

    def _publish_presence(self, change: PresenceChange) -> None:
        # Every frame carries the full list: the JS client replaces its list with it.
        payload = {"changed": change.changed, "presence": self._presence.values()}
        frame = encode_frame(
            ServerAction.PRESENCE, change.event.value, self.name, new_request_id(), payload
        )
        for user_id in self._presence.user_ids():
            member = self._members.get(user_id)
            if member is not None:
                member.outlet.send(frame)

    # -- assigns -------------------------------------------------------------

    def assign(self, user_id: str, assigns: dict[str, Any]) -> None:
        """Merge ``assigns`` into the member's assigns in this channel."""
        self._member(user_id).assigns.update(check_object(assigns, "assigns"))

    # -- membership ----------------------------------------------------------

    def _member(self, user_id: str) -> Member:
        member = self._members.get(user_id)
        if member is None:
            raise NotJoinedError(f"user {user_id} is not a member of channel {self.name!r}")
        return member

    def begin_join(self) -> None:
        self._pending_joins += 1

    def end_join(self) -> None:
        self._pending_joins -= 1
        self._drop_if_empty()

    def add_member(self, member: Member) -> None:
        self._members[member.id] = member
        member.connection.channels[self.name] = self

    def remove_user(self, user_id: str, reason: str = "removed") -> None:
        """Remove a member: its presence leaves, the leave handlers run, it gets nothing more."""
        member = self._member(user_id)
        del self._members[user_id]
        member.connection.channels.pop(self.name, None)
        presence = self._presence.get(user_id)
        self.untrack(user_id)
        user = User(user_id, member.assigns, presence)
        for handler in self._lobby.leave_handlers:
            self._host.spawn(self._lobby.run_leave(handler, self, user, reason), "leave handler")
        self._drop_if_empty()

    def evict(self, user_id: str, reason: str = "You have been banned from the channel") -> None:
        """Notify the user and the channel, then remove the user (reason ``evicted:<reason>``)."""
        self._member(user_id)
        options = self._host.options
        self.send_system(
            options.eviction_notice_event,
            {"message": reason, "code": 403},
            [user_id],
            new_request_id(),
        )
        self.send_system(
            options.eviction_broadcast_event,
            {"userId": user_id, "reason": reason},
            list(self._members),
            new_request_id(),
        )
        self.remove_user(user_id, f"evicted:{reason}")

    def _drop_if_empty(self) -> None:
        if not self._members and self._pending_joins == 0 and not self.closed:
            self.closed = True
            self._host.drop_channel(self)
