"""``NatsHistory`` against the machine's real NATS server with JetStream."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from nats.aio.client import Client

import nats
from pondsocket.history.nats import NatsHistory
from pondsocket.history.store import HistoryStore
from tests import support
from tests.history.conformance import CHECKS, LIMITS, new_key

URL = "nats://127.0.0.1:4222"


@pytest.fixture
async def client() -> AsyncIterator[Client]:
    try:
        nc = await nats.connect(URL, connect_timeout=2, max_reconnect_attempts=0)
    except Exception as exc:
        support.unavailable(f"no NATS answers at {URL}: {exc!r}", "NATS")
    try:
        yield nc
    finally:
        await nc.close()


@pytest.fixture
async def store(client: Client) -> AsyncIterator[NatsHistory]:
    name = "PONDTEST_" + uuid.uuid4().hex[:8].upper()
    history = NatsHistory(client, stream=name, subject_prefix=f"pondtest.{name.lower()}")
    yield history
    await client.jetstream().delete_stream(name)


@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__)
async def test_conformance(
    store: NatsHistory, check: Callable[[HistoryStore], Awaitable[None]]
) -> None:
    await check(store)


async def test_two_nodes_never_share_an_offset(client: Client) -> None:
    name = "PONDTEST_" + uuid.uuid4().hex[:8].upper()
    prefix = f"pondtest.{name.lower()}"
    one = NatsHistory(client, stream=name, subject_prefix=prefix)
    two = NatsHistory(client, stream=name, subject_prefix=prefix)  # another node's
    key = new_key()
    try:
        results = await asyncio.gather(
            *(
                (one if i % 2 else two).append(key, [b"a%d" % i, b"b%d" % i], size=100, **LIMITS)
                for i in range(20)
            )
        )
        offsets = sorted(o for _, batch in results for o in batch)
        assert offsets == list(range(1, 41))
        assert len({epoch for epoch, _ in results}) == 1
        found = await one.read(key, 0, 100, **LIMITS)
        assert [r.offset for r in found.records] == offsets
        # a retry (same bytes: every record carries a unique id) is stored once
        again = await two.append(key, [b"a0"], size=100, **LIMITS)
        assert again[1] == [
            o for o, r in zip(offsets, found.records, strict=True) if r.data == b"a0"
        ]
        assert (await one.read(key, 0, 100, **LIMITS)).top == 40
    finally:
        await client.jetstream().delete_stream(name)
