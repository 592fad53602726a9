"""Type aliases shared by every layer."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, NewType, TypeAlias

JsonObject: TypeAlias = dict[str, Any]
"""A JSON object: every payload, presence and assigns value is one."""

ConnectionId = NewType("ConnectionId", str)
"""The id the server gives every accepted connection; it is the user id in every channel."""

MaybeAwaitable: TypeAlias = Awaitable[None] | None
"""Handlers may be plain functions or coroutines."""

NextFn: TypeAlias = Callable[[], Awaitable[None]]
"""What a middleware calls to run the rest of the chain."""
