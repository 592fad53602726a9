"""The shared handler table of the backends that pick handlers themselves."""

from __future__ import annotations

import asyncio

from pondsocket.pubsub.delivery import QueuedSubscription
from pondsocket.pubsub.table import HandlerTable


async def test_exact_and_prefix_patterns_and_reference_counts() -> None:
    got: list[tuple[str, str]] = []

    def make(pattern: str, name: str) -> QueuedSubscription:
        async def handler(topic: str, data: bytes) -> None:
            got.append((name, topic))

        return QueuedSubscription(
            pattern, handler, queue_size=10, on_drop=lambda: None, detach=lambda s: None
        )

    table = HandlerTable()
    exact, prefix, second = make("a:b", "exact"), make("a:.*", "prefix"), make("a:.*", "2nd")
    assert table.add(exact) and table.add(prefix)
    assert not table.add(second)  # not the first handler of "a:.*"
    assert sorted(table.patterns) == ["a:.*", "a:b"]
    table.offer("a:b", b"x")
    table.offer("a:c", b"y")
    table.offer("b:a", b"z")  # matches nothing
    await asyncio.sleep(0.01)
    assert sorted(got) == [
        ("2nd", "a:b"),
        ("2nd", "a:c"),
        ("exact", "a:b"),
        ("prefix", "a:b"),
        ("prefix", "a:c"),
    ]
    assert not table.remove(prefix)  # "2nd" still holds the pattern
    assert table.remove(second) and table.patterns == ["a:b"]
    assert table.handlers("a:b") == [exact] and table.pop("a:b") == [exact]
    assert table.clear() == [] and table.patterns == []
    for subscription in (exact, prefix, second):
        await subscription.stop()
