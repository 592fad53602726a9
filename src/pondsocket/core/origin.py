"""Which web pages may open a connection: the defence against cross-site WebSocket
hijacking (a page on another site riding the victim's cookies into a private room).

Browsers send ``Origin`` on every WebSocket handshake and on cross-site requests, and a
page cannot forge it; other clients usually send none. So a handshake without ``Origin``
passes, and one with it must be allowed by :attr:`PondOptions.allowed_origins`:

* ``None`` (default): same origin only. The origin's host and port must be the request's
  ``Host``. The scheme is not compared: the ``Host`` header carries none, and TLS is often
  ended by a proxy in front of the node.
* a list of origins: ``https://app.example.com``, ``http://localhost:3000``, wildcards
  for subdomains (``https://*.example.com``, which does not match ``example.com`` itself),
  ``null`` (sandboxed frames, ``file://`` pages: refused unless listed). Scheme, host and
  port must all match (default ports filled in); case does not matter.
* ``["*"]``: every origin (opt out, e.g. for a public API without cookies).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from pondsocket.errors import UsageError

ANY = "*"
NULL = "null"
_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}


@dataclass(frozen=True, slots=True)
class _Origin:
    scheme: str
    host: str
    port: int | None


def _parse_origin(text: str) -> _Origin | None:
    """``scheme://host[:port]`` with nothing else, lower-cased; ``None`` if malformed."""
    try:
        parts = urlsplit(text.strip())
        port = parts.port
    except ValueError:
        return None
    if not parts.scheme or not parts.hostname or parts.path not in ("", "/"):
        return None
    if parts.query or parts.fragment or parts.username or parts.password:
        return None
    scheme = parts.scheme.lower()
    return _Origin(scheme, parts.hostname.lower(), port or _DEFAULT_PORTS.get(scheme))


def _parse_host(header: str) -> tuple[str, int | None] | None:
    try:
        parts = urlsplit("//" + header.strip())
        port = parts.port
    except ValueError:
        return None
    if not parts.hostname:
        return None
    return parts.hostname.lower(), port


@dataclass(frozen=True, slots=True)
class _Rule:
    origin: _Origin
    wildcard: bool  # origin.host is the suffix after "*."

    def matches(self, origin: _Origin) -> bool:
        if (origin.scheme, origin.port) != (self.origin.scheme, self.origin.port):
            return False
        if self.wildcard:
            return origin.host.endswith("." + self.origin.host)
        return origin.host == self.origin.host


class OriginPolicy:
    """Decides whether a handshake's ``Origin`` header is acceptable."""

    def __init__(self, allowed: Sequence[str] | None) -> None:
        self.allowed = None if allowed is None else tuple(allowed)
        self._any = self.allowed is not None and ANY in self.allowed
        self._null = self.allowed is not None and NULL in (a.lower() for a in self.allowed)
        rules = (_rule_or_error(entry) for entry in self.allowed or ())
        self._rules = [rule for rule in rules if rule is not None]

    def allows(self, origin: str | None, host: str | None) -> bool:
        if origin is None or self._any:
            return True  # not a browser (or the operator opted out)
        if origin.strip().lower() == NULL:
            return self._null
        parsed = _parse_origin(origin)
        if parsed is None:
            return False
        if self.allowed is None:
            return _same_origin(parsed, host)
        return any(rule.matches(parsed) for rule in self._rules)


def _same_origin(origin: _Origin, host_header: str | None) -> bool:
    host = _parse_host(host_header) if host_header else None
    if host is None:
        return False
    name, port = host
    if name != origin.host:
        return False
    if port is None:  # "Host: example.com": the default port of whatever scheme was used
        return origin.port in (80, 443)
    return port == origin.port


def _rule_or_error(entry: str) -> _Rule | None:
    if entry == ANY or entry.lower() == NULL:
        return None
    wildcard = "://*." in entry
    parsed = _parse_origin(entry.replace("://*.", "://", 1) if wildcard else entry)
    if parsed is None or "*" in parsed.host:
        raise UsageError(
            f"allowed_origins entry {entry!r} is not an origin: use scheme://host[:port], "
            "scheme://*.domain for subdomains, 'null', or '*' for any"
        )
    return _Rule(parsed, wildcard)


@functools.lru_cache(maxsize=32)
def origin_policy(allowed: tuple[str, ...] | None) -> OriginPolicy:
    """The policy of an ``allowed_origins`` setting (built once per distinct setting)."""
    return OriginPolicy(allowed)


def validate_allowed_origins(allowed: Sequence[str] | None) -> tuple[str, ...] | None:
    """Check every entry (raising :class:`UsageError`) and return them as a tuple."""
    if allowed is None:
        return None
    if isinstance(allowed, str):
        raise UsageError("allowed_origins must be a list of origins, not one string")
    entries = tuple(allowed)
    for entry in entries:
        _rule_or_error(entry)
    return entries
