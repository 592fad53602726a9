"""Admission of new connections: in total and per client address, for every transport.

A connection costs a file descriptor, buffers and, per channel, a broker subscription;
without a bound, 19,984 connections from one program exhausted the process's descriptors
and nothing said so. The count covers open connections and handshakes in progress, so a
burst of handshakes cannot slip past it either.
"""

from __future__ import annotations

import logging
from typing import Literal

from pondsocket.core.ratelog import RateLimitedLog

log = logging.getLogger("pondsocket.limits")

AUTO = "auto"


def descriptor_limit() -> int | None:
    """The process's soft limit of open files (``None`` where it cannot be read)."""
    try:
        import resource
    except ImportError:  # pragma: no cover - not on POSIX
        return None
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return None if soft == resource.RLIM_INFINITY else int(soft)


def auto_max_connections(fd_limit: int | None) -> int | None:
    """Connections that leave room for the broker, logs and files: 90 % of the descriptor
    limit, keeping at least 64 descriptors aside."""
    if fd_limit is None:
        return None
    return max(1, min(fd_limit - 64, fd_limit * 9 // 10))


class ConnectionLimits:
    """Counts of one server (shared by its endpoints) and the bounds they are held to."""

    def __init__(
        self,
        max_connections: int | Literal["auto"] | None,
        max_per_address: int | None,
    ) -> None:
        self.total = 0
        self._by_address: dict[str, int] = {}
        self._total_log = RateLimitedLog(log)
        self._address_log = RateLimitedLog(log)
        self.configure(max_connections, max_per_address)

    def configure(
        self, max_connections: int | Literal["auto"] | None, max_per_address: int | None
    ) -> None:
        """New bounds (``pond.configure``); the counts stay."""
        if isinstance(max_connections, str):  # "auto"
            self.fd_limit = descriptor_limit()
            self.max_total = auto_max_connections(self.fd_limit)
        else:
            self.fd_limit, self.max_total = None, max_connections
        self.max_per_address = max_per_address

    def refusal(self, address: str | None) -> tuple[int, str] | None:
        """``(status, message)`` if a new connection from ``address`` must be refused."""
        if self.max_total is not None and self.total >= self.max_total:
            hint = (
                f" (90 % of the open-files limit {self.fd_limit}: raise `ulimit -n`)"
                if self.fd_limit is not None
                else ""
            )
            self._total_log.warning(
                "refused a connection (HTTP 503): max_connections (%d) reached%s",
                self.max_total,
                hint,
            )
            return 503, "Server at its connection limit"
        if (
            self.max_per_address is not None
            and address is not None
            and self._by_address.get(address, 0) >= self.max_per_address
        ):
            self._address_log.warning(
                "refused a connection from %s (HTTP 429): max_connections_per_address (%d)"
                " reached; behind a proxy, list it in PondOptions.trusted_proxies",
                address,
                self.max_per_address,
            )
            return 429, "Too many connections from your address"
        return None

    def add(self, address: str | None) -> None:
        self.total += 1
        if address is not None:
            self._by_address[address] = self._by_address.get(address, 0) + 1

    def remove(self, address: str | None) -> None:
        self.total -= 1
        if address is not None:
            left = self._by_address.get(address, 0) - 1
            if left > 0:
                self._by_address[address] = left
            else:
                self._by_address.pop(address, None)
