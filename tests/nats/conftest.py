"""Fixtures for the NATS backend tests. Real servers only: the machine's NATS on
127.0.0.1:4222 for the conformance suite, throwaway ``nats-server`` processes
(``servers.py``) for fault tests. A missing NATS skips these tests locally and fails them
in CI (``CI`` set): CI must never pass by skipping."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import pytest

from pondsocket.pubsub.nats import NatsPubSub
from tests import support
from tests.nats.servers import NatsServer, nats_server_binary, ping

MACHINE_NATS_PORT = 4222
MACHINE_NATS_URL = f"nats://127.0.0.1:{MACHINE_NATS_PORT}"

NatsFactory = Callable[..., AbstractAsyncContextManager[NatsPubSub]]


def unavailable(reason: str) -> None:
    """Fail in CI, skip elsewhere (:func:`tests.support.unavailable`)."""
    support.unavailable(reason, "NATS")


@pytest.fixture(autouse=True)
async def no_leaked_tasks() -> AsyncIterator[None]:
    """Every handler worker ends with ``cancel()`` or ``close()``."""
    yield
    await asyncio.sleep(0)
    leaked = [
        task
        for task in asyncio.all_tasks()
        if task.get_name().startswith("pondsocket-nats") and not task.done()
    ]
    assert not leaked, f"tasks left running: {leaked}"


@pytest.fixture(scope="session")
def machine_nats() -> str:
    if not ping(MACHINE_NATS_PORT):
        unavailable(f"no NATS answers on 127.0.0.1:{MACHINE_NATS_PORT}")
    return MACHINE_NATS_URL


@pytest.fixture(scope="session")
def nats_binary() -> str:
    binary = nats_server_binary()
    if binary is None:
        unavailable("nats-server is not installed (apt-get install nats-server)")
    assert binary is not None
    return binary


def unique_prefix() -> str:
    return f"test.{uuid.uuid4().hex[:12]}"


def bus_factory(url: str, **defaults: Any) -> tuple[NatsFactory, list[NatsPubSub]]:
    """A factory of connected instances sharing a subject prefix unique to the test (the
    machine's NATS may be shared with other test runs); every instance is closed at the
    end even if the test did not."""
    opened: list[NatsPubSub] = []
    prefix = unique_prefix()

    @asynccontextmanager
    async def make(**options: Any) -> AsyncIterator[NatsPubSub]:
        bus = await NatsPubSub.connect(url, **{"subject_prefix": prefix, **defaults, **options})
        opened.append(bus)
        try:
            yield bus
        finally:
            await bus.close()

    return make, opened


@pytest.fixture
async def nats_factory(machine_nats: str) -> AsyncIterator[NatsFactory]:
    make, opened = bus_factory(machine_nats)
    yield make
    for bus in opened:
        await bus.close()


@pytest.fixture
def pubsub_factory(nats_factory: NatsFactory) -> NatsFactory:
    """The conformance suite's fixture: connected NatsPubSub instances on one NATS."""
    return nats_factory


@pytest.fixture
def nats_server(nats_binary: str) -> Iterator[NatsServer]:
    """A throwaway nats-server on a free port (killed at the end)."""
    for attempt in range(3):  # another test run may take the random port first
        server = NatsServer()
        try:
            server.start()
            break
        except RuntimeError:
            server.kill()
            if attempt == 2:
                raise
    try:
        yield server
    finally:
        server.kill()


async def wait_until(predicate: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    """Poll ``predicate`` until it is true; fail naming ``what`` after ``timeout`` seconds."""
    try:
        async with asyncio.timeout(timeout):
            while not predicate():
                await asyncio.sleep(0.01)
    except TimeoutError:
        pytest.fail(f"timed out after {timeout:g} s waiting for {what}")
