"""Failed admin sign-ins are bounded per client address, so a credential cannot be guessed
at the speed of the network: after :data:`MAX_FAILURES` refusals within
:data:`WINDOW` seconds, that address gets ``429`` without its credential being looked at
until the window ends. A token of 16+ random characters is out of reach anyway; this is
for the app's own check (``admin_auth``), which may rest on a weaker secret."""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable

MAX_FAILURES = 20
"""Refused admin API requests one address may make per :data:`WINDOW`."""
WINDOW = 60.0
"""Seconds; a window opens at an address's first refusal."""
MAX_ADDRESSES = 4096
"""Addresses tracked at once; past it the oldest window is forgotten (bounded memory)."""


class FailedSignIns:
    """Refusals per address in fixed windows: ``retry_after(address)`` is how long that
    address must wait (``0.0``: it may try), ``failed(address)`` counts one."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._windows: OrderedDict[str, tuple[float, int]] = OrderedDict()

    def retry_after(self, address: str) -> float:
        window = self._windows.get(address)
        if window is None:
            return 0.0
        opened, failures = window
        left = opened + WINDOW - self._clock()
        if left <= 0:
            del self._windows[address]
            return 0.0
        return left if failures >= MAX_FAILURES else 0.0

    def failed(self, address: str) -> None:
        now = self._clock()
        opened, failures = self._windows.get(address, (now, 0))
        if now - opened >= WINDOW:
            opened, failures = now, 0
        self._windows[address] = (opened, failures + 1)
        self._windows.move_to_end(address)
        while len(self._windows) > MAX_ADDRESSES:
            self._windows.popitem(last=False)

    @staticmethod
    def header(seconds: float) -> str:
        """``Retry-After`` in whole seconds, rounded up."""
        return str(max(1, math.ceil(seconds)))
