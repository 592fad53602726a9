"""The metric families without sockets: histogram buckets, the plain snapshot, the
collector in an app's own registry, the options and the CLI flags."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from pondsocket import PondOptions, PondSocket, UsageError
from pondsocket.cli import _apply_options, _parser
from pondsocket.core.metrics import Histogram
from pondsocket.observability.families import backend_name, families
from pondsocket.observability.prometheus import PondCollector
from pondsocket.pubsub.memory import InMemoryPubSub


def test_histogram_buckets_are_cumulative_and_inclusive() -> None:
    histogram = Histogram((0.1, 1.0))
    for value in (0.05, 0.1, 0.5, 1.0, 3.0):
        histogram.observe(value)
    assert histogram.cumulative() == [(0.1, 2), (1.0, 4), (float("inf"), 5)]
    assert histogram.count == 5
    assert histogram.sum == pytest.approx(4.65)


def test_labels_come_from_fixed_sets_only() -> None:
    pond = PondSocket()
    for family in families(pond):
        assert family.name.startswith("pondsocket_")
        assert family.kind != "counter" or family.name.endswith("_total")
        assert set(family.labels) <= {"reason", "kind", "scope", "policy", "backend"}
    assert backend_name(InMemoryPubSub()) == "memory"


def test_snapshot_and_collector_agree() -> None:
    pond = PondSocket()
    pond.metrics.origin_refused = pond.metrics.connections_declined = 2
    pond.metrics.handler_latency.observe(0.002)
    snapshot = pond.metrics_snapshot()
    assert snapshot['pondsocket_refusals_total{reason="origin"}'] == 2
    assert snapshot['pondsocket_refusals_total{reason="auth"}'] == 0
    assert snapshot['pondsocket_handler_duration_seconds_bucket{le="0.0025"}'] == 1
    registry = CollectorRegistry()
    registry.register(PondCollector(pond))  # an app's own registry
    text = generate_latest(registry).decode()
    parsed = {
        s.name + str(sorted(s.labels.items())): s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
    }
    assert parsed["pondsocket_refusals_total[('reason', 'origin')]"] == 2
    assert parsed["pondsocket_handler_duration_seconds_count[]"] == 1
    assert parsed["pondsocket_outbox_bytes_gcount[]"] == 0


def test_metrics_options_and_cli_flags() -> None:
    with pytest.raises(UsageError, match="metrics_path"):
        PondOptions(metrics_path="metrics")
    with pytest.raises(UsageError, match="metrics_port"):
        PondOptions(metrics_port=70000)
    pond = PondSocket()
    args = _parser().parse_args(
        ["serve", "app:pond", "--metrics-port", "9464", "--metrics-host", "0.0.0.0"]
    )
    _apply_options(pond, args)
    assert (pond.options.metrics_port, pond.options.metrics_host) == (9464, "0.0.0.0")
    assert pond.options.metrics_path is None  # the separate port serves /metrics
    assert pond.http_get("/metrics") is None
