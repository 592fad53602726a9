"""What every ``HistoryStore`` must do; each store's test module runs these against a
real instance (``make_store`` gives a fresh store, keys are unique per test)."""

from __future__ import annotations

import uuid

from pondsocket.history.store import HistoryStore

LIMITS = {"ttl": 60.0, "meta_ttl": 600.0}


def new_key() -> str:
    return f"test:{uuid.uuid4().hex}"


async def check_offsets_grow_by_one(store: HistoryStore) -> None:
    key = new_key()
    epoch, offsets = await store.append(key, [b"a", b"b"], size=10, **LIMITS)
    assert offsets == [1, 2]
    epoch2, more = await store.append(key, [b"c"], size=10, **LIMITS)
    assert (epoch2, more) == (epoch, [3])
    found = await store.read(key, 0, 10, **LIMITS)
    assert (found.epoch, found.top) == (epoch, 3)
    assert [(r.offset, r.data) for r in found.records] == [(1, b"a"), (2, b"b"), (3, b"c")]


async def check_read_after_and_limit(store: HistoryStore) -> None:
    key = new_key()
    await store.append(key, [str(i).encode() for i in range(1, 8)], size=10, **LIMITS)
    found = await store.read(key, 3, 2, **LIMITS)
    assert [r.offset for r in found.records] == [4, 5]
    assert found.top == 7
    assert (await store.read(key, 7, 10, **LIMITS)).records == []


async def check_keeps_last_size(store: HistoryStore) -> None:
    key = new_key()
    for i in range(1, 13):
        await store.append(key, [str(i).encode()], size=5, **LIMITS)
    found = await store.read(key, 0, 100, **LIMITS)
    assert [r.offset for r in found.records] == [8, 9, 10, 11, 12]
    assert found.top == 12


async def check_position_read_creates_a_stable_epoch(store: HistoryStore) -> None:
    key = new_key()
    empty = await store.read(key, 0, 0, **LIMITS)
    assert (empty.top, empty.records) == (0, [])
    epoch, offsets = await store.append(key, [b"x"], size=5, **LIMITS)
    assert (epoch, offsets) == (empty.epoch, [1])  # a client at offset 0 of that epoch can recover


async def check_keys_are_independent(store: HistoryStore) -> None:
    one, two = new_key(), new_key()
    epoch_one, _ = await store.append(one, [b"1"], size=5, **LIMITS)
    epoch_two, offsets = await store.append(two, [b"2"], size=5, **LIMITS)
    assert offsets == [1]
    assert epoch_one != epoch_two


async def check_old_records_are_not_returned(store: HistoryStore) -> None:
    key = new_key()
    await store.append(key, [b"old"], size=5, ttl=60.0, meta_ttl=600.0)
    found = await store.read(key, 0, 5, ttl=1e-9, meta_ttl=600.0)
    assert found.top == 1
    assert found.records == []  # older than the ttl asked: gone for recovery


async def check_binary_data_round_trips(store: HistoryStore) -> None:
    key = new_key()
    data = bytes(range(256)) + '{"é":"😀"}'.encode()
    await store.append(key, [data], size=5, **LIMITS)
    assert (await store.read(key, 0, 5, **LIMITS)).records[0].data == data


CHECKS = [
    check_offsets_grow_by_one,
    check_read_after_and_limit,
    check_keeps_last_size,
    check_position_read_creates_a_stable_epoch,
    check_keys_are_independent,
    check_old_records_are_not_returned,
    check_binary_data_round_trips,
]
