"""Forged cluster envelopes, published as an attacker with access to the broker would (a
plain PUBLISH on the real Redis): without a cluster secret a node still never lets another
rewrite its users' assigns; with one, unsigned and badly signed envelopes are dropped and
counted, keys rotate without a gap, and an old signed envelope cannot be replayed."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest

from pondsocket import JoinContext, PondSocket
from pondsocket.cluster import ClusterOptions, Envelope, EnvelopeType
from pondsocket.cluster.signing import EnvelopeSigner
from pondsocket.pubsub.redis import RedisPubSub
from pondsocket.testing import TestClient, TestConnection
from tests.support import eventually

ROOM = "/room/1"
OLD, NEW = "old-key-of-the-test-cluster-0001", "new-key-of-the-test-cluster-0002"


class Cluster:
    def __init__(self, url: str) -> None:
        self.url = url
        self.namespace = "sec" + uuid.uuid4().hex[:8]
        self.ponds: list[PondSocket] = []
        self.buses: list[RedisPubSub] = []

    async def node(self, **options: Any) -> PondSocket:
        bus = await RedisPubSub.connect(self.url)
        cluster = ClusterOptions(namespace=self.namespace, **options)
        pond = PondSocket(pubsub=bus, cluster=cluster)
        endpoint = pond.create_endpoint("/socket", lambda ctx: ctx.accept())

        def join(ctx: JoinContext) -> None:
            ctx.accept(ctx.join_params.get("assigns"))
            ctx.track({"name": ctx.join_params["name"]})

        lobby = endpoint.create_channel("/room/:id", join)
        lobby.on_message("all", lambda ctx: ctx.broadcast("all", ctx.payload))
        self.ponds.append(pond)
        self.buses.append(bus)
        return pond

    async def attacker(self) -> RedisPubSub:
        bus = await RedisPubSub.connect(self.url)
        self.buses.append(bus)
        return bus

    async def close(self) -> None:
        for pond in self.ponds:
            await pond.shutdown(timeout=2)
        for bus in self.buses:
            await bus.close()


@pytest.fixture
async def cluster(machine_redis: str) -> AsyncIterator[Cluster]:
    cluster = Cluster(machine_redis)
    yield cluster
    await cluster.close()


async def member(pond: PondSocket, name: str, **assigns: Any) -> TestConnection:
    conn = await TestClient(pond).connect("/socket")
    ack = await conn.join(ROOM, {"name": name, "assigns": assigns})
    assert ack["event"] == "ACKNOWLEDGE"
    return conn


def channel(pond: PondSocket) -> Any:
    return pond.endpoints[0].get_channel(ROOM)


def names(conn: TestConnection) -> list[str]:
    frames = conn.frames_for(ROOM, action="PRESENCE")
    return sorted(p["name"] for p in frames[-1]["payload"]["presence"]) if frames else []


def forged(kind: EnvelopeType, source: str = "evil-node", **fields: Any) -> bytes:
    return Envelope(kind, source, "socket", ROOM, fields).encode()


async def test_unsigned_a_peer_cannot_rewrite_a_local_users_assigns(cluster: Cluster) -> None:
    a = await cluster.node()
    alice = await member(a, "alice", role="user")
    attacker = await cluster.attacker()
    topic = a.cluster.topic_of(channel(a))
    update = forged(EnvelopeType.ASSIGNS_UPDATE, userId=alice.id, assigns={"role": "admin"})
    await attacker.publish(topic, update)
    single = forged(EnvelopeType.ASSIGNS_UPDATE, userId=alice.id, key="role", value="admin")
    await attacker.publish(topic, single)  # the older one-key form
    await eventually(lambda: a.cluster.stats.refused == 2)
    assert channel(a).get_user(alice.id).assigns == {"role": "user"}


async def test_unsigned_channel_assign_on_a_remote_user_is_a_clear_error(cluster: Cluster) -> None:
    from pondsocket import UsageError

    a, b = await cluster.node(), await cluster.node()
    alice = await member(a, "alice", role="user")
    bob = await member(b, "bob")
    await eventually(lambda: names(bob) == ["alice", "bob"])
    with pytest.raises(UsageError, match="signed cluster"):
        channel(b).assign(alice.id, {"role": "admin"})
    assert channel(b).get_assigns()[alice.id] == {"role": "user"}


async def test_signed_cluster_drops_unsigned_and_badly_signed_envelopes(cluster: Cluster) -> None:
    a, b = await cluster.node(secret=OLD), await cluster.node(secret=OLD)
    alice, bob = await member(a, "alice"), await member(b, "bob")
    await eventually(lambda: names(alice) == names(bob) == ["alice", "bob"])  # signed traffic
    attacker = await cluster.attacker()
    topic = a.cluster.topic_of(channel(a))
    as_bob = {"fromUserId": bob.id, "event": "all", "payload": {"text": "send me your password"}}
    message = forged(
        EnvelopeType.USER_MESSAGE, b.cluster.node_id, recipientDescriptor="ALL_USERS", **as_bob
    )
    await attacker.publish(topic, message)
    wrong_key = EnvelopeSigner([b"a-key-the-attacker-guessed-00000"])
    await attacker.publish(topic, wrong_key.sign(message))
    evict = forged(EnvelopeType.EVICT_USER, b.cluster.node_id, userId=alice.id, reason="x")
    await attacker.publish(topic, evict)
    wipe = forged(EnvelopeType.STATE_RESPONSE, b.cluster.node_id, users=[])
    await attacker.publish(topic, wipe)
    await eventually(lambda: a.cluster.stats.unsigned == 3 and a.cluster.stats.bad_signatures == 1)
    await bob.request(ROOM, "all", {"text": "real"})  # a real, signed message still passes
    await eventually(lambda: bool(alice.frames_for(ROOM, event="all")))
    assert [f["payload"]["text"] for f in alice.frames_for(ROOM, event="all")] == ["real"]
    assert channel(a).has_user(alice.id) and channel(a).knows_user(bob.id)
    assert names(alice) == ["alice", "bob"]


async def test_keys_rotate_without_a_gap(cluster: Cluster) -> None:
    # Step 2 of a rotation: a signs with the new key, b still with the old; both verify both.
    a = await cluster.node(secret=[NEW, OLD])
    b = await cluster.node(secret=[OLD, NEW])
    alice, bob = await member(a, "alice"), await member(b, "bob")
    await eventually(lambda: names(alice) == names(bob) == ["alice", "bob"])
    assert a.cluster.stats.bad_signatures == b.cluster.stats.bad_signatures == 0
    # A node that dropped the old key too early cannot read b (each refusal counted).
    c = await cluster.node(secret=NEW)
    carol = await member(c, "carol")
    await eventually(lambda: c.cluster.stats.bad_signatures > 0)
    await asyncio.sleep(0.3)
    assert "bob" not in names(carol) and "alice" in names(carol)


async def test_a_recorded_signed_envelope_cannot_be_replayed_later(cluster: Cluster) -> None:
    # dedupe_window=1 stands for a busy cluster that has forgotten the message id.
    options: dict[str, Any] = {"secret": OLD, "max_envelope_age": 1.0, "dedupe_window": 1}
    a, b = await cluster.node(**options), await cluster.node(**options)
    alice, bob = await member(a, "alice"), await member(b, "bob")
    await eventually(lambda: names(alice) == ["alice", "bob"])
    recorded: list[bytes] = []
    attacker = await cluster.attacker()
    topic = a.cluster.topic_of(channel(a))

    async def record(_: str, data: bytes) -> None:
        if b'"USER_MESSAGE"' in data:
            recorded.append(data)

    await attacker.subscribe(topic, record)
    await bob.request(ROOM, "all", {"text": "once"})
    await eventually(lambda: bool(recorded) and len(alice.frames_for(ROOM, event="all")) == 1)
    await bob.request(ROOM, "all", {"text": "twice"})  # a's one remembered id is this one's
    await eventually(lambda: len(alice.frames_for(ROOM, event="all")) == 2)
    await asyncio.sleep(1.2)
    before = a.cluster.stats.bad_signatures
    await attacker.publish(topic, recorded[0])
    await eventually(lambda: a.cluster.stats.bad_signatures == before + 1)
    assert len(alice.frames_for(ROOM, event="all")) == 2


async def test_accept_unsigned_lets_upstream_peers_in_but_not_bad_signatures(
    cluster: Cluster,
) -> None:
    a = await cluster.node(secret=OLD, accept_unsigned=True)
    alice = await member(a, "alice")
    attacker = await cluster.attacker()
    topic = a.cluster.topic_of(channel(a))
    joined = forged(
        EnvelopeType.USER_JOINED, "upstream-node", userId="js", presence={"name": "js"}, assigns={}
    )
    await attacker.publish(topic, joined)
    await eventually(lambda: names(alice) == ["alice", "js"])
    assert a.cluster.stats.unsigned == 1
    signer = EnvelopeSigner([b"not-our-key-but-a-long-one-00000"])
    other = forged(EnvelopeType.USER_JOINED, "evil", userId="x", presence={"name": "x"}, assigns={})
    await attacker.publish(topic, signer.sign(other))
    await eventually(lambda: a.cluster.stats.bad_signatures == 1)
    assert names(alice) == ["alice", "js"]


def test_weak_or_empty_secrets_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    from pondsocket import UsageError

    for secret in ("short", [], ["x" * 32, "short"]):
        bad: str | Sequence[str] = secret
        with pytest.raises(UsageError, match="secret"):
            ClusterOptions(secret=bad)
    monkeypatch.setenv("PONDSOCKET_CLUSTER_SECRET", f"{NEW}, {OLD}")
    assert ClusterOptions().signing_keys == (NEW.encode(), OLD.encode())
    assert NEW not in repr(ClusterOptions())
