"""Channel history and recovery on join, in process (``TestClient``): one node, and two
nodes on one in-memory bus. Socket-level and broker tests are in tests/integration and
tests/history/test_redis_recovery.py."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest

from pondsocket import PondSocket
from pondsocket.core.channel import Channel
from pondsocket.core.contexts import EventContext, JoinContext
from pondsocket.core.lobby import Lobby
from pondsocket.errors import UsageError
from pondsocket.history import MemoryHistory
from pondsocket.history.store import Slice
from pondsocket.pubsub.memory import InMemoryBroker, InMemoryPubSub
from pondsocket.testing import Frame, TestClient, TestConnection
from tests.support import eventually

ROOM = "/room/1"


def make_pond(pubsub: InMemoryPubSub | None = None, **history: Any) -> tuple[PondSocket, Lobby]:
    pond = PondSocket(pubsub=pubsub)
    endpoint = pond.create_endpoint("/socket", lambda ctx: ctx.accept())

    def join(ctx: JoinContext) -> None:
        ctx.accept()

    lobby = endpoint.create_channel("/room/:id", join)
    lobby.history(**(history or {"size": 10, "ttl": 60}))

    @lobby.on_message("say")
    def say(ctx: EventContext) -> None:
        ctx.broadcast("said", ctx.payload)

    @lobby.on_message("shout")
    def shout(ctx: EventContext) -> None:
        ctx.broadcast_from("shouted", ctx.payload)

    return pond, lobby


def said(conn: TestConnection) -> list[Frame]:
    return [f for f in conn.frames if f["event"] in ("said", "shouted")]


def numbers(frames: Sequence[Frame]) -> list[int]:
    return [f["payload"]["n"] for f in frames]


def signal(conn: TestConnection) -> dict[str, Any]:
    found = [f for f in conn.frames if f["event"] == "recovery"]
    assert len(found) == 1, found
    assert found[0]["action"] == "SYSTEM"
    payload: dict[str, Any] = found[0]["payload"]
    return payload


async def joined(pond: PondSocket, params: dict[str, Any] | None = None) -> TestConnection:
    conn = await TestClient(pond).connect("/socket")
    ack = await conn.join(ROOM, params)
    assert ack["event"] == "ACKNOWLEDGE"
    await eventually(lambda: any(f["event"] == "recovery" for f in conn.frames), "the signal")
    return conn


async def say(conn: TestConnection, *ns: int, event: str = "say") -> None:
    for n in ns:
        await conn.send(ROOM, event, {"n": n})


async def test_a_fresh_join_learns_the_position() -> None:
    pond, _ = make_pond()
    alice = await joined(pond)
    first = signal(alice)
    assert first["recovered"] is False and first["reason"] == "not_requested"
    assert first["offset"] == 0 and isinstance(first["epoch"], str)
    await say(alice, 1, 2)
    await eventually(lambda: len(said(alice)) == 2, "two broadcasts")
    positions = [f["payload"]["_position"] for f in said(alice)]
    assert positions == [
        {"offset": 1, "epoch": first["epoch"]},
        {"offset": 2, "epoch": first["epoch"]},
    ]
    # the ACK is the first frame of the channel, the signal right after it
    events = [f["event"] for f in alice.frames if f["channelName"] == ROOM]
    assert events[:2] == ["ACKNOWLEDGE", "recovery"]


async def test_rejoin_recovers_what_was_missed_in_order_then_live() -> None:
    pond, _ = make_pond()
    alice = await joined(pond)
    await say(alice, 1, 2)
    await eventually(lambda: len(said(alice)) == 2, "two broadcasts")
    last = said(alice)[-1]["payload"]["_position"]
    await say(alice, 3, 4, 5)  # bob is away for these
    await eventually(lambda: len(said(alice)) == 5, "five broadcasts")
    bob = await joined(pond, {"recover": last})
    result = signal(bob)
    assert result == {
        "recovered": True,
        "reason": None,
        "missed": 3,
        "offset": 5,
        "epoch": last["epoch"],
    }
    await say(alice, 6)
    await eventually(lambda: len(said(bob)) == 4, "the live one")
    assert numbers(said(bob)) == [3, 4, 5, 6]
    events = [f["event"] for f in bob.frames if f["channelName"] == ROOM]
    assert events == ["ACKNOWLEDGE", "said", "said", "said", "recovery", "said"]


async def test_nothing_missed_is_recovered_with_nothing() -> None:
    pond, _ = make_pond()
    alice = await joined(pond)
    await say(alice, 1)
    await eventually(lambda: len(said(alice)) == 1, "one broadcast")
    bob = await joined(pond, {"recover": said(alice)[0]["payload"]["_position"]})
    assert signal(bob)["recovered"] is True and signal(bob)["missed"] == 0
    assert said(bob) == []


async def test_beyond_the_window_is_not_recoverable() -> None:
    pond, _ = make_pond(size=3, ttl=60)
    alice = await joined(pond)
    await say(alice, 1)
    await eventually(lambda: len(said(alice)) == 1, "one broadcast")
    first = said(alice)[0]["payload"]["_position"]
    await say(alice, 2, 3, 4, 5)  # 4 missed, 3 kept
    await eventually(lambda: len(said(alice)) == 5, "all")
    bob = await joined(pond, {"recover": first})
    assert signal(bob)["recovered"] is False
    assert signal(bob)["reason"] == "too_old"
    assert signal(bob)["offset"] == 5  # where to continue from after reloading
    assert said(bob) == []


@pytest.mark.parametrize(
    ("recover", "reason"),
    [
        ({"offset": 1, "epoch": "another-epoch"}, "epoch_changed"),
        ({"offset": 99, "epoch": None}, "invalid"),
        ({"offset": "1", "epoch": "x"}, "invalid"),
        ("yesterday", "invalid"),
    ],
)
async def test_positions_that_cannot_be_trusted(recover: Any, reason: str) -> None:
    pond, _ = make_pond()
    alice = await joined(pond)
    await say(alice, 1)
    await eventually(lambda: len(said(alice)) == 1, "one broadcast")
    bob = await joined(pond, {"recover": recover})
    assert signal(bob)["recovered"] is False and signal(bob)["reason"] == reason
    assert said(bob) == []


async def test_a_position_from_the_future_is_invalid() -> None:
    pond, _ = make_pond()
    alice = await joined(pond)
    epoch = signal(alice)["epoch"]
    bob = await joined(pond, {"recover": {"offset": 50, "epoch": epoch}})
    assert signal(bob)["reason"] == "invalid"


async def test_clients_cannot_set_the_position() -> None:
    pond, _ = make_pond()
    alice = await joined(pond)
    await alice.send(ROOM, "say", {"n": 1, "_position": {"offset": 999, "epoch": "forged"}})
    await eventually(lambda: len(said(alice)) == 1, "the broadcast")
    assert said(alice)[0]["payload"]["_position"]["offset"] == 1
    assert said(alice)[0]["payload"]["_position"]["epoch"] == signal(alice)["epoch"]


async def test_broadcast_from_is_not_replayed_to_its_sender() -> None:
    pond, _ = make_pond()
    alice = await joined(pond)
    bob = await joined(pond)
    start = {"offset": signal(alice)["offset"], "epoch": signal(alice)["epoch"]}
    await say(alice, 1, event="shout")
    await say(bob, 2, event="shout")
    await eventually(lambda: len(said(alice)) == 1 and len(said(bob)) == 1, "both")
    again = await joined(pond, {"recover": start})
    assert numbers(said(again)) == [1, 2]  # a third user gets both
    assert again.id != alice.id


class SlowHistory(MemoryHistory):
    """Reads wait for ``gate``: live broadcasts arrive while a member catches up. The
    answer is what the store held when asked, or (``late=True``) once the gate opens."""

    def __init__(self, *, late: bool = False) -> None:
        super().__init__()
        self.gate = asyncio.Event()
        self.gate.set()
        self.late = late

    async def read(self, key: str, after: int, limit: int, *, ttl: float, meta_ttl: float) -> Slice:
        if self.late:
            await self.gate.wait()
        found = await super().read(key, after, limit, ttl=ttl, meta_ttl=meta_ttl)
        await self.gate.wait()
        return found


async def test_live_broadcasts_during_recovery_come_after_it_once() -> None:
    store = SlowHistory()
    pond = PondSocket(history=store)
    endpoint = pond.create_endpoint("/socket", lambda ctx: ctx.accept())
    lobby = endpoint.create_channel("/room/:id", lambda ctx: ctx.accept()).history(size=50)
    lobby.on_message("say", lambda ctx: ctx.broadcast("said", ctx.payload))
    alice = await joined(pond)
    start = {"offset": 0, "epoch": signal(alice)["epoch"]}
    await say(alice, 1, 2, 3)
    await eventually(lambda: len(said(alice)) == 3, "three")
    store.gate.clear()
    bob = await TestClient(pond).connect("/socket")
    await bob.join(ROOM, {"recover": start})
    await say(alice, 4, 5)  # stored, read by nobody yet: bob is held
    await eventually(lambda: len(said(alice)) == 5, "five")
    assert said(bob) == []
    store.gate.set()
    await eventually(lambda: len(said(bob)) == 5, "bob caught up")
    assert numbers(said(bob)) == [1, 2, 3, 4, 5]
    assert signal(bob)["recovered"] is True


def slow_pond() -> tuple[PondSocket, SlowHistory]:
    store = SlowHistory(late=True)
    pond = PondSocket(history=store)
    endpoint = pond.create_endpoint("/socket", lambda ctx: ctx.accept())
    lobby = endpoint.create_channel("/room/:id", lambda ctx: ctx.accept()).history(size=50)
    lobby.on_message("say", lambda ctx: ctx.broadcast("said", ctx.payload))
    return pond, store


def positions(conn: TestConnection) -> list[int]:
    return [f["payload"]["_position"]["offset"] for f in said(conn)]


async def test_a_fresh_join_gets_what_is_broadcast_while_its_position_is_read() -> None:
    # The store's top, read after the join, counts broadcasts sent after it: they must
    # still reach the member, and the position it is told must lie below them.
    pond, store = slow_pond()
    alice = await joined(pond)
    await say(alice, 1, 2, 3)
    await eventually(lambda: len(said(alice)) == 3, "three")
    store.gate.clear()
    bob = await TestClient(pond).connect("/socket")
    await bob.join(ROOM)
    await say(alice, 4, 5)  # after bob's join, before his position is read
    await eventually(lambda: len(said(alice)) == 5, "five")
    store.gate.set()
    await eventually(lambda: len(said(bob)) == 2, "bob got both")
    assert numbers(said(bob)) == [4, 5]
    told = signal(bob)
    assert (told["recovered"], told["reason"], told["offset"]) == (False, "not_requested", 3)
    assert all(offset > told["offset"] for offset in positions(bob))
    await say(alice, 6)
    await eventually(lambda: len(said(bob)) == 3, "then live")
    assert numbers(said(bob)) == [4, 5, 6]


async def test_the_first_member_on_a_node_gets_what_arrives_while_it_is_read() -> None:
    pond, store = slow_pond()
    store.gate.clear()
    bob = await TestClient(pond).connect("/socket")
    await bob.join(ROOM)  # the first member: this node has delivered nothing yet
    channel = pond.endpoints[0].get_channel(ROOM)
    assert channel is not None and pond.history.store is not None
    record = b'{"e":"said","p":{"n":1},"r":"ALL_USERS","s":"other","q":"q1"}'
    key = pond.cluster.topic_of(channel)
    epoch, offsets = await store.append(key, [record], size=50, ttl=60, meta_ttl=600)
    position = {"offset": offsets[0], "epoch": epoch}
    channel.deliver_remote("said", {"n": 1, "_position": position}, "ALL_USERS", "other", "q1")
    store.gate.set()
    await eventually(lambda: len(said(bob)) == 1, "bob got it")
    assert signal(bob)["offset"] == offsets[0] - 1


async def test_the_app_reads_the_history() -> None:
    pond, _ = make_pond()
    alice = await joined(pond)
    await say(alice, 1, 2, 3)
    await eventually(lambda: len(said(alice)) == 3, "three")
    channel = pond.endpoints[0].get_channel(ROOM)
    assert channel is not None
    entries = await channel.history(1, limit=5)
    assert [(e.offset, e.event, e.payload) for e in entries] == [
        (2, "said", {"n": 2}),
        (3, "said", {"n": 3}),
    ]
    assert entries[0].positioned()["_position"]["offset"] == 2


async def test_channels_without_history_are_unchanged() -> None:
    pond = PondSocket()
    endpoint = pond.create_endpoint("/socket", lambda ctx: ctx.accept())
    lobby = endpoint.create_channel("/room/:id", lambda ctx: ctx.accept())
    lobby.on_message("say", lambda ctx: ctx.broadcast("said", ctx.payload))
    conn = await TestClient(pond).connect("/socket")
    await conn.join(ROOM)
    await say(conn, 1)
    assert said(conn)[0]["payload"] == {"n": 1}  # at once, no position, no signal
    assert not any(f["event"] == "recovery" for f in conn.frames)
    channel = endpoint.get_channel(ROOM)
    assert isinstance(channel, Channel)
    with pytest.raises(UsageError):
        await channel.history()


async def test_two_nodes_share_offsets_and_recover_from_each_other() -> None:
    broker = InMemoryBroker()
    pond_a, _ = make_pond(InMemoryPubSub(broker))
    pond_b, _ = make_pond(InMemoryPubSub(broker))
    alice = await joined(pond_a)
    bob = await joined(pond_b)
    await asyncio.sleep(0.1)  # both subscribed
    await say(alice, 1)
    await say(bob, 2)
    await say(alice, 3)
    await eventually(lambda: len(said(alice)) == 3 and len(said(bob)) == 3, "all on both")
    offsets = [f["payload"]["_position"]["offset"] for f in said(bob)]
    assert offsets == sorted(offsets) == [1, 2, 3]
    assert numbers(said(alice)) == numbers(said(bob))
    # carol rejoins on node B from the first message that node A delivered
    carol = await joined(pond_b, {"recover": said(alice)[0]["payload"]["_position"]})
    assert numbers(said(carol)) == numbers(said(alice))[1:]
    assert signal(carol)["recovered"] is True


async def test_a_gap_between_nodes_is_filled_from_the_store() -> None:
    pond, _ = make_pond()
    alice = await joined(pond)
    channel = pond.endpoints[0].get_channel(ROOM)
    assert channel is not None and pond.history.store is not None
    key = pond.cluster.topic_of(channel)
    epoch = signal(alice)["epoch"]
    # Another node stored 1..3, but only 1 and 3 reached us over the broker.
    records = [
        b'{"e":"said","p":{"n":%d},"r":"ALL_USERS","s":"other","q":"q%d"}' % (n, n)
        for n in (1, 2, 3)
    ]
    stored = await pond.history.store.append(key, records, size=10, ttl=60, meta_ttl=600)
    assert stored == (epoch, [1, 2, 3])
    for n in (1, 3):
        channel.deliver_remote(
            "said",
            {"n": n, "_position": {"offset": n, "epoch": epoch}},
            "ALL_USERS",
            "other",
            f"q{n}",
        )
    assert numbers(said(alice)) == [1]  # 3 waits for 2
    await eventually(lambda: len(said(alice)) == 3, "the gap filled")
    assert numbers(said(alice)) == [1, 2, 3]
    assert pond.history.stats.gaps_filled == 1
    assert not any(f["event"] == "continuity_lost" for f in alice.frames)


async def test_a_gap_the_store_cannot_fill_is_announced() -> None:
    pond, _ = make_pond()
    alice = await joined(pond)
    channel = pond.endpoints[0].get_channel(ROOM)
    assert channel is not None
    epoch = signal(alice)["epoch"]
    for n in (1, 3):  # nothing of this was stored: 2 is lost for good
        channel.deliver_remote(
            "said",
            {"n": n, "_position": {"offset": n, "epoch": epoch}},
            "ALL_USERS",
            "other",
            f"q{n}",
        )
    await eventually(lambda: len(said(alice)) == 2, "the rest delivered")
    lost = [f for f in alice.frames if f["event"] == "continuity_lost"]
    assert [f["payload"]["reason"] for f in lost] == ["gap"]
    assert alice.frames.index(lost[0]) < alice.frames.index(said(alice)[1])


async def test_a_resync_tells_members_of_channels_without_history() -> None:
    pond = PondSocket()
    endpoint = pond.create_endpoint("/socket", lambda ctx: ctx.accept())
    endpoint.create_channel("/room/:id", lambda ctx: ctx.accept())
    conn = await TestClient(pond).connect("/socket")
    await conn.join(ROOM)
    channel = endpoint.get_channel(ROOM)
    assert channel is not None
    pond.cluster.resync(channel, "reconnect")
    lost = [f for f in conn.frames if f["event"] == "continuity_lost"]
    assert len(lost) == 1 and lost[0]["action"] == "SYSTEM"
    assert lost[0]["payload"] == {"reason": "reconnect", "epoch": None}


async def test_a_bus_without_a_store_is_refused_at_startup() -> None:
    class Plain(InMemoryPubSub):
        def history_store(self) -> None:  # type: ignore[override]  # a bus with no store
            return None

    pond, _ = make_pond(Plain())
    with pytest.raises(UsageError, match="history"):
        await pond.startup()
    await pond.shutdown()


def test_history_options_are_checked() -> None:
    _, lobby = make_pond()
    for bad in ({"size": 0}, {"size": 10**9}, {"ttl": -1}, {"ttl": float("nan")}):
        with pytest.raises(UsageError):
            lobby.history(**bad)


async def test_a_broadcast_by_name_is_recorded_without_local_members() -> None:
    broker = InMemoryBroker()
    pond_a, _ = make_pond(InMemoryPubSub(broker))
    pond_b, _ = make_pond(InMemoryPubSub(broker))
    await pond_a.startup()  # what a transport does; no channel here would start it
    bob = await joined(pond_b)
    await asyncio.sleep(0.1)
    pond_a.endpoints[0].broadcast(ROOM, "said", {"n": 7})  # node A has no such channel
    await eventually(lambda: len(said(bob)) == 1, "the broadcast on node B")
    assert said(bob)[0]["payload"]["_position"]["offset"] == 1
    assert pond_a.endpoints[0].get_channel(ROOM) is None
    assert pond_a.history.stats.recorded == 1


class GatedAppends(MemoryHistory):
    """Appends wait for ``gate``: a store that answers, slower than the clients send."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()

    async def append(
        self, key: str, records: Sequence[bytes], *, size: int, ttl: float, meta_ttl: float
    ) -> tuple[str, list[int]]:
        await self.gate.wait()
        return await super().append(key, records, size=size, ttl=ttl, meta_ttl=meta_ttl)


async def test_a_store_that_does_not_keep_up_slows_the_sender_down() -> None:
    from pondsocket.history.service import BATCH, QUEUE_LIMIT

    store = GatedAppends()
    pond = PondSocket(history=store)
    endpoint = pond.create_endpoint("/socket", lambda ctx: ctx.accept())
    lobby = endpoint.create_channel("/room/:id", lambda ctx: ctx.accept()).history(size=10)
    lobby.on_message("say", lambda ctx: ctx.broadcast("said", ctx.payload))
    store.gate.set()
    alice = await joined(pond)
    store.gate.clear()
    channel = endpoint.get_channel(ROOM)
    assert channel is not None
    backlog = QUEUE_LIMIT // 2 + BATCH + 1  # the writer holds one batch, the rest waits
    for n in range(backlog):  # server code is never held back
        channel.broadcast("said", {"n": n})
    sending = asyncio.create_task(alice.send(ROOM, "say", {"n": -1}))
    await asyncio.sleep(0.1)
    assert not sending.done()  # the client's next message waits for the store
    store.gate.set()
    await asyncio.wait_for(sending, 10)
    await eventually(lambda: len(said(alice)) == backlog + 1, "everything delivered")
    assert pond.history.stats.unrecorded == 0
