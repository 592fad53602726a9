"""NodeRegistry (cluster/tracking.py): each peer's timeout, with time passed in."""

from __future__ import annotations

from pondsocket.cluster.tracking import NodeRegistry


def test_a_silent_peer_is_paced_by_its_own_heartbeats_never_below_our_timeout() -> None:
    registry = NodeRegistry(default_timeout=90.0, own_timeout=7.5)
    assert registry.heartbeat("slow", 0.0) is True
    assert registry.timeout_of("slow") == 7.5  # ours until its pace is known
    registry.heartbeat("slow", 30.0)  # upstream Python's default 30 s interval
    assert registry.timeout_of("slow") == 90.0  # so it is not declared dead between beats
    assert registry.expire(100.0) == []
    registry.noticed("go-channel", 100.0)  # known only from its users (Go's per-channel ids)
    assert registry.timeout_of("go-channel") == 90.0
    registry.heartbeat("fast", 100.0)
    registry.heartbeat("fast", 101.0)  # every second: our own timeout, never less
    assert registry.timeout_of("fast") == 7.5
    assert registry.expire(108.4) == []
    assert registry.expire(108.6) == ["fast"]
    registry.heartbeat("told", 0.0, timeout=3.0)
    registry.heartbeat("told", 1.0, timeout=3.0)
    assert registry.timeout_of("told") == 3.0  # an advertised timeout wins


def test_a_heartbeat_cannot_set_a_timeout_below_the_floor() -> None:
    registry = NodeRegistry(default_timeout=90.0, own_timeout=7.5, floor=5.0)
    registry.heartbeat("forged", 0.0, timeout=0.001)  # heartbeatTimeoutMs: 1
    assert registry.timeout_of("forged") == 5.0
    assert registry.expire(4.9) == []
