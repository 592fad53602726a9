"""Fixtures for the SNS/SQS backend tests: a real moto server (``moto[server]``) started
by the tests on a free port. A missing moto skips these tests locally and fails them in
CI (``CI`` set): CI must never pass by skipping."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import pytest

from pondsocket.pubsub.aws import SnsSqsPubSub
from tests import support
from tests.aws.moto_server import MotoServer, moto_available

AwsFactory = Callable[..., AbstractAsyncContextManager[SnsSqsPubSub]]
CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
}


def unavailable(reason: str) -> None:
    """Fail in CI, skip elsewhere (:func:`tests.support.unavailable`)."""
    support.unavailable(reason, "AWS backend")


@pytest.fixture(autouse=True)
def dummy_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in CREDENTIALS.items():
        monkeypatch.setenv(name, value)


@pytest.fixture(autouse=True)
async def no_leaked_tasks() -> AsyncIterator[None]:
    """Every SnsSqsPubSub task (receiver, publishers, recovery, handlers) ends with close()."""
    yield
    await asyncio.sleep(0)
    leaked = [
        task
        for task in asyncio.all_tasks()
        if task.get_name().startswith("pondsocket-aws") and not task.done()
    ]
    assert not leaked, f"tasks left running: {leaked}"


def _start_server() -> MotoServer:
    if not moto_available():
        unavailable("moto[server] is not installed (pip install 'moto[server]')")
    for attempt in range(3):  # another process may take the free port first
        server = MotoServer()
        try:
            server.start()
            return server
        except RuntimeError:
            server.stop()
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


@pytest.fixture(scope="session")
def moto() -> Iterator[MotoServer]:
    """One moto server for the tests that do not stop it."""
    server = _start_server()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def own_moto() -> Iterator[MotoServer]:
    """A moto server for one test, which may stop and restart it."""
    server = _start_server()
    try:
        yield server
    finally:
        server.stop()


def bus_factory(server: MotoServer, **defaults: Any) -> tuple[AwsFactory, list[SnsSqsPubSub]]:
    """A factory of connected instances on an SNS topic unique to the test; every instance
    is closed at the end even if the test did not."""
    opened: list[SnsSqsPubSub] = []
    topic = f"test-{uuid.uuid4().hex[:10]}"

    @asynccontextmanager
    async def make(**options: Any) -> AsyncIterator[SnsSqsPubSub]:
        settings = {"topic": topic, "wait_time_seconds": 2, **defaults, **options}
        bus = await SnsSqsPubSub.connect(server.url(settings.pop("topic")), **settings)
        opened.append(bus)
        try:
            yield bus
        finally:
            await bus.close()

    return make, opened


@pytest.fixture
async def aws_factory(moto: MotoServer) -> AsyncIterator[AwsFactory]:
    make, opened = bus_factory(moto)
    yield make
    for bus in opened:
        await bus.close()


@pytest.fixture
def pubsub_factory(aws_factory: AwsFactory) -> AwsFactory:
    """The conformance suite's fixture: connected SnsSqsPubSub instances on one topic."""
    return aws_factory


async def wait_until(predicate: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    """Poll ``predicate`` until it is true; fail naming ``what`` after ``timeout`` seconds."""
    try:
        async with asyncio.timeout(timeout):
            while not predicate():
                await asyncio.sleep(0.01)
    except TimeoutError:
        pytest.fail(f"timed out after {timeout:g} s waiting for {what}")
