"""The HTTP upgrade request as the core sees it, built by each transport."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from http.cookies import CookieError, SimpleCookie


@dataclass(frozen=True, slots=True)
class ConnectionRequest:
    path: str
    """The request path, without the query string."""
    query_string: str = ""
    """The raw query string, without the ``?``."""
    headers: Mapping[str, str] = field(default_factory=dict)
    """Header names lower-cased; repeated headers joined with ``", "``."""
    client: tuple[str, int] | None = None

    @classmethod
    def from_raw(
        cls,
        path: str,
        query_string: str,
        headers: Iterable[tuple[str, str]],
        client: tuple[str, int] | None,
    ) -> ConnectionRequest:
        merged: dict[str, str] = {}
        for name, value in headers:
            key = name.lower()
            merged[key] = f"{merged[key]}, {value}" if key in merged else value
        return cls(path, query_string, merged, client)

    @property
    def cookies(self) -> dict[str, str]:
        raw = self.headers.get("cookie")
        if not raw:
            return {}
        jar: SimpleCookie = SimpleCookie()
        try:
            jar.load(raw.replace(", ", "; "))
        except CookieError:
            return {}  # a malformed cookie header is the client's problem, not a crash
        return {name: morsel.value for name, morsel in jar.items()}
