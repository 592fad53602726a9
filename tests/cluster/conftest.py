"""Fixtures of the multi-process cluster tests: node processes over a real Redis.

* ``cluster``: a :class:`Cluster` on the shared Redis (127.0.0.1:6379) with a namespace of
  its own, so concurrent tests never see each other's nodes. Without that Redis the tests
  are skipped (or fail when ``CI`` is set).
* ``fault_cluster``: the same on a throwaway ``redis-server`` that the test may kill and
  restart (``fault_cluster.redis``).

Teardown closes every client, then SIGKILLs every node still running and the throwaway
Redis, whatever the test's outcome. A failed test prints the tail of each node's log.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import uuid
from collections.abc import AsyncIterator, Generator
from pathlib import Path
from typing import Any

import pytest

from tests.cluster.helpers import (
    ROOM,
    NodeProcess,
    RedisProcess,
    WsClient,
    redis_ping,
)

SHARED_REDIS_PORT = 6379


def _missing(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI is set: the cluster tests must run)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def shared_redis_url() -> str:
    if not redis_ping(SHARED_REDIS_PORT):
        _missing(f"no Redis answering on 127.0.0.1:{SHARED_REDIS_PORT}")
    return f"redis://127.0.0.1:{SHARED_REDIS_PORT}/0"


@pytest.fixture(scope="session")
def _redis_backend() -> None:
    try:
        import pondsocket.pubsub.redis  # noqa: F401
    except ImportError as exc:
        _missing(f"the Redis backend is not importable: {exc}")


class Cluster:
    """Node processes sharing one Redis and one namespace, and clients connected to them."""

    def __init__(self, redis_url: str, log_dir: Path, redis: RedisProcess | None = None) -> None:
        self.redis_url = redis_url
        self.redis = redis
        self.namespace = "t" + uuid.uuid4().hex[:12]
        self.log_dir = log_dir
        self.nodes: list[NodeProcess] = []
        self.clients: list[WsClient] = []

    @property
    def topic(self) -> str:
        """The broker topic of ``/room/1`` in this cluster."""
        return f"pondsocket:v1:{self.namespace}:socket:{ROOM}"

    async def start(self, *node_ids: str, **options: Any) -> list[NodeProcess]:
        """Start nodes concurrently (``heartbeat_interval=``, ``heartbeat_timeout=``) and
        wait for each to be READY."""
        nodes = [
            NodeProcess(node_id, self.redis_url, self.namespace, self.log_dir, **options)
            for node_id in node_ids
        ]
        self.nodes += nodes
        await asyncio.gather(*(node.start() for node in nodes))
        return nodes

    async def client(
        self,
        node: NodeProcess,
        name: str,
        *,
        join: bool = True,
        params: dict[str, Any] | None = None,
    ) -> WsClient:
        """A client named ``name`` on ``node``, joined to ``/room/1`` unless ``join=False``."""
        client = await WsClient.connect(node.url, name)
        self.clients.append(client)
        if join:
            answer = await client.join(ROOM, params)
            assert answer["event"] == "ACKNOWLEDGE", answer
        return client

    async def aclose(self) -> None:
        await asyncio.gather(*(client.close() for client in self.clients))
        await asyncio.gather(*(node.kill() for node in self.nodes))

    def dump_logs(self) -> None:
        for node in self.nodes:
            print(f"\n----- node {node.node_id} (port {node.port}) log tail -----")
            print(node.log_tail(60))


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.when == "call":
        item.stash[_FAILED] = report.failed
    return report


_FAILED = pytest.StashKey[bool]()


@contextlib.asynccontextmanager
async def _cluster(
    request: pytest.FixtureRequest,
    redis_url: str,
    tmp_path: Path,
    redis: RedisProcess | None = None,
) -> AsyncIterator[Cluster]:
    cluster = Cluster(redis_url, tmp_path, redis)
    try:
        yield cluster
    finally:
        try:
            await cluster.aclose()
        finally:
            if request.node.stash.get(_FAILED, False):
                cluster.dump_logs()


@pytest.fixture
async def cluster(
    request: pytest.FixtureRequest, shared_redis_url: str, _redis_backend: None, tmp_path: Path
) -> AsyncIterator[Cluster]:
    async with _cluster(request, shared_redis_url, tmp_path) as value:
        yield value


@pytest.fixture(params=[False], ids=["volatile"])
async def fault_cluster(
    request: pytest.FixtureRequest, _redis_backend: None, tmp_path: Path
) -> AsyncIterator[Cluster]:
    """A cluster on its own redis-server; parametrize ``fault_cluster`` indirectly with
    ``[True]`` for a Redis that persists (an append-only file)."""
    if shutil.which("redis-server") is None:
        _missing("redis-server is not on PATH")
    redis = RedisProcess(persistent=bool(request.param))
    try:
        await redis.start()
        async with _cluster(request, redis.url, tmp_path, redis) as value:
            yield value
    finally:
        redis.cleanup()
