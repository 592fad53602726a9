"""What the admin page's buttons do: evict a user from a channel, close a connection.
Each is logged at WARNING, so the log keeps a trail of who was removed and when."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from pondsocket.core.outlet import CloseCode
from pondsocket.errors import NotJoinedError

if TYPE_CHECKING:
    from pondsocket.server import PondSocket

log = logging.getLogger("pondsocket.admin")

DEFAULT_EVICTION_REASON = "Evicted by an administrator"
CLOSE_REASON = "closed by an administrator"

Outcome = tuple[int, dict[str, Any]]
"""``(HTTP status, JSON body)``."""


def evict(
    pond: PondSocket, endpoint_path: str, channel_name: str, user_id: str, reason: str
) -> Outcome:
    """Evict ``user_id`` from the channel, wherever in the cluster it is connected: it gets
    the eviction notice, the channel sees it leave; its connection stays open."""
    endpoint = next((e for e in pond.endpoints if e.path == endpoint_path), None)
    if endpoint is None:
        return 404, {"error": "no such endpoint"}
    channel = endpoint.get_channel(channel_name)
    if channel is None:
        return 404, {"error": "no such channel open on this node"}
    try:
        channel.evict(user_id, reason or DEFAULT_EVICTION_REASON)
    except NotJoinedError:
        return 404, {"error": "not a member of this channel"}
    log.warning(
        "admin: evicted user %r from channel %r of %s", user_id, channel_name, endpoint_path
    )
    return 200, {"evicted": user_id, "channel": channel_name}


def close(pond: PondSocket, connection_id: str) -> Outcome:
    """Close a connection of this node (4000): it leaves every channel it was in."""
    for endpoint in pond.endpoints:
        if endpoint.close_connection(connection_id, CloseCode.CLOSED_BY_SERVER, CLOSE_REASON):
            log.warning("admin: closed connection %r of %s", connection_id, endpoint.path)
            return 200, {"closed": connection_id}
    return 404, {"error": "no such connection on this node"}
