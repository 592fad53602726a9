"""User lookups waiting for an answer from the node hosting the user
(``USER_GET_REQUEST`` / ``USER_GET_RESPONSE``, docs/protocol.md)."""

from __future__ import annotations

import asyncio

from pondsocket.core.user import User
from pondsocket.wire.ids import random_hex


class PendingLookups:
    def __init__(self) -> None:
        self._waiting: dict[str, asyncio.Future[User | None]] = {}

    def expect(self) -> tuple[str, asyncio.Future[User | None]]:
        """A new request id and the future its answer will resolve (needs a running loop)."""
        request_id = random_hex()
        future: asyncio.Future[User | None] = asyncio.get_running_loop().create_future()
        self._waiting[request_id] = future
        return request_id, future

    def discard(self, request_id: str) -> None:
        self._waiting.pop(request_id, None)

    def resolve(self, request_id: str, user: User) -> None:
        future = self._waiting.get(request_id)
        if future is not None and not future.done():
            future.set_result(user)

    def cancel_all(self) -> None:
        for future in self._waiting.values():
            future.cancel()
