"""Helpers every test suite shares: defined once here."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from typing import NoReturn

import pytest


async def eventually(
    condition: Callable[[], object], what: str = "the condition", *, timeout: float = 10.0
) -> None:
    """Wait until ``condition()`` is true; an ``AssertionError`` naming ``what`` after
    ``timeout`` seconds (generous: only a failing test waits that long)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {timeout} s")
        await asyncio.sleep(0.01)


def unavailable(reason: str, service: str) -> NoReturn:
    """A service the tests need is missing: fail in CI (``CI`` set: CI must never pass by
    skipping), skip elsewhere."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI is set: {service} tests must not be skipped)")
    pytest.skip(reason)
