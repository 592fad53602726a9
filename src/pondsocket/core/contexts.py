"""The objects handlers receive: one per kind of request (connect, join, event,
outgoing message, leave). They hold no I/O; sends go through the channel's outlets."""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from pondsocket.core.user import Member, User
from pondsocket.core.values import check_object
from pondsocket.errors import AlreadyDecidedError, UsageError
from pondsocket.routing import Route

if TYPE_CHECKING:
    from pondsocket.core.channel import Channel
    from pondsocket.core.request import ConnectionRequest


class Decision(enum.Enum):
    PENDING = "pending"
    ACCEPTED = "accepted"
    DECLINED = "declined"


class _Decidable:
    def __init__(self) -> None:
        self.decision = Decision.PENDING
        self.decline_status = 0
        self.decline_message = ""

    def _decide(self, decision: Decision) -> None:
        if self.decision is not Decision.PENDING:
            raise AlreadyDecidedError(f"request already {self.decision.value}; decide only once")
        self.decision = decision

    @property
    def accepted(self) -> bool:
        return self.decision is Decision.ACCEPTED


class ConnectionContext(_Decidable):
    """Handed to the endpoint handler for every connection attempt: accept or decline it."""

    def __init__(self, request: ConnectionRequest, route: Route, connection_id: str) -> None:
        super().__init__()
        self.request = request
        """The handshake request."""
        self.route = route
        """The endpoint pattern's match of the request path."""
        self.connection_id = connection_id
        """The id the connection (and so the user) gets if accepted."""
        self.assigns: dict[str, Any] = {}
        """The connection-level assigns set so far."""
        self.replies: list[tuple[str, dict[str, Any]]] = []
        """The ``(event, payload)`` frames queued by :meth:`reply`."""

    @property
    def params(self) -> Mapping[str, str]:
        """Parameters of the endpoint pattern (``/api/:version/socket``)."""
        return self.route.params

    @property
    def query(self) -> Mapping[str, str]:
        """Query parameters, last value wins (``?token=abc``)."""
        return self.route.query

    @property
    def query_all(self) -> Mapping[str, list[str]]:
        """Query parameters with every value, in order."""
        return self.route.query_all

    @property
    def headers(self) -> Mapping[str, str]:
        """Request headers with lower-case names."""
        return self.request.headers

    @property
    def cookies(self) -> Mapping[str, str]:
        """The request's cookies by name."""
        return self.request.cookies

    @property
    def client(self) -> tuple[str, int] | None:
        """The peer's (host, port) as the transport saw it."""
        return self.request.client

    @property
    def path(self) -> str:
        """The request path, without its query string."""
        return self.request.path

    def accept(self, assigns: Mapping[str, Any] | None = None) -> ConnectionContext:
        """Accept the connection; ``assigns`` become the user's connection-level assigns."""
        self._decide(Decision.ACCEPTED)
        if assigns is not None:
            self.assigns.update(check_object(assigns, "assigns"))
        return self

    def decline(self, status: int = 400, message: str = "Unauthorized connection") -> None:
        """Refuse with an HTTP status before the WebSocket upgrade."""
        if not 400 <= status <= 599:
            raise UsageError(f"decline status must be an HTTP error status (4xx/5xx), got {status}")
        self._decide(Decision.DECLINED)
        self.decline_status, self.decline_message = status, message

    def assign(self, assigns: Mapping[str, Any]) -> ConnectionContext:
        """Merge ``assigns`` into the connection-level assigns."""
        self.assigns.update(check_object(assigns, "assigns"))
        return self

    def reply(self, event: str, payload: Mapping[str, Any]) -> ConnectionContext:
        """Send a connection-level frame right after the CONNECTION frame (if accepted)."""
        self.replies.append((event, dict(check_object(payload, "payload"))))
        return self


class _ChannelActions:
    """Broadcast, presence and assigns operations shared by join and event contexts."""

    channel: Channel
    _user_id: str
    _request_id: str

    def _require_member(self) -> None:
        raise NotImplementedError

    @property
    def user(self) -> User:
        """The requesting user (its current assigns and presence in this channel)."""
        user = self.channel.get_user(self._user_id)
        return user if user is not None else User(self._user_id, {})

    @property
    def presence(self) -> dict[str, dict[str, Any]]:
        """Presence of every tracked user in the channel, by user id."""
        return self.channel.get_presence()

    @property
    def assigns(self) -> dict[str, dict[str, Any]]:
        """Assigns of every member of the channel, by user id."""
        return self.channel.get_assigns()

    def reply(self, event: str, payload: Mapping[str, Any]) -> _ChannelActions:
        """Answer the requesting user only, echoing its ``requestId``."""
        self._require_member()
        self.channel.send_system(
            event, check_object(payload, "payload"), [self._user_id], self._request_id
        )
        return self

    def broadcast(self, event: str, payload: dict[str, Any]) -> _ChannelActions:
        """Send to every member of the channel, on every node, the requesting user included."""
        self.channel.broadcast(event, payload, request_id=self._request_id, sender_id=self._user_id)
        return self

    def broadcast_from(self, event: str, payload: dict[str, Any]) -> _ChannelActions:
        """Send to every member except the requesting user."""
        self.channel.broadcast_from(self._user_id, event, payload, request_id=self._request_id)
        return self

    def broadcast_to(
        self, event: str, payload: dict[str, Any], user_ids: str | Iterable[str]
    ) -> _ChannelActions:
        """Send to the listed members only, wherever they are connected."""
        self.channel.broadcast_to(
            event, payload, user_ids, request_id=self._request_id, sender_id=self._user_id
        )
        return self

    def track(self, presence: dict[str, Any]) -> _ChannelActions:
        """Start tracking the requesting user's presence; tracked users see it join."""
        self._require_member()
        self.channel.track(self._user_id, presence)
        return self

    def update_presence(self, presence: dict[str, Any]) -> _ChannelActions:
        """Replace the requesting user's presence (it must be tracked)."""
        self._require_member()
        self.channel.update_presence(self._user_id, presence)
        return self

    def untrack(self) -> _ChannelActions:
        """Stop tracking the requesting user's presence (no-op if untracked)."""
        self._require_member()
        self.channel.untrack(self._user_id)
        return self

    def assign(self, assigns: Mapping[str, Any]) -> _ChannelActions:
        """Merge ``assigns`` into the requesting user's assigns in this channel."""
        self._require_member()
        self.channel.assign(self._user_id, check_object(assigns, "assigns"))
        return self

    def evict(self, reason: str, user_ids: str | Iterable[str]) -> _ChannelActions:
        """Evict users from the channel with eviction notices (their connections stay)."""
        for user_id in [user_ids] if isinstance(user_ids, str) else list(user_ids):
            self.channel.evict(user_id, reason)
        return self


class JoinContext(_Decidable, _ChannelActions):
    """Handed to the channel's join handler: accept or decline the user."""

    def __init__(
        self,
        channel: Channel,
        route: Route,
        join_params: dict[str, Any],
        member: Member,
        request_id: str,
        on_accept: Any,
    ) -> None:
        _Decidable.__init__(self)
        self.channel = channel
        """The channel being joined."""
        self.route = route
        """The channel pattern's match of the channel name."""
        self.join_params = join_params
        """The parameters the client sent with its join."""
        self._member = member
        self._user_id = member.id
        self._request_id = request_id
        self._on_accept = on_accept

    @property
    def channel_name(self) -> str:
        """The name of the channel being joined."""
        return self.channel.name

    @property
    def params(self) -> Mapping[str, str]:
        """Parameters of the channel pattern (``/room/:room``)."""
        return self.route.params

    @property
    def query(self) -> Mapping[str, str]:
        """Query parameters of the channel name, last value wins."""
        return self.route.query

    @property
    def user(self) -> User:
        """The joining user (before :meth:`accept`: its assigns staged for this channel)."""
        if self.accepted:
            return super().user
        return User(self._user_id, dict(self._member.assigns))

    def _require_member(self) -> None:
        if not self.accepted:
            raise UsageError("accept() the join before replying, tracking or assigning")

    def accept(self, assigns: Mapping[str, Any] | None = None) -> JoinContext:
        """Admit the user; it gets the ACK before anything else of this channel."""
        if assigns is not None:
            self._member.assigns.update(check_object(assigns, "assigns"))
        self._decide(Decision.ACCEPTED)
        self._on_accept()
        return self

    def decline(self, status: int = 401, message: str = "Unauthorized connection") -> None:
        """Refuse the join; the client gets the status and message."""
        self._decide(Decision.DECLINED)
        self.decline_status, self.decline_message = status, message

    def assign(self, assigns: Mapping[str, Any]) -> JoinContext:
        """Merge ``assigns`` into the user's assigns in this channel (before :meth:`accept`:
        staged with the join)."""
        if not self.accepted:  # before accept: staged with the join
            self._member.assigns.update(check_object(assigns, "assigns"))
            return self
        super().assign(assigns)
        return self


class EventContext(_ChannelActions):
    """Handed to ``on_message`` handlers for each client event."""

    def __init__(
        self,
        channel: Channel,
        event: str,
        route: Route,
        payload: dict[str, Any],
        user_id: str,
        request_id: str,
    ) -> None:
        self.channel = channel
        """The channel the event was sent to."""
        self.event = event
        """The event name."""
        self.route = route
        """The event pattern's match of the event name."""
        self.payload = payload
        """The event's payload."""
        self._user_id = user_id
        self._request_id = request_id
        self.replied = False
        """Whether :meth:`reply` was called."""

    @property
    def params(self) -> Mapping[str, str]:
        """Parameters of the event pattern (``on_message("vote/:choice", ...)``)."""
        return self.route.params

    @property
    def request_id(self) -> str:
        """The ``requestId`` the client gave the event."""
        return self._request_id

    def _require_member(self) -> None:
        if not self.channel.has_user(self._user_id):
            raise UsageError(f"user {self._user_id} is no longer in {self.channel.name!r}")

    def reply(self, event: str, payload: Mapping[str, Any]) -> EventContext:
        """Answer the requesting user only, echoing its ``requestId``."""
        super().reply(event, payload)
        self.replied = True
        return self


class OutgoingContext:
    """Handed to outgoing handlers once per recipient of a broadcast."""

    __slots__ = ("_member", "blocked", "channel", "event", "payload")

    def __init__(self, channel: Channel, event: str, payload: dict[str, Any], member: Member):
        self.channel = channel
        """The channel broadcasting."""
        self.event = event
        """The event name."""
        self.payload = payload
        """The payload this recipient gets (see :meth:`transform`)."""
        self._member = member
        self.blocked = False
        """Whether :meth:`block` was called."""

    @property
    def user(self) -> User:
        """The recipient."""
        return User(self._member.id, dict(self._member.assigns))

    def transform(self, payload: dict[str, Any]) -> None:
        """Send ``payload`` to this recipient instead of the original."""
        self.payload = check_object(payload, "payload")

    def block(self) -> None:
        """Do not send this message to this recipient."""
        self.blocked = True


class LeaveContext:
    """Handed to ``on_leave`` handlers after a user left a channel."""

    __slots__ = ("channel", "reason", "user")

    def __init__(self, channel: Channel, user: User, reason: str) -> None:
        self.channel = channel
        """The channel left."""
        self.user = user
        """The user who left, as it was in the channel."""
        self.reason = reason
        """``explicit_leave``, ``connection_closed``, ``evicted:<reason>`` or the caller's."""
