"""Path patterns for endpoint paths, channel names and event names.

This is the *strict* dialect of docs/protocol.md, with a few documented choices:

* A pattern is split on ``/`` with no normalisation: leading, trailing and doubled
  slashes are significant (``/test/:id`` does not match ``test/5``).
* ``:name`` is a parameter occupying a whole segment. It matches one non-empty
  segment (no ``/``); the value is percent-decoded (``+`` stays ``+``). A malformed
  escape (``%zz``, ``%4``, invalid UTF-8) makes the match fail.
* ``*`` is a wildcard occupying a whole segment, and it must be the last segment.
  It matches the rest of the path (any characters, ``/`` included, possibly empty).
  The value is raw (not decoded) and has no leading ``/``: ``/files/*`` on
  ``/files/a/b`` gives ``"a/b"``. As a convenience, ``/files/*`` also matches
  ``/files`` (wildcard ``""``). A bare ``*`` matches every path, wildcard = path.
* Any other segment is a literal, matched exactly (case-sensitive, no decoding).
* A subject may carry a query string after its first ``?``. It is form-decoded
  (``+`` → space) and exposed both as ``query`` (last value wins) and
  ``query_all`` (every value, in order). A pattern may not contain ``?``.

Patterns are validated when compiled (i.e. at registration); a bad pattern raises
:class:`InvalidPatternError`, naming the pattern and the offending segment.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from types import MappingProxyType
from urllib.parse import parse_qsl, unquote

__all__ = ["InvalidPatternError", "PathPattern", "Route", "compile_pattern", "parse_query"]

_PARAM_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# A '%' not followed by two hex digits: stdlib unquote would silently keep it.
_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")
# Shared read-only empties so the common no-param / no-query match allocates less.
_NO_PARAMS: Mapping[str, str] = MappingProxyType({})
_NO_QUERY: Mapping[str, str] = MappingProxyType({})
_NO_QUERY_ALL: Mapping[str, list[str]] = MappingProxyType({})


class InvalidPatternError(ValueError):
    """A pattern was rejected at compile (registration) time."""

    def __init__(self, pattern: str, reason: str, segment: str | None = None) -> None:
        where = f" (segment {segment!r})" if segment is not None else ""
        super().__init__(f"invalid pattern {pattern!r}{where}: {reason}")
        self.pattern = pattern
        self.segment = segment
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Route:
    """The result of a successful match."""

    params: Mapping[str, str]  # path params (the wildcard is NOT included)
    wildcard: str | None  # None when the pattern has no `*`
    query: Mapping[str, str]  # last value wins
    query_all: Mapping[str, list[str]]  # every value, in order
    path: str  # the subject without its query string


def parse_query(query_string: str) -> tuple[dict[str, str], dict[str, list[str]]]:
    """Form-decode a query string (without its ``?``) into (last-value, all-values) dicts."""
    query_all: dict[str, list[str]] = {}
    for key, value in parse_qsl(query_string, keep_blank_values=True):
        query_all.setdefault(key, []).append(value)
    query = {key: values[-1] for key, values in query_all.items()}
    return query, query_all


def _decode_param(raw: str) -> str | None:
    """Strict percent-decoding; None means "malformed, the match fails"."""
    if "%" not in raw:
        return raw  # fast path: nothing to decode
    if _BAD_ESCAPE.search(raw):
        return None
    try:
        return unquote(raw, errors="strict")
    except UnicodeDecodeError:
        return None


class PathPattern:
    """A compiled pattern. Compile once (at registration), match many times."""

    __slots__ = ("_literal", "_nparams", "_regex", "has_wildcard", "param_names", "pattern")

    pattern: str
    param_names: tuple[str, ...]
    has_wildcard: bool

    def __init__(self, pattern: str) -> None:
        if not pattern:
            raise InvalidPatternError(pattern, "a pattern must not be empty")
        segments = pattern.split("/")
        names: list[str] = []
        parts: list[str] = []
        stars = sum(1 for seg in segments if "*" in seg)
        for index, seg in enumerate(segments):
            if "?" in seg:
                raise InvalidPatternError(pattern, "query strings are not allowed in patterns", seg)
            if "*" in seg:
                if seg != "*":
                    raise InvalidPatternError(
                        pattern, "a wildcard must occupy an entire path segment", seg
                    )
                if stars > 1:
                    raise InvalidPatternError(pattern, "at most one wildcard is allowed", seg)
                if index != len(segments) - 1:
                    raise InvalidPatternError(pattern, "the wildcard must be the last segment", seg)
                continue  # appended below: its regex depends on the preceding '/'
            if seg.startswith(":"):
                name = seg[1:]
                if not _PARAM_NAME.fullmatch(name):
                    raise InvalidPatternError(
                        pattern, "parameter names must match [A-Za-z_][A-Za-z0-9_]*", seg
                    )
                if name in names:
                    raise InvalidPatternError(pattern, f"duplicate parameter name {name!r}", seg)
                names.append(name)
                parts.append("([^/]+)")
            elif ":" in seg:
                raise InvalidPatternError(
                    pattern, "parameters must occupy an entire path segment", seg
                )
            else:
                parts.append(re.escape(seg))

        self.pattern = pattern
        self.param_names = tuple(names)
        self.has_wildcard = stars == 1
        self._nparams = len(names)
        self._literal: str | None = None
        self._regex: re.Pattern[str] | None = None
        if self.has_wildcard:
            prefix = "/".join(parts)
            # Bare `*` takes the whole path; otherwise `/rest` is optional, so `/files/*`
            # matches `/files` too, and the group excludes the separating `/`.
            tail = "(?:/(.*))?" if len(segments) > 1 else "(.*)"
            self._regex = re.compile(prefix + tail, re.DOTALL)
        elif names:
            self._regex = re.compile("/".join(parts), re.DOTALL)
        else:
            self._literal = pattern  # literal-only: plain string equality

    def match(self, subject: str) -> Route | None:
        """Match ``subject`` (path plus optional ``?query``); None when it does not match."""
        path, sep, query_string = subject.partition("?")
        if self._literal is not None:
            if path != self._literal:
                return None
            params: Mapping[str, str] = _NO_PARAMS
            wildcard: str | None = None
        else:
            assert self._regex is not None
            found = self._regex.fullmatch(path)
            if found is None:
                return None
            groups = found.groups()
            if self._nparams:
                decoded: dict[str, str] = {}
                for name, raw in zip(self.param_names, groups[: self._nparams], strict=True):
                    value = _decode_param(raw)
                    if value is None:
                        return None
                    decoded[name] = value
                params = decoded
            else:
                params = _NO_PARAMS
            # The optional `(?:/(.*))?` group is None when the path stops before the `/`.
            wildcard = (groups[-1] or "") if self.has_wildcard else None
        if sep and query_string:
            query, query_all = parse_query(query_string)
            return Route(params, wildcard, query, query_all, path)
        return Route(params, wildcard, _NO_QUERY, _NO_QUERY_ALL, path)

    def __repr__(self) -> str:
        return f"PathPattern({self.pattern!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, PathPattern):
            return NotImplemented
        return self.pattern == other.pattern

    def __hash__(self) -> int:
        return hash(self.pattern)


@lru_cache(maxsize=1024)
def compile_pattern(pattern: str) -> PathPattern:
    """Compile (and cache) a pattern; raises :class:`InvalidPatternError`."""
    return PathPattern(pattern)
