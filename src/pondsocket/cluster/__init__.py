"""The distributed protocol ("pondsocket.distributed" v1) on top of a PubSub."""

from pondsocket.cluster.envelope import Envelope, EnvelopeType, InvalidEnvelope, decode_envelope
from pondsocket.cluster.node import ClusterNode
from pondsocket.cluster.options import ClusterOptions
from pondsocket.cluster.stats import ClusterStats
from pondsocket.cluster.topics import TopicLayout

__all__ = [
    "ClusterNode",
    "ClusterOptions",
    "ClusterStats",
    "Envelope",
    "EnvelopeType",
    "InvalidEnvelope",
    "TopicLayout",
    "decode_envelope",
]
