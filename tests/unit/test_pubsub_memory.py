"""The in-memory backend passes the shared PubSub conformance suite."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import pytest
from tests.pubsub_conformance import *  # noqa: F403

from pondsocket.pubsub import InMemoryPubSub, PubSub
from pondsocket.pubsub.memory import InMemoryBroker


@pytest.fixture
def pubsub_factory() -> object:
    # Instances of one test share a bus, the way two nodes share a broker.
    broker = InMemoryBroker()

    @asynccontextmanager
    async def make() -> AsyncIterator[PubSub]:
        view = InMemoryPubSub(broker)
        try:
            yield view
        finally:
            await view.close()

    def factory() -> AbstractAsyncContextManager[PubSub]:
        return make()

    return factory
