"""The Prometheus view of a server, with the official ``prometheus_client`` (the
``metrics`` extra): a :class:`PondCollector` that reads the server's plain counters at
scrape time, and :func:`exposition`, the body ``/metrics`` answers.

Nothing is recorded through ``prometheus_client`` on the hot path; every scrape builds the
families afresh from ``pond.metrics``, ``pond.cluster.stats``, ``pubsub.stats`` and
``pond.history.stats`` (:mod:`pondsocket.observability.families`).
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable
from typing import TYPE_CHECKING

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    generate_latest,
)
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeHistogramMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from pondsocket.core.metrics import Histogram
from pondsocket.observability.families import Family, families

if TYPE_CHECKING:
    from pondsocket.server import PondSocket

__all__ = ["PondCollector", "exposition", "registry_of"]

_registries: weakref.WeakKeyDictionary[PondSocket, CollectorRegistry] = weakref.WeakKeyDictionary()


class PondCollector(Collector):
    """Every metric of one server, read when collected. Register it in a registry of
    your own to serve it with the rest of an app's metrics:

        REGISTRY.register(PondCollector(pond))
    """

    def __init__(self, pond: PondSocket) -> None:
        self._pond = pond

    def describe(self) -> Iterable[Metric]:
        return ()  # nothing to check for duplicates up front: collect() only when scraped

    def collect(self) -> Iterable[Metric]:
        for family in families(self._pond):
            yield _convert(family)


def registry_of(pond: PondSocket) -> CollectorRegistry:
    """The registry ``/metrics`` serves for ``pond``: its :class:`PondCollector` and the
    process, platform and garbage-collector metrics of ``prometheus_client``."""
    registry = _registries.get(pond)
    if registry is None:
        registry = CollectorRegistry(auto_describe=False)
        registry.register(PondCollector(pond))
        for collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
            registry.register(collector)
        _registries[pond] = registry
    return registry


def exposition(pond: PondSocket) -> tuple[int, str, bytes]:
    """``(200, content type, body)``: the text exposition of :func:`registry_of`."""
    return 200, CONTENT_TYPE_LATEST, generate_latest(registry_of(pond))


def _convert(family: Family) -> Metric:
    labels = list(family.labels)
    if family.kind == "counter":
        counter = CounterMetricFamily(family.name, family.help, labels=labels)
        for values, value in family.samples:
            counter.add_metric(list(values), value)
        return counter
    if family.kind == "gauge":
        gauge = GaugeMetricFamily(family.name, family.help, labels=labels)
        for values, value in family.samples:
            gauge.add_metric(list(values), value)
        return gauge
    if family.kind == "histogram":
        histogram = HistogramMetricFamily(family.name, family.help, labels=labels)
        for values, observed in family.histograms:
            histogram.add_metric(list(values), _buckets(observed), observed.sum)
        return histogram
    sampled = GaugeHistogramMetricFamily(family.name, family.help, labels=labels)
    for values, observed in family.histograms:
        sampled.add_metric(list(values), _buckets(observed), observed.sum)
    return sampled


def _buckets(histogram: Histogram) -> list[tuple[str, float]]:
    return [
        ("+Inf" if bound == float("inf") else repr(float(bound)), float(count))
        for bound, count in histogram.cumulative()
    ]
