"""Fixtures for the RabbitMQ backend tests. Real server only: the machine's RabbitMQ on
127.0.0.1:5672 (guest/guest). Each test module uses its own exchange, so runs sharing the
broker do not see each other. A missing RabbitMQ skips these tests locally and fails them
in CI (``CI`` set): CI must never pass by skipping."""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import pytest

from pondsocket.pubsub.rabbitmq import RabbitMQPubSub
from tests import support

AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/"

RabbitFactory = Callable[..., AbstractAsyncContextManager[RabbitMQPubSub]]


def unavailable(reason: str) -> None:
    """Fail in CI, skip elsewhere (:func:`tests.support.unavailable`)."""
    support.unavailable(reason, "RabbitMQ")


def port_open(port: int = 5672) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


@pytest.fixture(autouse=True)
async def no_leaked_tasks() -> AsyncIterator[None]:
    """Every RabbitMQPubSub task (flusher, resync, handler workers) ends with ``close()``."""
    yield
    await asyncio.sleep(0)
    leaked = [
        task
        for task in asyncio.all_tasks()
        if task.get_name().startswith("pondsocket-rabbitmq") and not task.done()
    ]
    assert not leaked, f"tasks left running: {leaked}"


@pytest.fixture(scope="session")
def machine_rabbitmq() -> str:
    if not port_open():
        unavailable("no RabbitMQ answers on 127.0.0.1:5672")
    return AMQP_URL


@pytest.fixture(scope="module")
def exchange_name(request: pytest.FixtureRequest) -> str:
    """An exchange unique to the test module (and run)."""
    return f"test.{request.module.__name__.rsplit('.', 1)[-1]}.{uuid.uuid4().hex[:8]}"


@pytest.fixture
async def rabbit_factory(machine_rabbitmq: str, exchange_name: str) -> AsyncIterator[RabbitFactory]:
    opened: list[RabbitMQPubSub] = []

    @asynccontextmanager
    async def make(**options: Any) -> AsyncIterator[RabbitMQPubSub]:
        bus = await RabbitMQPubSub.connect(
            machine_rabbitmq, **{"exchange": exchange_name, **options}
        )
        opened.append(bus)
        try:
            yield bus
        finally:
            await bus.close()

    yield make
    for bus in opened:
        await bus.close()


@pytest.fixture
def pubsub_factory(rabbit_factory: RabbitFactory) -> RabbitFactory:
    """The conformance suite's fixture: connected RabbitMQPubSub instances on one broker."""
    return rabbit_factory


async def wait_until(predicate: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    """Poll ``predicate``; fail naming ``what`` after ``timeout`` s (a bound against hangs)."""
    try:
        async with asyncio.timeout(timeout):
            while not predicate():
                await asyncio.sleep(0.01)
    except TimeoutError:
        pytest.fail(f"timed out after {timeout:g} s waiting for {what}")
