"""RedisPubSub on a throwaway 3-master Redis Cluster, classic (SUBSCRIBE/PSUBSCRIBE) and
sharded (SSUBSCRIBE/SPUBLISH): the conformance suite (minus prefix patterns in sharded
mode, which Redis does not have), every shard reached, one instance to another."""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from redis.asyncio import RedisCluster as ClusterClient
from redis.crc import key_slot

import tests.pubsub_conformance as conformance
from pondsocket.pubsub import BusState
from pondsocket.pubsub.redis import RedisPubSub, ShardedPatternError
from tests.pubsub_conformance import Inbox
from tests.redis.conftest import RedisFactory, bus_factory, wait_until
from tests.redis.servers import RedisCluster, cli

pytestmark = pytest.mark.slow

USES_PATTERNS = {
    "test_prefix_pattern_matches_only_its_prefix",
    "test_two_instances_see_each_other",
}
MODES = {
    "classic": list(conformance.__all__),
    "sharded": [name for name in conformance.__all__ if name not in USES_PATTERNS],
}


@pytest.fixture
async def cluster_factory(
    redis_cluster: RedisCluster, request: pytest.FixtureRequest
) -> AsyncIterator[RedisFactory]:
    make, opened = bus_factory(redis_cluster.url, sharded=request.param == "sharded")
    yield make
    for bus in opened:
        await bus.close()


def _cases() -> Iterator[Any]:
    for mode, names in MODES.items():
        for name in names:
            yield pytest.param(mode, name, id=f"{mode}-{name.removeprefix('test_')}")


@pytest.mark.parametrize(("cluster_factory", "name"), list(_cases()), indirect=["cluster_factory"])
async def test_conformance(
    cluster_factory: RedisFactory, name: str, caplog: pytest.LogCaptureFixture
) -> None:
    test = getattr(conformance, name)
    wanted = inspect.signature(test).parameters
    kwargs = {"pubsub_factory": cluster_factory, "caplog": caplog}
    await test(**{key: value for key, value in kwargs.items() if key in wanted})


async def _topic_per_shard(cluster: RedisCluster, prefix: str) -> dict[str, str]:
    """{node name: topic} with one topic hashed to each master."""
    async with ClusterClient(host="127.0.0.1", port=cluster.ports[0]) as client:
        await client.initialize()
        topics: dict[str, str] = {}
        i = 0
        while len(topics) < len(cluster.ports):
            topic = f"pond.shard.{i}"
            node = client.get_node_from_key(prefix + topic)
            assert node is not None
            topics.setdefault(node.name, topic)
            i += 1
        return topics


@pytest.mark.parametrize("cluster_factory", ["classic", "sharded"], indirect=True)
async def test_every_shard_one_instance_to_another(
    cluster_factory: RedisFactory, redis_cluster: RedisCluster
) -> None:
    async with cluster_factory() as sender, cluster_factory() as receiver:
        topics = await _topic_per_shard(redis_cluster, receiver.options.channel_prefix)
        inboxes = {topic: Inbox() for topic in topics.values()}
        for topic, inbox in inboxes.items():
            await receiver.subscribe(topic, inbox)
        for topic in inboxes:
            for i in range(20):
                await sender.publish(topic, b"%s:%d" % (topic.encode(), i))
        for topic, inbox in inboxes.items():
            items = await inbox.wait_for(20)
            assert items == [(topic, b"%s:%d" % (topic.encode(), i)) for i in range(20)]
        if receiver.options.sharded:  # one subscriber connection per shard
            assert sorted(receiver._sessions) == sorted(topics)


async def test_sharded_mode_rejects_prefix_patterns(redis_cluster: RedisCluster) -> None:
    bus = await RedisPubSub.connect(redis_cluster.url, sharded=True)
    try:
        with pytest.raises(ShardedPatternError, match="sharded"):
            await bus.subscribe("pond.room.*", Inbox())
        await bus.subscribe("pond.room.*x", Inbox())  # not a prefix pattern: an exact topic
    finally:
        await bus.close()


async def test_classic_mode_accepts_a_cluster_client(redis_cluster: RedisCluster) -> None:
    async with ClusterClient(host="127.0.0.1", port=redis_cluster.ports[1]) as client:
        bus = await RedisPubSub.connect(client, channel_prefix="test:client:")
        inbox = Inbox()
        await bus.subscribe("pond.room.*", inbox)
        await bus.publish("pond.room.1", b"x")
        assert await inbox.wait_for(1) == [("pond.room.1", b"x")]
        await bus.close()
        assert await client.ping()  # the caller's client stays open


@pytest.mark.parametrize("cluster_factory", ["sharded"], indirect=True)
async def test_sharded_subscriber_of_one_shard_reconnects(
    cluster_factory: RedisFactory, redis_cluster: RedisCluster
) -> None:
    async with cluster_factory() as bus:
        states: list[BusState] = []
        bus.add_state_listener(states.append)
        topics = await _topic_per_shard(redis_cluster, bus.options.channel_prefix)
        inboxes = {topic: Inbox() for topic in topics.values()}
        for topic, inbox in inboxes.items():
            await bus.subscribe(topic, inbox)
        victim = next(iter(topics))  # drop the subscriber connection of one shard
        cli(int(victim.rsplit(":", 1)[1]), "client", "kill", "type", "pubsub")
        await wait_until(lambda: len(states) == 2, "DISCONNECTED then RECONNECTED")
        assert states == [BusState.DISCONNECTED, BusState.RECONNECTED]
        for topic in inboxes:
            await bus.publish(topic, b"after")
        for topic, inbox in inboxes.items():
            assert await inbox.wait_for(1) == [(topic, b"after")]


def _move_slot(cluster: RedisCluster, slot: int, source: int, target: int) -> None:
    """Give an empty slot to another master, the way a resharding ends."""
    ids = {port: cli(port, "cluster", "myid").strip() for port in cluster.ports}
    cli(target, "cluster", "setslot", str(slot), "importing", ids[source])
    cli(source, "cluster", "setslot", str(slot), "migrating", ids[target])
    for port in cluster.ports:
        cli(port, "cluster", "setslot", str(slot), "node", ids[target])


@pytest.mark.parametrize("cluster_factory", ["sharded"], indirect=True)
async def test_sharded_subscription_follows_a_moved_slot(
    cluster_factory: RedisFactory, redis_cluster: RedisCluster
) -> None:
    async with cluster_factory() as bus:
        states: list[BusState] = []
        bus.add_state_listener(states.append)
        inbox = Inbox()
        await bus.subscribe("pond.moving", inbox)
        slot = key_slot(f"{bus.options.channel_prefix}pond.moving".encode())
        [source_name] = bus._sessions
        source = int(source_name.rsplit(":", 1)[1])
        target = next(port for port in redis_cluster.ports if port != source)
        _move_slot(redis_cluster, slot, source, target)
        try:
            # Redis drops the shard subscriptions of the slot; the backend resubscribes on
            # the new owner and closes the connection it no longer needs.
            await wait_until(lambda: len(states) == 2, "DISCONNECTED then RECONNECTED")
            assert states == [BusState.DISCONNECTED, BusState.RECONNECTED]
            assert list(bus._sessions) == [f"127.0.0.1:{target}"]
            await bus.publish("pond.moving", b"after the move")
            assert await inbox.wait_for(1) == [("pond.moving", b"after the move")]
        finally:
            _move_slot(redis_cluster, slot, target, source)


@pytest.mark.parametrize("sharded", [False, True], ids=["classic", "sharded"])
async def test_master_failover(redis_binary: str, sharded: bool) -> None:
    """A master is SIGKILLed; its replica takes over. Subscriptions move to wherever
    their slots are now, and publishing resumes (what was published meanwhile included)."""
    with RedisCluster(replicas=1) as cluster:
        cluster.wait_replicas_synced()
        bus = await RedisPubSub.connect(cluster.url, sharded=sharded, channel_prefix="fo:")
        try:
            states: list[BusState] = []
            bus.add_state_listener(states.append)
            assert isinstance(bus.client, ClusterClient)
            # A topic owned by the master the classic subscriber uses: both the subscriber
            # and the publishing of that topic lose their node.
            client = bus.client

            def owner(key: str) -> str:
                node = client.get_node_from_key(key)
                assert node is not None
                return node.name

            victim = client.get_default_node()
            assert victim is not None
            i = 0
            while owner(f"fo:pond.{i}") != victim.name:
                i += 1
            topic = f"pond.{i}"
            inbox = Inbox()
            await bus.subscribe(topic, inbox)
            if sharded:
                assert list(bus._sessions) == [victim.name]
            cluster.server(int(victim.port)).kill()
            await wait_until(lambda: len(states) >= 1, "DISCONNECTED")
            await bus.publish(topic, b"during")
            await wait_until(lambda: len(states) == 2, "RECONNECTED", timeout=30)
            assert states == [BusState.DISCONNECTED, BusState.RECONNECTED]
            await bus.publish(topic, b"after")
            items = await inbox.wait_for(2, timeout=30)
            assert [data for _, data in items] == [b"during", b"after"]
            if sharded:
                [name] = bus._sessions
                assert name != victim.name
        finally:
            await bus.close()
