"""The distributed protocol ("pondsocket.distributed" v1) on top of a PubSub."""

from pondsocket.cluster.envelope import Envelope, EnvelopeType, InvalidEnvelope, decode_envelope
from pondsocket.cluster.relay import ClusterRelay
from pondsocket.cluster.topics import TopicLayout

__all__ = [
    "ClusterRelay",
    "Envelope",
    "EnvelopeType",
    "InvalidEnvelope",
    "TopicLayout",
    "decode_envelope",
]
