"""Latency histograms: compact, mergeable across load-generator processes.

Values are microseconds, kept exactly below 128 µs and with 7 significant bits above
(under 1% relative error), so a histogram of millions of samples stays a small dict.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping

Histogram = dict[int, int]


def bucket(micros: int) -> int:
    """The histogram key of a latency of ``micros`` µs (rounded down to 7 significant bits)."""
    if micros < 128:
        return micros
    shift = micros.bit_length() - 7
    return (micros >> shift) << shift


def histogram(nanos: Iterable[int]) -> Histogram:
    """Histogram (bucket µs -> count) of latencies given in nanoseconds."""
    return dict(Counter(bucket(v // 1000) for v in nanos))


def merge(histograms: Iterable[Mapping[int, int]]) -> Histogram:
    total: Counter[int] = Counter()
    for h in histograms:
        total.update(h)
    return dict(total)


def from_json(data: Mapping[str, int]) -> Histogram:
    """A histogram read back from JSON (whose keys are strings)."""
    return {int(k): v for k, v in data.items()}


def percentile(hist: Mapping[int, int], q: float) -> float | None:
    """The ``q``-th percentile (0-100) in µs, or None for an empty histogram."""
    count = sum(hist.values())
    if count == 0:
        return None
    rank = max(1, round(count * q / 100))
    seen = 0
    for value in sorted(hist):
        seen += hist[value]
        if seen >= rank:
            return float(value)
    return float(max(hist))


def summary_ms(hist: Mapping[int, int]) -> dict[str, float | None]:
    """p50/p90/p99/max in milliseconds (None when there were no samples)."""

    def ms(value: float | None) -> float | None:
        return None if value is None else round(value / 1000, 3)

    return {
        "p50_ms": ms(percentile(hist, 50)),
        "p90_ms": ms(percentile(hist, 90)),
        "p99_ms": ms(percentile(hist, 99)),
        "max_ms": ms(float(max(hist)) if hist else None),
    }
