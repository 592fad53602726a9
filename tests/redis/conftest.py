"""Fixtures for the Redis backend tests. Real servers only: the machine's Redis on
127.0.0.1:6379 for the conformance suite, throwaway ``redis-server`` processes
(``servers.py``) for fault and cluster tests. A missing Redis skips these tests locally
and fails them in CI (``CI`` set): CI must never pass by skipping."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import pytest

from pondsocket.pubsub.redis import RedisPubSub
from tests import support
from tests.redis.servers import RedisCluster, RedisServer, ping, redis_server_binary

MACHINE_REDIS_PORT = 6379
MACHINE_REDIS_URL = f"redis://127.0.0.1:{MACHINE_REDIS_PORT}"

RedisFactory = Callable[..., AbstractAsyncContextManager[RedisPubSub]]


def unavailable(reason: str) -> None:
    """Fail in CI, skip elsewhere (:func:`tests.support.unavailable`)."""
    support.unavailable(reason, "Redis")


@pytest.fixture(autouse=True)
async def no_leaked_tasks() -> AsyncIterator[None]:
    """Every RedisPubSub task (reader, flusher, handler workers) ends with ``close()``."""
    yield
    await asyncio.sleep(0)
    leaked = [
        task
        for task in asyncio.all_tasks()
        if task.get_name().startswith("pondsocket-redis") and not task.done()
    ]
    assert not leaked, f"tasks left running: {leaked}"


@pytest.fixture(scope="session")
def machine_redis() -> str:
    if not ping(MACHINE_REDIS_PORT):
        unavailable(f"no Redis answers on 127.0.0.1:{MACHINE_REDIS_PORT}")
    return MACHINE_REDIS_URL


@pytest.fixture(scope="session")
def redis_binary() -> str:
    binary = redis_server_binary()
    if binary is None:
        unavailable("redis-server is not installed (apt-get install redis-server)")
    assert binary is not None
    return binary


def bus_factory(url: str, **defaults: Any) -> tuple[RedisFactory, list[RedisPubSub]]:
    """A factory of connected instances sharing a channel prefix unique to the test (the
    machine's Redis may be shared with other test runs); every instance is closed at the
    end even if the test did not."""
    opened: list[RedisPubSub] = []
    prefix = f"test:{uuid.uuid4().hex[:10]}:"

    @asynccontextmanager
    async def make(**options: Any) -> AsyncIterator[RedisPubSub]:
        bus = await RedisPubSub.connect(url, **{"channel_prefix": prefix, **defaults, **options})
        opened.append(bus)
        try:
            yield bus
        finally:
            await bus.close()

    return make, opened


@pytest.fixture
async def redis_factory(machine_redis: str) -> AsyncIterator[RedisFactory]:
    make, opened = bus_factory(machine_redis)
    yield make
    for bus in opened:
        await bus.close()


@pytest.fixture
def pubsub_factory(redis_factory: RedisFactory) -> RedisFactory:
    """The conformance suite's fixture: connected RedisPubSub instances on one Redis."""
    return redis_factory


@pytest.fixture
def redis_server(redis_binary: str) -> Iterator[RedisServer]:
    """A throwaway standalone redis-server on a free port (killed at the end)."""
    for attempt in range(3):  # another test run may take the random port first
        server = RedisServer()
        try:
            server.start()
            break
        except RuntimeError:
            server.cleanup()
            if attempt == 2:
                raise
    try:
        yield server
    finally:
        server.cleanup()


@pytest.fixture(scope="module")
def redis_cluster(redis_binary: str) -> Iterator[RedisCluster]:
    """A throwaway 3-master Redis Cluster, shared by the tests of one module."""
    with RedisCluster() as cluster:
        yield cluster


async def wait_until(predicate: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    """Poll ``predicate`` until it is true; fail naming ``what`` after ``timeout`` seconds
    (a bound against hangs, not a timing assertion)."""
    try:
        async with asyncio.timeout(timeout):
            while not predicate():
                await asyncio.sleep(0.01)
    except TimeoutError:
        pytest.fail(f"timed out after {timeout:g} s waiting for {what}")
