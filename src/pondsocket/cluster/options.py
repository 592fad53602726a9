"""Settings of the cluster layer."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from pondsocket.cluster.signing import keys_from_env, parse_keys
from pondsocket.errors import UsageError

UPSTREAM_HEARTBEAT_INTERVAL = 30.0
UPSTREAM_HEARTBEAT_TIMEOUT = 90.0
"""What upstream nodes use, and what we assume for peers that do not advertise theirs."""


@dataclass(frozen=True, slots=True)
class ClusterOptions:
    prefix: str = "pondsocket"
    """First part of every topic; must match the other nodes'."""
    namespace: str = "default"
    """Nodes only see nodes of the same prefix and namespace."""
    heartbeat_interval: float = 2.5
    """Seconds between this node's heartbeats (one per node, never per channel)."""
    heartbeat_timeout: float = 7.5
    """Silence after which peers declare this node dead. Advertised in every heartbeat.
    Peers that advertise nothing (JS, upstream Python) get this too, or three of their
    observed heartbeat gaps once they are seen to beat slower."""
    liveness_check_interval: float = 1.0
    resync_window: float = 3.0
    """After asking for a channel's state, remote users nobody confirmed within this many
    seconds are dropped (their node left the channel while we were not listening)."""
    outbox_size: int = 10_000
    """Envelopes waiting for the pubsub; beyond it new ones are dropped, counted, logged."""
    get_user_timeout: float = 2.0
    dedupe_window: int = 10_000
    """How many recent message ids are remembered to drop duplicates."""
    secret: str | bytes | Sequence[str | bytes] | None = field(default=None, repr=False)
    """Shared secret of the cluster's nodes (at least 16 bytes), or several for a rotation:
    the first signs every envelope (HMAC-SHA256), each of them verifies. Envelopes that are
    unsigned or badly signed are dropped and counted. ``None``: the keys in the
    ``PONDSOCKET_CLUSTER_SECRET`` environment variable (comma-separated), if it is set,
    else no signing. See docs/security.md."""
    accept_unsigned: bool = False
    """With a secret: still accept unsigned envelopes (counted), for a rolling upgrade to
    signing or for upstream peers, which cannot sign. Badly signed ones are still dropped."""
    max_envelope_age: float = 300.0
    """With a secret: signed envelopes whose timestamp is further than this many seconds
    from our clock are dropped, which bounds replays (duplicates within
    ``dedupe_window`` ids are dropped anyway)."""
    signing_keys: tuple[bytes, ...] | None = field(init=False, repr=False, compare=False)
    """The keys in use (from ``secret`` or the environment); ``None`` when not signing."""

    def __post_init__(self) -> None:
        keys = keys_from_env() if self.secret is None else parse_keys(self.secret)
        object.__setattr__(self, "signing_keys", keys)
        if self.max_envelope_age <= 0:
            raise UsageError("max_envelope_age must be positive")
        if self.heartbeat_interval <= 0 or self.heartbeat_timeout <= self.heartbeat_interval:
            raise UsageError("need 0 < heartbeat_interval < heartbeat_timeout")
        if ":" in self.prefix or ":" in self.namespace or not self.prefix or not self.namespace:
            raise UsageError("prefix and namespace must be non-empty and contain no ':'")
        if self.outbox_size < 1 or self.dedupe_window < 1:
            raise UsageError("outbox_size and dedupe_window must be positive")
