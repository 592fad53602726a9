"""A channel's state in pages: a ``STATE_RESPONSE`` small enough for every broker.

A room's state (every local member with its assigns and presence) can outgrow what a broker
carries in one message (Redis: our 1 MiB limit, SNS: 256 KiB), and a node joining later
would then see an empty room. So the answer is split into pages of at most
:data:`PAGE_BYTES` of users. Each page is an ordinary ``STATE_RESPONSE`` (upstream peers
apply every page as they would one answer); ours also carry ``stateId``/``statePage``/
``statePages``, so a receiver waits for every page before it drops the users the answer no
longer lists. A one-page answer carries none of these fields, as before.
"""

from __future__ import annotations

import collections
from typing import Any

from pondsocket.cluster.envelope import Envelope, EnvelopeType
from pondsocket.wire.codec import encoded_size
from pondsocket.wire.ids import random_hex

PAGE_BYTES = 128 * 1024
"""Budget for the users of one page (the envelope adds a few hundred bytes)."""
_PENDING_LIMIT = 1024
"""Answers being assembled at once; beyond it the oldest is forgotten (it never completes,
so its unlisted users are simply not dropped: the safe side)."""


def split_users(
    users: list[dict[str, Any]], budget: int = PAGE_BYTES
) -> list[list[dict[str, Any]]]:
    """``users`` in pages of at most ``budget`` encoded bytes (a user larger than the budget
    gets a page of its own); always at least one page, possibly empty."""
    pages: list[list[dict[str, Any]]] = [[]]
    used = 0
    for user in users:
        size = encoded_size(user) + 1  # the comma
        if pages[-1] and used + size > budget:
            pages.append([])
            used = 0
        pages[-1].append(user)
        used += size
    return pages


def state_responses(
    node_id: str, endpoint: str, channel_name: str, users: list[dict[str, Any]]
) -> list[Envelope]:
    """A node's answer about its ``users`` of a channel: one ``STATE_RESPONSE`` per page."""
    pages = split_users(users)
    state_id = random_hex() if len(pages) > 1 else None
    responses = []
    for number, page in enumerate(pages, 1):
        fields: dict[str, Any] = {"users": page}
        if state_id is not None:
            fields.update(stateId=state_id, statePage=number, statePages=len(pages))
        kind = EnvelopeType.STATE_RESPONSE
        responses.append(Envelope(kind, node_id, endpoint, channel_name, fields))
    return responses


class PageAssembler:
    """Collects the user ids of a paged answer until every page has arrived."""

    def __init__(self) -> None:
        self._pending: collections.OrderedDict[tuple[str, str], tuple[set[int], set[str]]] = (
            collections.OrderedDict()
        )

    def add(
        self, key: tuple[str, str], page: int, pages: int, user_ids: set[str]
    ) -> set[str] | None:
        """Record one page (``key``: topic and stateId); every listed id once complete."""
        seen, listed = self._pending.pop(key, (set(), set()))
        seen.add(page)
        listed |= user_ids
        if len(seen) >= pages:
            return listed
        self._pending[key] = (seen, listed)
        while len(self._pending) > _PENDING_LIMIT:
            self._pending.popitem(last=False)
        return None
