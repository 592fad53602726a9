"""Server options validation (core/options.py)."""

from __future__ import annotations

import pytest

from pondsocket import PondOptions, UsageError


def test_presence_coalesce_window_must_not_be_negative() -> None:
    with pytest.raises(UsageError):
        PondOptions(presence_coalesce_window=-1)
