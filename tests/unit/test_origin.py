"""The origin policy (cross-site WebSocket hijacking defence), as a pure function."""

from __future__ import annotations

import pytest

from pondsocket import PondOptions, UsageError
from pondsocket.core.origin import OriginPolicy

SAME_ORIGIN = OriginPolicy(None)


@pytest.mark.parametrize(
    ("origin", "host", "allowed"),
    [
        (None, "chat.example.com", True),  # not a browser: no Origin header
        ("https://chat.example.com", "chat.example.com", True),
        ("HTTPS://Chat.Example.COM", "chat.EXAMPLE.com", True),  # case does not matter
        ("https://chat.example.com", "chat.example.com:443", True),
        ("http://localhost:8080", "localhost:8080", True),
        ("http://[::1]:8080", "[::1]:8080", True),
        ("https://evil.example", "chat.example.com", False),
        ("https://chat.example.com.evil.example", "chat.example.com", False),
        ("http://localhost:3000", "localhost:8080", False),  # port mismatch
        ("https://chat.example.com:8443", "chat.example.com", False),
        ("https://chat.example.com", "chat.example.com:80", False),  # 443 is not 80
        ("null", "chat.example.com", False),  # sandboxed frames, file:// pages
        ("not an origin", "chat.example.com", False),
        ("https://chat.example.com/path", "chat.example.com", False),
        ("https://chat.example.com", None, False),  # no Host to compare with
        ("https://chat.example.com:99999", "chat.example.com", False),
    ],
)
def test_same_origin_by_default(origin: str | None, host: str | None, allowed: bool) -> None:
    assert SAME_ORIGIN.allows(origin, host) is allowed


LISTED = OriginPolicy(["https://app.example.com", "https://*.example.org", "http://localhost:3000"])


@pytest.mark.parametrize(
    ("origin", "allowed"),
    [
        ("https://app.example.com", True),
        ("https://APP.example.com:443", True),
        ("http://app.example.com", False),  # scheme mismatch
        ("https://app.example.com:8443", False),  # port mismatch
        ("https://a.example.org", True),
        ("https://a.b.example.org", True),
        ("https://example.org", False),  # a wildcard names subdomains, not the apex
        ("https://badexample.org", False),
        ("http://a.example.org", False),
        ("http://localhost:3000", True),
        ("http://localhost:3001", False),
        ("null", False),
        ("https://chat.example.com", False),  # same origin is not implied by a list
    ],
)
def test_an_allowed_list_replaces_same_origin(origin: str, allowed: bool) -> None:
    assert LISTED.allows(origin, "chat.example.com") is allowed


def test_star_opts_out_and_null_can_be_listed() -> None:
    assert OriginPolicy(["*"]).allows("https://anything.example", "chat.example.com")
    assert OriginPolicy(["*"]).allows("null", "chat.example.com")
    assert OriginPolicy(["null"]).allows("null", "x")
    assert not OriginPolicy(["null"]).allows("https://x", "x")


@pytest.mark.parametrize(
    "entry", ["example.com", "https://", "https://*", "https://a.*.com", "https://x/path"]
)
def test_bad_entries_fail_when_the_options_are_built(entry: str) -> None:
    with pytest.raises(UsageError, match="allowed_origins"):
        PondOptions(allowed_origins=[entry])


def test_options_keep_the_origins_as_a_tuple() -> None:
    assert PondOptions(allowed_origins=["https://a.example"]).allowed_origins == (
        "https://a.example",
    )
    with pytest.raises(UsageError):
        PondOptions(allowed_origins="https://a.example")
