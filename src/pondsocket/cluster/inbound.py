"""Applying other nodes' envelopes to a local channel (docs/protocol.md, receivers)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from pondsocket.cluster.envelope import Envelope, EnvelopeType
from pondsocket.cluster.state_pages import PageAssembler
from pondsocket.cluster.stats import ClusterStats
from pondsocket.cluster.tracking import NodeRegistry
from pondsocket.core.ratelog import RateLimitedLog
from pondsocket.core.relay import ALL_EXCEPT_SENDER, ALL_USERS
from pondsocket.core.user import User

if TYPE_CHECKING:
    from pondsocket.core.channel import Channel


class InboundNode(Protocol):
    """What applying an envelope needs of the node: counters, peer bookkeeping, and the
    answers it sends (implemented by :class:`pondsocket.cluster.node.ClusterNode`)."""

    stats: ClusterStats
    refusals: RateLimitedLog
    registry: NodeRegistry
    state_pages: PageAssembler
    clock: Callable[[], float]

    def node_heartbeat(
        self, node_id: str, timeout: float | None, *, leaving: bool = False
    ) -> None: ...

    def confirm(self, topic: str, node_id: str, user_ids: set[str]) -> None: ...

    def answer_state(self, channel: Channel) -> None: ...

    def answer_get(self, channel: Channel, user: User, request_id: str) -> None: ...

    def resolve_get(self, request_id: str, user: User) -> None: ...


def _obj(value: Any) -> dict[str, Any] | None:
    return value if isinstance(value, dict) else None


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def heartbeat(node: InboundNode, envelope: Envelope) -> None:
    fields = envelope.fields
    node_id = _str(fields.get("nodeId")) or envelope.source_node_id
    timeout_ms, interval_ms = fields.get("heartbeatTimeoutMs"), fields.get("heartbeatIntervalMs")
    timeout: float | None = None
    if isinstance(timeout_ms, int | float) and timeout_ms > 0:
        timeout = timeout_ms / 1000
    elif isinstance(interval_ms, int | float) and interval_ms > 0:
        timeout = 3 * interval_ms / 1000
    # else an upstream peer: the registry paces it by our own timeout and its heartbeats
    node.node_heartbeat(node_id, timeout, leaving=fields.get("leaving") is True)


def apply(node: InboundNode, channel: Channel, topic: str, envelope: Envelope) -> None:
    handler = _HANDLERS.get(envelope.type)
    if handler is not None:
        handler(node, channel, topic, envelope)


def _state_request(node: InboundNode, channel: Channel, topic: str, env: Envelope) -> None:
    # Answer even with no local users: the requester then drops users it wrongly thinks we
    # have (e.g. after it missed our USER_LEFT messages).
    node.answer_state(channel)


def _state_response(node: InboundNode, channel: Channel, topic: str, env: Envelope) -> None:
    users = env.fields.get("users")
    if not isinstance(users, list):
        node.stats.invalid += 1
        return
    source = env.source_node_id
    listed: set[str] = set()
    for entry in users:
        if not isinstance(entry, dict) or _str(entry.get("id")) is None:
            continue
        user_id = entry["id"]
        listed.add(user_id)
        owner = channel.remote_owner(user_id)
        if owner is not None and owner != source:
            continue  # JS peers list other nodes' users too: keep the first attribution
        _remember(node, channel, source, user_id, entry.get("assigns"), entry.get("presence"))
    node.confirm(topic, source, listed)
    pages, page, state_id = (env.fields.get(k) for k in ("statePages", "statePage", "stateId"))
    if isinstance(pages, int) and pages > 1 and isinstance(page, int) and _str(state_id):
        complete = node.state_pages.add((topic, f"{source}/{state_id}"), page, pages, listed)
        if complete is None:
            return  # users missing from this page may be on the next one
        listed = complete
    # What the node itself hosts is the truth: users it no longer lists have left.
    for user_id in channel.remote_users_of(source):
        if user_id not in listed:
            channel.forget_remote(user_id)


def _remember(
    node: InboundNode, channel: Channel, source: str, user_id: str, assigns: Any, presence: Any
) -> None:
    node.registry.noticed(source, node.clock())
    channel.apply_remote_member(user_id, source, _obj(assigns), _obj(presence))


def _user_joined(node: InboundNode, channel: Channel, topic: str, env: Envelope) -> None:
    user_id = _str(env.fields.get("userId"))
    if user_id is not None:
        _remember(
            node,
            channel,
            env.source_node_id,
            user_id,
            env.fields.get("assigns"),
            env.fields.get("presence"),
        )


def _user_left(node: InboundNode, channel: Channel, topic: str, env: Envelope) -> None:
    user_id = _str(env.fields.get("userId"))
    if user_id is not None and not channel.has_user(user_id):
        channel.forget_remote(user_id)


def _user_message(node: InboundNode, channel: Channel, topic: str, env: Envelope) -> None:
    fields = env.fields
    event, payload = _str(fields.get("event")), fields.get("payload", {})
    recipients = fields.get("recipientDescriptor")
    valid_list = isinstance(recipients, list) and all(isinstance(r, str) for r in recipients)
    if (
        event is None
        or not isinstance(payload, dict)
        or not (valid_list or recipients in (ALL_USERS, ALL_EXCEPT_SENDER))
    ):
        node.stats.invalid += 1
        return
    channel.deliver_remote(
        event,
        payload,
        recipients,  # type: ignore[arg-type]  # validated above
        _str(fields.get("fromUserId")) or "",
        _str(fields.get("requestId")),
        system=fields.get("action") == "SYSTEM",
    )


def _presence_update(node: InboundNode, channel: Channel, topic: str, env: Envelope) -> None:
    user_id, presence = _str(env.fields.get("userId")), _obj(env.fields.get("presence"))
    if user_id is None or presence is None:
        return
    if not channel.knows_user(user_id):  # a presence for a user we missed joining
        _remember(node, channel, env.source_node_id, user_id, None, None)
    channel.apply_remote_presence(user_id, presence)


def _presence_removed(node: InboundNode, channel: Channel, topic: str, env: Envelope) -> None:
    user_id = _str(env.fields.get("userId"))
    if user_id is not None:
        channel.apply_remote_presence(user_id, None)


def _assigns_update(node: InboundNode, channel: Channel, topic: str, env: Envelope) -> None:
    user_id = _str(env.fields.get("userId"))
    if user_id is None:
        return
    assigns = _obj(env.fields.get("assigns"))
    if assigns is None:  # older senders: one key and value
        key = _str(env.fields.get("key"))
        current = channel.get_user(user_id)
        if key is None or current is None:
            return
        assigns = {**current.assigns, key: env.fields.get("value")}
    if channel.has_user(user_id):
        # Ours. Assigns are what the app's handlers decided (roles, ids): another node may
        # change them only in a signed cluster, and then through our own assign().
        if env.verified:
            channel.assign(user_id, assigns)
        else:
            _refuse(node, env, "rewrite the assigns of a user of this node")
        return
    owner = channel.remote_owner(user_id)
    if owner is not None and owner != env.source_node_id:
        # A node asked the owner to change them: the owner announces the result itself.
        return
    channel.apply_remote_assigns(user_id, assigns)


def _refuse(node: InboundNode, env: Envelope, attempt: str) -> None:
    node.stats.refused += 1
    node.refusals.warning(
        "ignored %s from node %s: it tried to %s (only a signed cluster may)",
        env.type,
        env.source_node_id,
        attempt,
    )


def _evict_user(node: InboundNode, channel: Channel, topic: str, env: Envelope) -> None:
    user_id = _str(env.fields.get("userId"))
    if user_id is not None:
        reason = _str(env.fields.get("reason")) or "You have been banned from the channel"
        channel.evicted_by_peer(user_id, reason)


def _user_remove(node: InboundNode, channel: Channel, topic: str, env: Envelope) -> None:
    user_id = _str(env.fields.get("userId"))
    if user_id is None:
        return
    if channel.has_user(user_id):
        channel.remove_user(user_id, _str(env.fields.get("reason")) or "removed")
    else:
        channel.forget_remote(user_id)


def _user_get_request(node: InboundNode, channel: Channel, topic: str, env: Envelope) -> None:
    user_id, request_id = _str(env.fields.get("userId")), _str(env.fields.get("requestId"))
    if user_id is None or request_id is None or not channel.has_user(user_id):
        return  # only the node hosting the user answers
    user = channel.get_user(user_id)
    assert user is not None
    node.answer_get(channel, user, request_id)


def _user_get_response(node: InboundNode, channel: Channel, topic: str, env: Envelope) -> None:
    user_id, request_id = _str(env.fields.get("userId")), _str(env.fields.get("requestId"))
    if user_id is None or request_id is None:
        return
    assigns = _obj(env.fields.get("assigns")) or {}
    presence = _obj(env.fields.get("presence")) or None  # Go omits it when untracked
    node.resolve_get(request_id, User(user_id, assigns, presence))


_HANDLERS = {
    EnvelopeType.STATE_REQUEST: _state_request,
    EnvelopeType.STATE_RESPONSE: _state_response,
    EnvelopeType.USER_JOINED: _user_joined,
    EnvelopeType.USER_LEFT: _user_left,
    EnvelopeType.USER_MESSAGE: _user_message,
    EnvelopeType.PRESENCE_UPDATE: _presence_update,
    EnvelopeType.PRESENCE_REMOVED: _presence_removed,
    EnvelopeType.ASSIGNS_UPDATE: _assigns_update,
    EnvelopeType.EVICT_USER: _evict_user,
    EnvelopeType.USER_REMOVE: _user_remove,
    EnvelopeType.USER_GET_REQUEST: _user_get_request,
    EnvelopeType.USER_GET_RESPONSE: _user_get_response,
}
