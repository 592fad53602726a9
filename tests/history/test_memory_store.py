from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest

from pondsocket.history import MemoryHistory
from pondsocket.history.store import HistoryStore
from tests.history.conformance import CHECKS, LIMITS


@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__)
async def test_conformance(check: Callable[[HistoryStore], Awaitable[None]]) -> None:
    await check(MemoryHistory())


async def test_idle_channels_are_forgotten() -> None:
    now = [1000.0]
    store = MemoryHistory(clock=lambda: now[0])
    epoch, _ = await store.append("a", [b"1"], size=5, ttl=10.0, meta_ttl=60.0)
    now[0] += 61
    await store.append("b", [b"1"], size=5, ttl=10.0, meta_ttl=60.0)
    assert store.channels == 1  # "a" went: memory stays bounded however many channels come
    again = await store.read("a", 0, 5, **LIMITS)
    assert again.epoch != epoch and again.top == 0  # a new epoch: no false "nothing missed"
