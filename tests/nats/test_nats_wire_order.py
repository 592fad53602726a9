"""What NatsPubSub.subscribe() promises: when it returns, the server has the subscription.
A recording TCP proxy between the backend and the machine's NATS shows the order of the
client's commands on the wire: the SUB must precede the PING whose PONG ended the call
(nats-py 2.16's own flush() writes that PING ahead of a SUB it has queued)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from pondsocket.pubsub.nats import NatsPubSub
from tests.nats.conftest import MACHINE_NATS_PORT, unique_prefix
from tests.pubsub_conformance import Inbox
from tests.tcp_proxy import TcpProxy


@contextlib.asynccontextmanager
async def proxied_bus(prefix: str) -> AsyncIterator[tuple[NatsPubSub, TcpProxy]]:
    proxy = TcpProxy(MACHINE_NATS_PORT)
    port = await proxy.start()
    bus = await NatsPubSub.connect(f"nats://127.0.0.1:{port}", subject_prefix=prefix)
    try:
        yield bus, proxy
    finally:
        await bus.close()
        await proxy.aclose()


async def test_subscribe_returns_after_the_server_has_the_sub(machine_nats: str) -> None:
    prefix = unique_prefix()
    async with proxied_bus(prefix) as (bus, proxy):
        for pattern in ("pond:room:1", "pond:ro.*"):
            before = len(proxy.sent)
            await bus.subscribe(pattern, Inbox())
            written = bytes(proxy.sent[before:])
            subject = bus._codec.pattern(pattern)[0].encode()
            sub_at = written.find(b"SUB " + subject + b" ")
            assert sub_at >= 0, written
            # the PONG that ended subscribe() answered a PING written after the SUB
            assert b"PING\r\n" in written[sub_at:], written


async def test_a_message_published_right_after_subscribe_arrives(machine_nats: str) -> None:
    prefix = unique_prefix()
    other = await NatsPubSub.connect(machine_nats, subject_prefix=prefix)
    try:
        async with proxied_bus(prefix) as (bus, _):
            for n in range(20):
                exact, pattern = Inbox(), Inbox()
                await bus.subscribe(f"pond:room:{n}", exact)
                await bus.subscribe(f"pond:ro{n}.*", pattern)
                await other.publish(f"pond:room:{n}", b"x")
                await other.publish(f"pond:ro{n}x", b"y")
                await exact.wait_for(1)
                await pattern.wait_for(1)
    finally:
        await other.close()
