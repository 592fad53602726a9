"""Metrics of a running server: :func:`snapshot` (plain values, no dependency) and the
Prometheus exposition served at ``PondOptions.metrics_path`` (the ``metrics`` extra:
``pip install 'pondsocket-cluster[metrics]'``). Every metric is listed in docs/metrics.md."""

from pondsocket.core.metrics import Histogram
from pondsocket.observability.families import Family, families, snapshot

__all__ = ["Family", "Histogram", "families", "snapshot"]
