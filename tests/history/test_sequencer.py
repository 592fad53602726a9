from __future__ import annotations

from pondsocket.core.history import Recorded
from pondsocket.core.relay import ALL_USERS as ALL_USERS_RECIPIENTS
from pondsocket.history.sequencer import Sequencer


def rec(offset: int, epoch: str = "e1") -> Recorded:
    return Recorded(offset, epoch, "said", {"n": offset}, ALL_USERS_RECIPIENTS, "u", f"r{offset}")


def offsets(items: list[Recorded]) -> list[int]:
    return [r.offset for r in items]


def test_in_order_passes_at_once() -> None:
    seq = Sequencer(10)
    assert offsets(seq.offer(rec(5)).ready) == [5]
    assert offsets(seq.offer(rec(6)).ready) == [6]
    assert seq.last == 6


def test_out_of_order_waits_for_the_gap() -> None:
    seq = Sequencer(10)
    seq.offer(rec(1))
    placed = seq.offer(rec(3))
    assert placed.ready == [] and placed.waiting
    placed = seq.offer(rec(2))
    assert offsets(placed.ready) == [2, 3] and not placed.waiting


def test_duplicates_are_dropped() -> None:
    seq = Sequencer(10)
    seq.offer(rec(1))
    seq.offer(rec(2))
    assert seq.offer(rec(1)).ready == []
    assert seq.offer(rec(2)).ready == []


def test_start_at_a_known_position() -> None:
    seq = Sequencer(10)
    seq.start_at("e1", 7)
    assert seq.offer(rec(9)).waiting
    assert offsets(seq.offer(rec(8)).ready) == [8, 9]
    assert seq.last == 9


def test_what_was_on_its_way_at_the_start_is_let_through_once() -> None:
    # The store said 7; 6 and 7 were stored before that but reach this node after it.
    seq = Sequencer(10)
    seq.start_at("e1", 7)
    assert offsets(seq.offer(rec(7)).ready) == [7]
    assert offsets(seq.offer(rec(6)).ready) == [6]
    assert seq.offer(rec(7)).ready == []  # a second copy: dropped
    assert seq.offer(rec(-3)).ready == []  # further back than the limit
    assert offsets(seq.offer(rec(8)).ready) == [8]
    assert seq.last == 8


def test_skip_gives_up_the_gap() -> None:
    seq = Sequencer(10)
    seq.offer(rec(1))
    seq.offer(rec(4))
    placed = seq.skip()
    assert offsets(placed.ready) == [4] and placed.skipped
    assert seq.offer(rec(2)).ready == []  # too late now


def test_a_full_buffer_skips_instead_of_growing() -> None:
    seq = Sequencer(3)
    seq.offer(rec(1))
    for n in (3, 4, 5):
        assert seq.offer(rec(n)).ready == []
    placed = seq.offer(rec(6))
    assert placed.skipped and offsets(placed.ready) == [3, 4, 5, 6]


def test_a_new_epoch_restarts_the_stream() -> None:
    seq = Sequencer(10)
    seq.offer(rec(40))
    placed = seq.offer(rec(1, "e2"))
    assert placed.reset and offsets(placed.ready) == [1]
    assert seq.epoch == "e2"
