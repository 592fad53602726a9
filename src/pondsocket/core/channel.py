"""One channel instance: its members, their assigns and presence, and delivery to them.

Everything here is synchronous: a broadcast encodes the frame once and hands the same
bytes to each recipient's outlet without awaiting (outgoing handlers that transform a
payload are the exception: they take a per-recipient path).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Iterable
from typing import TYPE_CHECKING, Any, Protocol

from pondsocket.core.contexts import OutgoingContext
from pondsocket.core.history import CONTINUITY_LOST_EVENT, Recorded, Recorder
from pondsocket.core.metrics import Metrics
from pondsocket.core.options import PondOptions
from pondsocket.core.presence import PresenceChange, PresenceTable
from pondsocket.core.ratelog import RateLimitedLog
from pondsocket.core.recorded import RecordedStream
from pondsocket.core.relay import (
    ALL_EXCEPT_SENDER,
    ALL_USERS,
    SENDER_CHANNEL,
    Recipients,
    Relay,
)
from pondsocket.core.remote import RemoteUser, RemoteUsers
from pondsocket.core.user import Member, User
from pondsocket.core.values import check_object
from pondsocket.errors import NotJoinedError, PresenceTooLargeError, UsageError
from pondsocket.wire.codec import encode_frame, encoded_size, new_request_id
from pondsocket.wire.messages import ServerAction

if TYPE_CHECKING:
    from collections.abc import Coroutine

    from pondsocket.core.lobby import Lobby

log = logging.getLogger("pondsocket.channel")
_refused_presence = RateLimitedLog(log)


class ChannelHost(Protocol):
    """What a channel needs from the endpoint that owns it."""

    options: PondOptions
    metrics: Metrics
    path: str
    relay: Relay
    recorder: Recorder | None

    def spawn(self, coro: Coroutine[Any, Any, None], what: str) -> None: ...

    def drop_channel(self, channel: Channel) -> None: ...

    def call_later(self, delay: float, callback: Callable[[], None]) -> Cancellable: ...


class Cancellable(Protocol):
    def cancel(self) -> None: ...


class Channel:
    """A named room. Obtain one from ``endpoint.get_channel(name)`` or a handler context."""

    def __init__(self, name: str, lobby: Lobby, host: ChannelHost) -> None:
        self.name = name
        self._lobby = lobby
        self._host = host
        self._members: dict[str, Member] = {}
        self._remote = RemoteUsers()
        self._presence = PresenceTable()  # local and remote tracked users
        self._pending_joins = 0
        self._presence_timer: Cancellable | None = None
        self._pending_presence: PresenceChange | None = None
        # Eviction notices a peer relayed to a local member ahead of its EVICT_USER.
        self._relayed_notices: dict[str, frozenset[str]] = {}
        # Channels with history: storing first, delivering in order (core/recorded.py).
        self.recorded = RecordedStream(self, host) if lobby.history_config is not None else None
        self.closed = False

    def __repr__(self) -> str:
        return f"<Channel {self.name!r} members={len(self._members)}>"

    # -- reading -------------------------------------------------------------

    @property
    def lobby(self) -> Lobby:
        return self._lobby

    @property
    def user_ids(self) -> list[str]:
        """Members connected to this node."""
        return list(self._members)

    @property
    def all_user_ids(self) -> list[str]:
        """Members on every node (remote ones as last announced by their nodes)."""
        return [*self._members, *(uid for uid, _ in self._remote.items())]

    def counts(self) -> tuple[int, int, int]:
        """Members on this node, members on every node, tracked presences: without copying
        anything (the admin page reads them for every channel each second)."""
        local = len(self._members)
        return local, local + len(self._remote), len(self._presence)

    def has_user(self, user_id: str) -> bool:
        """Whether ``user_id`` is a member connected to this node."""
        return user_id in self._members

    def knows_user(self, user_id: str) -> bool:
        """Whether ``user_id`` is a member on this node or on another one."""
        return user_id in self._members or user_id in self._remote

    def get_user(self, user_id: str) -> User | None:
        """A member's data, local or cached from its node; ``None`` if unknown."""
        member = self._members.get(user_id)
        if member is not None:
            return User(user_id, dict(member.assigns), self._presence.get(user_id))
        remote = self._remote.get(user_id)
        if remote is not None:
            return User(user_id, dict(remote.assigns), self._presence.get(user_id))
        return None

    async def fetch_user(
        self, user_id: str, *, fresh: bool = False, timeout: float | None = None
    ) -> User | None:
        """A member's data from wherever it is connected. Local members and (unless
        ``fresh``) known remote ones answer at once; otherwise the node hosting the user is
        asked (``None`` when nobody answers within ``timeout``)."""
        if user_id in self._members or (not fresh and user_id in self._remote):
            return self.get_user(user_id)
        return await self._host.relay.fetch_user(self, user_id, timeout)

    def get_presence(self) -> dict[str, dict[str, Any]]:
        """Presence of every tracked user on every node, by user id."""
        return self._presence.as_dict()

    def get_assigns(self) -> dict[str, dict[str, Any]]:
        """Assigns of every member on every node, by user id."""
        assigns = {uid: dict(m.assigns) for uid, m in self._members.items()}
        assigns.update((uid, dict(r.assigns)) for uid, r in self._remote.items())
        return assigns

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
        """Send ``event`` to every member, on every node. In a channel with history it is
        stored first, then delivered with its position (``payload["_position"]``)."""
        request_id = request_id or new_request_id()
        if self.recorded is not None and self.recorded.record(
            event, payload, ALL_USERS, sender_id, request_id
        ):
            return
        self._deliver(ServerAction.BROADCAST, event, payload, self._members.values(), request_id)
        self._host.relay.message_sent(self, event, payload, ALL_USERS, sender_id, request_id)

    def broadcast_from(
        self, sender_id: str, event: str, payload: dict[str, Any], *, request_id: str | None = None
    ) -> None:
        """Send ``event`` to every member except ``sender_id``, on every node."""
        request_id = request_id or new_request_id()
        if self.recorded is not None and self.recorded.record(
            event, payload, ALL_EXCEPT_SENDER, sender_id, request_id
        ):
            return
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
        """Send ``event`` to the listed members, wherever they are connected; raises
        :class:`NotJoinedError` if one of them is not a member."""
        request_id = request_id or new_request_id()
        ids = self._known_ids(user_ids)
        local = [self._members[uid] for uid in ids if uid in self._members]
        self._deliver(ServerAction.BROADCAST, event, payload, local, request_id)
        if len(local) < len(ids):  # only when someone is elsewhere: the rest is local work
            self._host.relay.message_sent(self, event, payload, ids, sender_id, request_id)

    def deliver_remote(
        self,
        event: str,
        payload: dict[str, Any],
        recipients: Recipients,
        sender_id: str,
        request_id: str | None,
        *,
        system: bool = False,
    ) -> None:
        """Deliver a message another node sent to this channel's local members. A
        ``system`` message (a notice) is a ``SYSTEM`` frame past the outgoing handlers, as
        it would be on the node that sent it."""
        options = self._host.options
        if event in (options.eviction_notice_event, options.eviction_broadcast_event):
            self._note_relayed_notice(event, payload, recipients)
        if (
            self.recorded is not None
            and not system
            and self.recorded.received(event, payload, recipients, sender_id, request_id)
        ):
            return
        members = self.recipients(recipients, sender_id)
        if system:
            frame = encode_frame(
                ServerAction.SYSTEM, event, self.name, request_id or new_request_id(), payload
            )
            for member in members:
                member.outlet.send(frame)
        else:
            self._deliver(ServerAction.BROADCAST, event, payload, members, request_id)

    def recipients(self, recipients: Recipients, sender_id: str) -> list[Member]:
        """The local members a message for ``recipients`` goes to."""
        if recipients == ALL_USERS:
            return list(self._members.values())
        if recipients == ALL_EXCEPT_SENDER:
            return [m for uid, m in self._members.items() if uid != sender_id]
        return [self._members[uid] for uid in recipients if uid in self._members]

    # -- history (channels of a lobby with ``history(...)``: core/recorded.py) --

    def continuity_lost(self, reason: str, epoch: str | None, *, reset: bool = False) -> None:
        """Tell the local members that broadcasts of this channel may have been lost
        (``SYSTEM``/``continuity_lost``); ``reset``: the stream restarted in ``epoch``."""
        if reset and self.recorded is not None and epoch is not None:
            self.recorded.positions.reset(epoch)
        payload = {"reason": reason, "epoch": epoch}
        frame = encode_frame(
            ServerAction.SYSTEM, CONTINUITY_LOST_EVENT, self.name, new_request_id(), payload
        )
        for member in self._members.values():
            member.outlet.send(frame)

    async def history(self, since: int = 0, *, limit: int = 100) -> list[Recorded]:
        """The stored broadcasts after offset ``since`` (at most ``limit``), oldest first.
        Raises :class:`UsageError` if the channel has no history."""
        recorder = self._host.recorder
        if self.recorded is None or recorder is None:
            raise UsageError(f"channel {self.name!r} has no history (see Lobby.history)")
        return await recorder.read(self, since, max(0, min(limit, 10_000)))

    def deliver_to(
        self, members: list[Member], event: str, payload: dict[str, Any], request_id: str
    ) -> None:
        """A broadcast frame to these members (outgoing handlers apply)."""
        self._deliver(ServerAction.BROADCAST, event, payload, members, request_id)

    def local_member(self, user_id: str) -> Member | None:
        return self._members.get(user_id)

    def _note_relayed_notice(
        self, event: str, payload: dict[str, Any], recipients: Recipients
    ) -> None:
        """Remember that a peer's eviction notice reached a local member (see
        :meth:`evicted_by_peer`). Kept only for members, dropped when they leave."""
        user_id: object
        if event == self._host.options.eviction_notice_event:
            if not isinstance(recipients, list) or len(recipients) != 1:
                return
            user_id, kind = recipients[0], "notice"
        else:
            user_id, kind = payload.get("userId"), "kicked"
        if isinstance(user_id, str) and user_id in self._members:
            seen = self._relayed_notices.get(user_id, frozenset())
            self._relayed_notices[user_id] = seen | {kind}

    def send_system(
        self, event: str, payload: dict[str, Any], user_ids: Iterable[str], request_id: str
    ) -> None:
        """A direct ``SYSTEM`` frame (replies, notices); outgoing handlers do not apply."""
        frame = encode_frame(ServerAction.SYSTEM, event, self.name, request_id, payload)
        for member in self._members_of(user_ids):
            member.outlet.send(frame)

    def _known_ids(self, user_ids: str | Iterable[str]) -> list[str]:
        ids = list(dict.fromkeys([user_ids] if isinstance(user_ids, str) else user_ids))
        missing = [uid for uid in ids if not self.knows_user(uid)]
        if missing:
            raise NotJoinedError(f"not members of channel {self.name!r}: {', '.join(missing)}")
        return ids

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
        recipients: Collection[Member],
        request_id: str | None,
    ) -> None:
        check_object(payload, "payload")
        request_id = request_id or new_request_id()
        frame = encode_frame(action, event, self.name, request_id, payload)
        interceptors = self._lobby.outgoing_handlers_for(event)
        if not interceptors:
            for member in recipients:
                member.outlet.send(frame)
            metrics = self._host.metrics  # once per broadcast, not per recipient
            metrics.fanout_broadcast_frames += len(recipients)
            metrics.fanout_broadcast_bytes += len(recipients) * len(frame)
            return
        metrics = self._host.metrics
        for member in recipients:
            ctx = OutgoingContext(self, event, payload, member)
            for handler in interceptors:
                handler(ctx)
                if ctx.blocked:
                    break
            if ctx.blocked:
                continue
            out = (
                frame
                if ctx.payload is payload
                else encode_frame(action, event, self.name, request_id, ctx.payload)
            )
            member.outlet.send(out)
            metrics.fanout_broadcast_frames += 1
            metrics.fanout_broadcast_bytes += len(out)

    # -- presence ------------------------------------------------------------

    def _bounded(self, presence: dict[str, Any]) -> dict[str, Any]:
        value = dict(check_object(presence, "presence"))
        limit = self._host.options.max_presence_bytes
        if limit is not None:
            size = encoded_size(value)
            if size > limit:
                _refused_presence.warning(
                    "refused a presence of %d bytes in %s (max_presence_bytes %d)",
                    size,
                    self.name,
                    limit,
                )
                raise PresenceTooLargeError(size, limit)
        return value

    def track(self, user_id: str, presence: dict[str, Any]) -> None:
        """Start tracking ``user_id`` with ``presence``; tracked users get a JOIN frame.
        Raises :class:`PresenceTooLargeError` above ``max_presence_bytes``."""
        self._member(user_id)
        change = self._presence.track(user_id, self._bounded(presence))
        self._publish_presence(change)
        self._host.relay.presence_changed(self, user_id, change.changed)

    def update_presence(self, user_id: str, presence: dict[str, Any]) -> None:
        """Replace the presence of a tracked user; tracked users get an UPDATE frame.
        Raises :class:`PresenceTooLargeError` above ``max_presence_bytes``."""
        self._member(user_id)
        change = self._presence.update(user_id, self._bounded(presence))
        self._publish_presence(change)
        self._host.relay.presence_changed(self, user_id, change.changed)

    def upsert_presence(self, user_id: str, presence: dict[str, Any]) -> None:
        """Track the user if it is not tracked yet, else update its presence."""
        if user_id in self._presence:
            self.update_presence(user_id, presence)
        else:
            self.track(user_id, presence)

    def untrack(self, user_id: str) -> None:
        """Stop tracking ``user_id`` (no-op if untracked); the rest get a LEAVE frame."""
        self._member(user_id)
        self._untrack(user_id, announce=True)

    def _untrack(self, user_id: str, *, announce: bool) -> None:
        change = self._presence.untrack(user_id)
        if change is not None:
            self._publish_presence(change)
            if announce:
                self._host.relay.presence_changed(self, user_id, None)

    def _publish_presence(self, change: PresenceChange) -> None:
        window = self._host.options.presence_coalesce_window
        if not window:
            self._send_presence(change)
        elif self._presence_timer is None:  # leading edge: an isolated change goes out now
            self._send_presence(change)
            self._presence_timer = self._host.call_later(window, self._flush_presence)
        else:  # a burst: only the latest change of the window is sent, at its end
            self._pending_presence = change

    def _flush_presence(self) -> None:
        self._presence_timer = None
        change, self._pending_presence = self._pending_presence, None
        if change is not None and not self.closed:
            self._send_presence(change)
            window = self._host.options.presence_coalesce_window
            self._presence_timer = self._host.call_later(window, self._flush_presence)

    def _send_presence(self, change: PresenceChange) -> None:
        # Every frame carries the full list: the JS client replaces its list with it.
        payload = {"changed": change.changed, "presence": self._presence.values()}
        frame = encode_frame(
            ServerAction.PRESENCE, change.event.value, self.name, new_request_id(), payload
        )
        sent = 0
        for user_id in self._presence.user_ids():
            member = self._members.get(user_id)
            if member is not None:
                member.outlet.send(frame)
                sent += 1
        self._host.metrics.fanout_presence_frames += sent
        self._host.metrics.fanout_presence_bytes += sent * len(frame)

    # -- assigns -------------------------------------------------------------

    def assign(self, user_id: str, assigns: dict[str, Any]) -> None:
        """Merge ``assigns`` into the member's assigns in this channel. A member connected
        to another node can be changed only in a signed cluster (``ClusterOptions.secret``):
        without one, a node cannot tell its peers from anyone who can publish to the
        broker, so it never lets another node rewrite its users' assigns."""
        changes = check_object(assigns, "assigns")
        member = self._members.get(user_id)
        if member is None and not self._host.relay.authenticated:
            self._remote_user(user_id)  # NotJoinedError if it is not a member at all
            raise UsageError(
                f"user {user_id} is connected to another node, which accepts changes to its"
                " users' assigns only in a signed cluster (set ClusterOptions.secret)"
            )
        target = member.assigns if member is not None else self._remote_user(user_id).assigns
        target.update(changes)
        self._host.relay.assigns_changed(self, user_id, dict(target))

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

    def _remote_user(self, user_id: str) -> RemoteUser:
        remote = self._remote.get(user_id)
        if remote is None:
            raise NotJoinedError(f"user {user_id} is not a member of channel {self.name!r}")
        return remote

    def add_member(self, member: Member) -> None:
        self._members[member.id] = member
        member.connection.channels[self.name] = self
        self._host.relay.member_joined(self, member.id, dict(member.assigns))

    def remove_user(self, user_id: str, reason: str = "removed") -> None:
        """Remove a member: its presence leaves, the leave handlers run, it gets nothing more.
        A member connected to another node is removed there."""
        if user_id not in self._members and user_id in self._remote:
            self._host.relay.remove_requested(self, user_id, reason)
            self.forget_remote(user_id)
            return
        member = self._member(user_id)
        del self._members[user_id]
        self._relayed_notices.pop(user_id, None)
        if self.recorded is not None:
            self.recorded.positions.forget(user_id)
        member.connection.channels.pop(self.name, None)
        presence = self._presence.get(user_id)
        # PRESENCE_REMOVED before USER_LEFT, as Go does: upstream Python nodes drop a remote
        # presence only on PRESENCE_REMOVED; JS nodes then find it gone at USER_LEFT.
        self._untrack(user_id, announce=True)
        self._host.relay.member_left(self, user_id)
        user = User(user_id, member.assigns, presence)
        for handler in self._lobby.leave_handlers:
            self._host.spawn(self._lobby.run_leave(handler, self, user, reason), "leave handler")
        self._drop_if_empty()

    def evict(self, user_id: str, reason: str = "You have been banned from the channel") -> None:
        """Notify the user and the channel, then remove the user (reason ``evicted:<reason>``),
        whichever node it is connected to."""
        if not self.knows_user(user_id):
            raise NotJoinedError(f"user {user_id} is not a member of channel {self.name!r}")
        event = self._host.options.eviction_broadcast_event
        kicked = {"userId": user_id, "reason": reason}
        request_id = new_request_id()
        local = user_id in self._members
        if local:
            self._kick_out(user_id, reason)
        else:  # its own node sends it the notice and removes it, before the channel hears
            self._host.relay.user_evicted(self, user_id, reason)
        self.send_system(event, kicked, list(self._members), request_id)
        self._host.relay.message_sent(
            self, event, kicked, ALL_USERS, SENDER_CHANNEL, request_id, system=True
        )
        if local:
            self.remove_user(user_id, f"evicted:{reason}")
            self._host.relay.user_evicted(self, user_id, reason)  # peers drop their caches
        else:
            self.forget_remote(user_id)

    def evicted_by_peer(self, user_id: str, reason: str) -> None:
        """Another node evicted ``user_id``: the user gets the notices a local eviction
        sends it (the channel's ``kicked`` reaches everyone else from the evicting node)."""
        if user_id in self._members:
            # A JS node relays its own notices to the user before EVICT_USER: send only what
            # the user has not had yet, so one eviction is one notice.
            relayed = self._relayed_notices.pop(user_id, frozenset())
            if "notice" not in relayed:
                self._kick_out(user_id, reason)
            if "kicked" not in relayed:
                kicked = {"userId": user_id, "reason": reason}
                event = self._host.options.eviction_broadcast_event
                self.send_system(event, kicked, [user_id], new_request_id())
            self.remove_user(user_id, f"evicted:{reason}")
        else:
            self.forget_remote(user_id)

    def _kick_out(self, user_id: str, reason: str) -> None:
        # Both notice shapes at once: JS sends {message, code}, Go and upstream Python
        # {reason}, so an app ported from either keeps reading the field it knows.
        notice = {"reason": reason, "message": reason, "code": 403}
        self.send_system(
            self._host.options.eviction_notice_event, notice, [user_id], new_request_id()
        )

    # -- state from other nodes (applied by the cluster layer) ---------------

    def apply_remote_member(
        self,
        user_id: str,
        node_id: str,
        assigns: dict[str, Any] | None,
        presence: dict[str, Any] | None,
    ) -> None:
        """A member of another node joined or was announced; a non-empty presence tracks it."""
        if user_id in self._members:
            return  # ours: never let a peer's stale view override the truth
        self._remote.upsert(user_id, node_id, assigns)
        if presence:
            self.apply_remote_presence(user_id, presence)

    def apply_remote_presence(self, user_id: str, presence: dict[str, Any] | None) -> None:
        """Another node's member changed presence (``None``: untracked)."""
        if user_id in self._members:
            return
        limit = self._host.options.max_presence_bytes
        if presence is not None and limit is not None and encoded_size(presence) > limit:
            _refused_presence.warning(
                "ignored a peer's presence above max_presence_bytes (%d) in %s", limit, self.name
            )
            return
        if presence is None:
            self._untrack(user_id, announce=False)
        elif user_id in self._presence:
            if self._presence.get(user_id) != presence:
                self._publish_presence(self._presence.update(user_id, dict(presence)))
        else:
            self._publish_presence(self._presence.track(user_id, dict(presence)))

    def apply_remote_assigns(self, user_id: str, assigns: dict[str, Any]) -> None:
        """A full assigns snapshot from the cluster: ours if the user is local."""
        member = self._members.get(user_id)
        if member is not None:
            member.assigns = dict(assigns)
        elif user_id in self._remote:
            self._remote_user(user_id).assigns = dict(assigns)

    def forget_remote(self, user_id: str) -> None:
        """A member of another node left (or its node died): drop it and its presence."""
        if self._remote.remove(user_id) is not None:
            self._untrack(user_id, announce=False)

    def remote_owner(self, user_id: str) -> str | None:
        """The node hosting a remote member (``None`` if not a known remote member)."""
        remote = self._remote.get(user_id)
        return None if remote is None else remote.node_id

    def remote_users_of(self, node_id: str) -> list[str]:
        return self._remote.of_node(node_id)

    def local_snapshot(self) -> list[dict[str, Any]]:
        """Local members as the distributed protocol announces them."""
        return [
            {"id": uid, "assigns": dict(m.assigns), "presence": self._presence.get(uid) or {}}
            for uid, m in self._members.items()
        ]

    def _drop_if_empty(self) -> None:
        if not self._members and self._pending_joins == 0 and not self.closed:
            self.closed = True
            if self._presence_timer is not None:
                self._presence_timer.cancel()
            if self.recorded is not None and self._host.recorder is not None:
                self._host.recorder.forget(self)
            self._host.drop_channel(self)
