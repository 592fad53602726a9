"""The cluster layer's counters (``pond.cluster.stats``): plain ints, cheap to keep."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(slots=True)
class ClusterStats:
    published: int = 0
    received: int = 0
    invalid: int = 0
    """Messages on our topics that were not valid envelopes (dropped)."""
    unsigned: int = 0
    """Envelopes without a signature while a secret is set (dropped unless
    ``accept_unsigned``)."""
    bad_signatures: int = 0
    """Envelopes whose signature no key matches, or signed too long ago (dropped)."""
    refused: int = 0
    """Valid envelopes that tried to change a user they may not (e.g. a local user's
    assigns from another node without a cluster secret): ignored."""
    duplicates: int = 0
    dropped: int = 0
    """Envelopes dropped because the outgoing queue was full."""
    publish_errors: int = 0
    gaps: int = 0
    """Sequence gaps seen in a peer's envelopes (messages lost on the way)."""
    resyncs: int = 0
    dead_nodes: int = 0
    reconnects: int = 0

    def snapshot(self) -> dict[str, int]:
        return asdict(self)
