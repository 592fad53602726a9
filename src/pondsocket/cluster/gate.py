"""The inbound gate: what arrives on our topics before it may touch a channel.

In order: the signature (a signed cluster), the envelope's validity, our own echo,
duplicates, the signature's age, and the sender's per-topic sequence (a gap means lost
messages). Everything dropped is counted; repeated drops log one line per interval.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from pondsocket.cluster.envelope import Envelope, InvalidEnvelope, decode_envelope
from pondsocket.cluster.options import ClusterOptions
from pondsocket.cluster.signing import EnvelopeSigner
from pondsocket.cluster.stats import ClusterStats
from pondsocket.cluster.tracking import RecentIds, SeqStatus, SequenceTracker
from pondsocket.core.ratelog import RateLimitedLog

log = logging.getLogger("pondsocket.cluster")


class InboundGate:
    def __init__(
        self,
        node_id: str,
        options: ClusterOptions,
        stats: ClusterStats,
        signer: EnvelopeSigner | None,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._node_id = node_id
        self._options = options
        self._stats = stats
        self._signer = signer
        self._wall_clock = wall_clock
        self.sequences = SequenceTracker()
        self._recent = RecentIds(options.dedupe_window)
        self._invalid_log = RateLimitedLog(log)
        self._signature_log = RateLimitedLog(log)

    def accept(self, topic: str, data: bytes) -> tuple[Envelope, bool] | None:
        """The envelope and whether messages before it were lost (a sequence gap), or
        ``None`` if it is dropped."""
        verified = False
        if self._signer is not None:
            body = self._signer.verify(data)
            if body is not None:
                data, verified = body, True
            elif EnvelopeSigner.is_signed(data) or not self._options.accept_unsigned:
                self._unauthenticated(topic, data)
                return None
            else:
                self._stats.unsigned += 1
        try:
            envelope = decode_envelope(data, verified=verified)
        except InvalidEnvelope as exc:
            self._stats.invalid += 1
            self._invalid_log.warning("dropped an invalid envelope on %s: %s", topic, exc)
            return None
        if envelope.source_node_id == self._node_id:
            return None  # the broker echoes our own publications
        if self._recent.seen(envelope.message_id):
            self._stats.duplicates += 1
            return None
        age = self._wall_clock() - envelope.timestamp / 1000
        if verified and abs(age) > self._options.max_envelope_age:
            self._stats.bad_signatures += 1
            self._signature_log.warning(
                "dropped a signed envelope on %s from %.0f s ago: a replay, or clocks apart",
                topic,
                age,
            )
            return None
        self._stats.received += 1
        seq = envelope.fields.get("seq")
        gap = False
        if isinstance(seq, int) and not isinstance(seq, bool):
            status = self.sequences.observe(envelope.source_node_id, topic, seq)
            gap = status is SeqStatus.GAP
        return envelope, gap

    def _unauthenticated(self, topic: str, data: bytes) -> None:
        if EnvelopeSigner.is_signed(data):
            self._stats.bad_signatures += 1
            reason = "its signature matches none of our keys"
        else:
            self._stats.unsigned += 1
            reason = "it is unsigned (set accept_unsigned for unsigned peers)"
        self._signature_log.warning("dropped an envelope on %s: %s", topic, reason)
