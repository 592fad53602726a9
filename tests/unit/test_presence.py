import pytest

from pondsocket.core.presence import PresenceTable
from pondsocket.errors import PresenceError
from pondsocket.wire import PresenceEvent


def test_track_update_untrack_return_changes_in_order() -> None:
    table = PresenceTable()
    assert table.track("a", {"s": 1}).event is PresenceEvent.JOIN
    table.track("b", {"s": 2})
    change = table.update("a", {"s": 3})
    assert (change.event, change.changed) == (PresenceEvent.UPDATE, {"s": 3})
    assert table.values() == [{"s": 3}, {"s": 2}]
    left = table.untrack("b")
    assert left is not None and left.changed == {"s": 2}
    assert table.untrack("b") is None
    assert table.user_ids() == ["a"]


def test_misuse_is_reported() -> None:
    table = PresenceTable()
    with pytest.raises(PresenceError):
        table.update("a", {})
    table.track("a", {})
    with pytest.raises(PresenceError):
        table.track("a", {})
