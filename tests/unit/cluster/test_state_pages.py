"""A channel's state in pages (cluster/state_pages.py)."""

from __future__ import annotations

from collections.abc import Callable

from tests.support import eventually
from tests.unit.cluster.nodes import Node, presence_names, settle

from pondsocket.cluster import EnvelopeType, decode_envelope
from pondsocket.pubsub import InMemoryPubSub


async def test_a_large_room_state_is_answered_in_pages_and_applied_whole(
    cluster: Callable[[str], Node],
) -> None:
    # 150 members with 2.2 KB of assigns each: ~340 KB of state, more than a page (128 KiB);
    # a single STATE_RESPONSE would also be over the 256 KiB SNS limit.
    from pondsocket.cluster.state_pages import PAGE_BYTES

    a = cluster("a")
    members = [await a.client(f"u{i:03d}", pad="x" * 2200) for i in range(150)]
    await settle()
    answers: list[bytes] = []

    async def spy(topic: str, data: bytes) -> None:
        envelope = decode_envelope(data)
        # a's paged answer to b's join; under load a heartbeat may also be missed, and the
        # resync that follows answers again: keep the first answer of a only.
        if envelope.type is EnvelopeType.STATE_RESPONSE and envelope.source_node_id == "a":
            first = decode_envelope(answers[0]).fields.get("stateId") if answers else None
            if first is None or envelope.fields.get("stateId") == first:
                answers.append(data)

    listener = InMemoryPubSub(a.pubsub.broker)
    await listener.subscribe(a.pond.cluster.topic_of(a.channel), spy)
    b = cluster("b")
    bob = await b.client("bob")
    await eventually(lambda: len(presence_names(bob)) == 151, timeout=5)
    pages = [decode_envelope(data).fields for data in answers]
    assert [p["statePage"] for p in pages] == [1, 2, 3]
    assert {p["statePages"] for p in pages} == {3} and len({p["stateId"] for p in pages}) == 1
    assert all(len(data) < PAGE_BYTES + 4096 for data in answers)
    assert sum(len(p["users"]) for p in pages) == len(members)
    await listener.close()


def test_paged_answers_drop_unlisted_users_only_once_complete() -> None:
    from pondsocket.cluster.state_pages import PageAssembler, split_users

    pages = split_users([{"id": str(i), "pad": "x" * 100} for i in range(10)], budget=300)
    assert [len(p) for p in pages] == [2, 2, 2, 2, 2]
    assert split_users([]) == [[]]
    assembler = PageAssembler()
    key = ("topic", "node/state")
    assert assembler.add(key, 1, 3, {"a"}) is None
    assert assembler.add(key, 3, 3, {"c"}) is None  # out of order is fine
    assert assembler.add(key, 2, 3, {"b"}) == {"a", "b", "c"}
