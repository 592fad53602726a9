"""``RedisHistory`` against the machine's real Redis (and a Redis Cluster started here)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from redis.asyncio import Redis
from redis.crc import key_slot

from pondsocket.history.redis import RedisHistory
from pondsocket.history.store import HistoryStore, HistoryUnavailableError
from tests import support
from tests.history.conformance import CHECKS, LIMITS, new_key
from tests.redis.servers import ping

PORT = 6379


@pytest.fixture
async def store() -> AsyncIterator[RedisHistory]:
    if not ping(PORT):
        support.unavailable(f"no Redis answers on 127.0.0.1:{PORT}", "Redis")
    history = RedisHistory.from_url(f"redis://127.0.0.1:{PORT}", prefix="pondsocket-test:history")
    yield history
    await history.close()


@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__)
async def test_conformance(
    store: RedisHistory, check: Callable[[HistoryStore], Awaitable[None]]
) -> None:
    await check(store)


async def test_keys_share_a_cluster_slot(store: RedisHistory) -> None:
    key = new_key()
    await store.append(key, [b"x"], size=5, **LIMITS)
    client = Redis(port=PORT)
    try:
        names = sorted([k.decode() async for k in client.scan_iter(match=f"*{key}*")])
        assert names == [
            f"pondsocket-test:history:{{{key}}}:log",
            f"pondsocket-test:history:{{{key}}}:meta",
            f"pondsocket-test:history:{{{key}}}:w:{store._writer}",  # the retry marker
        ]
        # Redis Cluster hashes only the text between the braces: every key, one slot.
        slots = {key_slot(n.encode()) for n in names}
        assert len(slots) == 1
        assert 0 < await client.pttl(names[0]) <= 60_000  # the log expires after ttl
        assert 0 < await client.pttl(names[2]) <= 60_000  # and the marker with it
    finally:
        await client.aclose()


async def test_a_batch_retried_after_a_lost_reply_is_stored_once(store: RedisHistory) -> None:
    """The script ran but its reply was lost (Redis killed, connection cut): the service
    retries the same records, which must not be stored a second time."""
    key = new_key()
    other = RedisHistory.from_url(f"redis://127.0.0.1:{PORT}", prefix="pondsocket-test:history")
    try:
        first = await store.append(key, [b"r1", b"r2"], size=50, **LIMITS)
        await other.append(key, [b"x1"], size=50, **LIMITS)  # another node meanwhile
        assert await store.append(key, [b"r1", b"r2"], size=50, **LIMITS) == first
        found = await store.read(key, 0, 50, **LIMITS)
        assert [r.data for r in found.records] == [b"r1", b"r2", b"x1"] and found.top == 3
        # a new batch gets the next offsets; a different batch is never taken for a retry
        assert (await store.append(key, [b"r3"], size=50, **LIMITS))[1] == [4]
        assert (await store.append(key, [b"r1"], size=50, **LIMITS))[1] == [5]
    finally:
        await other.close()


async def test_lost_data_means_a_new_epoch(store: RedisHistory) -> None:
    key = new_key()
    epoch, _ = await store.append(key, [b"1", b"2"], size=5, **LIMITS)
    client = Redis(port=PORT)
    try:  # what a Redis restart without persistence, or a flush, does
        await client.delete(f"pondsocket-test:history:{{{key}}}:meta")
    finally:
        await client.aclose()
    again_epoch, offsets = await store.append(key, [b"3"], size=5, **LIMITS)
    assert again_epoch != epoch and offsets == [1]
    # a retry of a batch stored in the lost epoch is stored again, in the new one
    client = Redis(port=PORT)
    try:
        await client.delete(f"pondsocket-test:history:{{{key}}}:meta")
    finally:
        await client.aclose()
    retried_epoch, offsets = await store.append(key, [b"3"], size=5, **LIMITS)
    assert retried_epoch not in (epoch, again_epoch) and offsets == [1]


async def test_unreachable_redis_is_a_clear_error() -> None:
    history = RedisHistory.from_url("redis://127.0.0.1:1")
    try:
        with pytest.raises(HistoryUnavailableError):
            await history.append(new_key(), [b"x"], size=5, **LIMITS)
    finally:
        await history.close()
