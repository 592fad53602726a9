"""History over NATS JetStream through a NATS restart: two nodes (in process, each with
its own NatsPubSub) on a throwaway nats-server with JetStream on disk, a member on each
sending 100 msg/s into a channel with history and one without; the server is SIGKILLed
for 3 s and restarted on its port. Figures are printed (``-s``)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from pondsocket.pubsub.nats import NatsPubSub
from tests.history.traffic import build, lossless, members, under_traffic
from tests.nats.conftest import unique_prefix
from tests.nats.servers import NatsServer
from tests.nats.test_nats_faults import FAST

pytestmark = pytest.mark.slow


async def test_nats_restart_loses_nothing_on_history_channels(
    nats_binary: str, tmp_path: Path
) -> None:
    server = NatsServer(None, "-js", "-sd", str(tmp_path))
    server.start()
    prefix = unique_prefix()
    buses = [await NatsPubSub.connect(server.url, subject_prefix=prefix, **FAST) for _ in "ab"]
    ponds = [build(bus) for bus in buses]
    try:
        alice, bob = await members(ponds)

        async def restart() -> None:
            server.kill()
            await asyncio.sleep(3.0)
            await server.astart()
            await asyncio.sleep(3.0)

        sent = await under_traffic(alice, bob, restart)
        print(f"\nNATS restart (3 s) under 2 x 100 msg/s: {await lossless(alice, bob, sent)}")
    finally:
        for pond in ponds:
            await pond.shutdown()
        for bus in buses:
            await bus.close()
        server.kill()
