"""Fixtures for the Google Pub/Sub backend tests: the official emulator (``gcloud beta
emulators pubsub``), started by the tests on a free port, one per test module, always
killed with its whole process group (gcloud's Python wrapper and the Java server). A
missing gcloud or Java skips these tests locally and fails them in CI (``CI`` set)."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import pytest

from pondsocket.pubsub.gcp import GooglePubSub
from tests import support

GoogleFactory = Callable[..., AbstractAsyncContextManager[GooglePubSub]]


def unavailable(reason: str) -> None:
    """Fail in CI, skip elsewhere (:func:`tests.support.unavailable`)."""
    support.unavailable(reason, "Google Pub/Sub")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


class Emulator:
    """One Pub/Sub emulator process group on a fixed port (restartable on that port)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        self._log = tempfile.NamedTemporaryFile(prefix="pubsub-emulator-", suffix=".log")  # noqa: SIM115 (closed in close())
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60.0) -> float:
        """Start it and wait until it listens; returns the start-up time in seconds."""
        began = time.monotonic()
        self.process = subprocess.Popen(
            ["gcloud", "beta", "emulators", "pubsub", "start", f"--host-port={self.host}"],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # its own process group: gcloud and its Java child
        )
        while not port_open(self.port):
            if self.process.poll() is not None or time.monotonic() - began > timeout:
                self.kill()
                self._log.seek(0)
                raise RuntimeError(f"the Pub/Sub emulator did not start: {self._log.read()!r}")
            time.sleep(0.05)
        return time.monotonic() - began

    def kill(self) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        with_group = True
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            with_group = False
        process.wait(timeout=10)
        deadline = time.monotonic() + 10
        while with_group and port_open(self.port) and time.monotonic() < deadline:
            time.sleep(0.05)

    def close(self) -> None:
        self.kill()
        self._log.close()


def emulator_available() -> None:
    if shutil.which("gcloud") is None or shutil.which("java") is None:
        unavailable("gcloud and Java are needed for the Pub/Sub emulator")


@pytest.fixture(scope="module")
def emulator() -> Iterator[Emulator]:
    """The module's own emulator, killed at the end."""
    emulator_available()
    for attempt in range(3):  # another process may take the free port first
        emulator = Emulator()
        try:
            emulator.start()
            break
        except RuntimeError:
            emulator.close()
            if attempt == 2:
                raise
    try:
        yield emulator
    finally:
        emulator.close()


@pytest.fixture(autouse=True)
async def no_leaked_tasks() -> AsyncIterator[None]:
    """Every GooglePubSub task (supervisor, handler workers) ends with ``close()``."""
    yield
    await asyncio.sleep(0)
    leaked = [
        task
        for task in asyncio.all_tasks()
        if task.get_name().startswith("pondsocket-gcp") and not task.done()
    ]
    assert not leaked, f"tasks left running: {leaked}"


def bus_factory(emulator: Emulator, **defaults: Any) -> tuple[GoogleFactory, list[GooglePubSub]]:
    """Connected instances sharing a project unique to the test; all closed at the end."""
    opened: list[GooglePubSub] = []
    url = f"gcppubsub://test-{uuid.uuid4().hex[:10]}?emulator={emulator.host}"

    @asynccontextmanager
    async def make(**options: Any) -> AsyncIterator[GooglePubSub]:
        bus = await GooglePubSub.connect(url, **{**defaults, **options})
        opened.append(bus)
        try:
            yield bus
        finally:
            await bus.close()

    return make, opened


@pytest.fixture
async def gcp_factory(emulator: Emulator) -> AsyncIterator[GoogleFactory]:
    make, opened = bus_factory(emulator)
    yield make
    for bus in opened:
        await bus.close()


@pytest.fixture
def pubsub_factory(gcp_factory: GoogleFactory) -> GoogleFactory:
    """The conformance suite's fixture."""
    return gcp_factory


async def wait_until(predicate: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    try:
        async with asyncio.timeout(timeout):
            while not predicate():
                await asyncio.sleep(0.01)
    except TimeoutError:
        pytest.fail(f"timed out after {timeout:g} s waiting for {what}")
