import gc
from collections.abc import Iterator

import pytest

from pondsocket import tune_gc


@pytest.fixture
def restore_gc() -> Iterator[None]:
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


def test_tune_gc_spaces_full_collections_and_freezes_startup_objects(restore_gc: None) -> None:
    young, middle, _ = gc.get_threshold()
    survivor = [object() for _ in range(10)]
    tune_gc()
    assert gc.get_threshold() == (young, middle, 100)
    assert gc.get_freeze_count() >= len(survivor)
    tune_gc(full_collection_every=7)
    assert gc.get_threshold()[2] == 7


def test_tune_gc_rejects_a_zero_interval(restore_gc: None) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        tune_gc(full_collection_every=0)
