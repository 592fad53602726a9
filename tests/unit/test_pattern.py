"""Tests for the strict path-pattern dialect (docs/protocol.md)."""

from __future__ import annotations

import pytest

from pondsocket.routing import (
    InvalidPatternError,
    PathPattern,
    Route,
    compile_pattern,
    parse_query,
)

# (pattern, subject, expected params, expected wildcard) for subjects that match.
MATCHES: list[tuple[str, str, dict[str, str], str | None]] = [
    # §2.3 examples that apply to the strict dialect
    ("/test/:id", "/test/5", {"id": "5"}, None),
    ("/test/:id/*", "/test/5/6", {"id": "5"}, "6"),
    ("/test/:id/*", "/test/5", {"id": "5"}, ""),  # friendly choice: `/*` may be absent
    ("/rooms/:roomId/*", "/rooms/general/history/42?limit=5", {"roomId": "general"}, "history/42"),
    # literals: typical event names and channel names
    ("message", "message", {}, None),
    ("/echo", "/echo", {}, None),
    ("chat/message", "chat/message", {}, None),
    ("chat.message", "chat.message", {}, None),
    ("/chat/lobby", "/chat/lobby", {}, None),
    ("/rooms/v1.0", "/rooms/v1.0", {}, None),
    ("/a+b/(x)", "/a+b/(x)", {}, None),  # regex metacharacters are literal
    ("/", "/", {}, None),
    ("/a//b", "/a//b", {}, None),
    ("/lit%20", "/lit%20", {}, None),  # literals are not decoded
    # parameters
    ("/rooms/:roomId", "/rooms/lobby", {"roomId": "lobby"}, None),
    ("/api/:version/users/:id", "/api/v1/users/42", {"version": "v1", "id": "42"}, None),
    ("/user/:name", "/user/John%20Doe", {"name": "John Doe"}, None),
    ("/user/:name", "/user/a+b", {"name": "a+b"}, None),  # `+` stays `+` in path params
    ("/user/:name", "/user/caf%C3%A9", {"name": "café"}, None),
    ("/user/:name", "/user/a%2Fb", {"name": "a/b"}, None),
    ("/user/:name", "/user/x:y", {"name": "x:y"}, None),
    (":event", "message", {"event": "message"}, None),
    ("/:a/:b", "/x/y", {"a": "x", "b": "y"}, None),
    ("/rooms/:_room_1", "/rooms/r", {"_room_1": "r"}, None),
    # wildcard
    ("/files/*", "/files/docs/readme.txt", {}, "docs/readme.txt"),
    ("/files/*", "/files/a/b", {}, "a/b"),
    ("/files/*", "/files/", {}, ""),
    ("/files/*", "/files", {}, ""),
    ("/files/*", "/files//a", {}, "/a"),  # raw: no slash collapsing
    ("/files/*", "/files/a%20b", {}, "a%20b"),  # raw: not decoded
    ("/files/*", "/files/a\nb", {}, "a\nb"),
    ("*", "/test/5/6", {}, "/test/5/6"),
    ("*", "message", {}, "message"),
    ("*", "", {}, ""),
    ("*", "/x?q=1", {}, "/x"),
    ("/*", "/anything/here", {}, "anything/here"),
    ("/rooms/:id/*", "/rooms/%41/x%zz", {"id": "A"}, "x%zz"),
]

# (pattern, subject) pairs that must not match.
NON_MATCHES: list[tuple[str, str]] = [
    ("/test/:id", "/test/5/6"),
    ("/test/:id", "test/5"),  # leading `/` significant
    ("/test/:id", "/test/5/"),  # trailing `/` significant
    ("/test/:id", "/test/"),  # params are non-empty
    ("/test/:id", "/test"),
    ("/rooms/v1.0", "/rooms/v1x0"),  # `.` is literal
    ("message", "/message"),
    ("message", "message/"),
    ("message", "Message"),  # case-sensitive
    ("chat.message", "chatXmessage"),
    ("/chat/lobby", "/chat/lobby2"),
    ("/chat/lobby", "chat/lobby"),
    ("/files/*", "/other/x"),
    ("/files/*", "/filesX"),
    ("/files/*", "files/a"),
    ("/*", "x"),
    ("/rooms/:roomId", "/rooms/a/b"),
    ("/a/:b", "/a/x\n/y"),
]


@pytest.mark.parametrize(("pattern", "subject", "params", "wildcard"), MATCHES)
def test_match(pattern: str, subject: str, params: dict[str, str], wildcard: str | None) -> None:
    route = PathPattern(pattern).match(subject)
    assert route is not None
    assert dict(route.params) == params
    assert route.wildcard == wildcard
    assert route.path == subject.partition("?")[0]


@pytest.mark.parametrize(("pattern", "subject"), NON_MATCHES)
def test_no_match(pattern: str, subject: str) -> None:
    assert PathPattern(pattern).match(subject) is None


@pytest.mark.parametrize(
    "subject",
    ["/user/%zz", "/user/%4", "/user/%", "/user/a%2", "/user/%ff", "/user/%C3", "/user/ok%G1"],
)
def test_malformed_escape_fails_match(subject: str) -> None:
    assert PathPattern("/user/:name").match(subject) is None


@pytest.mark.parametrize(
    ("pattern", "segment"),
    [
        ("/test:id", "test:id"),
        ("job:*", "job:*"),
        ("/rooms/foo:bar", "foo:bar"),
        ("/rooms/:", ":"),
        ("/rooms/:a/:a", ":a"),
        ("/rooms/part*", "part*"),
        ("/rooms/*x", "*x"),
        ("/rooms/**", "**"),
        ("/a/*/*", "*"),
        ("/a/*/b", "*"),
        ("*/a", "*"),
        ("/search?q=1", "search?q=1"),
        ("/a/?", "?"),
        ("?", "?"),
        ("/rooms/:1abc", ":1abc"),
        ("/rooms/:a-b", ":a-b"),
        ("/rooms/:a:b", ":a:b"),
        ("/rooms/::a", "::a"),
        ("/rooms/:a.b", ":a.b"),
        ("/rooms/:é", ":é"),
    ],
)
def test_rejected_patterns(pattern: str, segment: str) -> None:
    with pytest.raises(InvalidPatternError) as info:
        PathPattern(pattern)
    err = info.value
    assert isinstance(err, ValueError)
    assert err.pattern == pattern
    assert err.segment == segment
    assert repr(pattern) in str(err)
    assert repr(segment) in str(err)


def test_empty_pattern_rejected() -> None:
    with pytest.raises(InvalidPatternError, match="empty"):
        PathPattern("")


@pytest.mark.parametrize(
    ("pattern", "reason"),
    [
        ("/a?", "query strings"),
        ("/a/b*", "entire path segment"),
        ("/*/*", "at most one wildcard"),
        ("/a/*/b", "last segment"),
        ("/a:b", "entire path segment"),
        ("/:", "parameter names"),
        ("/:a/:a", "duplicate parameter name 'a'"),
    ],
)
def test_rejection_messages(pattern: str, reason: str) -> None:
    with pytest.raises(InvalidPatternError, match=reason):
        PathPattern(pattern)


@pytest.mark.parametrize(
    ("query_string", "last", "every"),
    [
        ("", {}, {}),
        ("q=test&sort=asc", {"q": "test", "sort": "asc"}, {"q": ["test"], "sort": ["asc"]}),
        ("q=a&q=b", {"q": "b"}, {"q": ["a", "b"]}),
        ("q=a+b", {"q": "a b"}, {"q": ["a b"]}),
        ("q=a%20b", {"q": "a b"}, {"q": ["a b"]}),
        ("q=a%2Bb", {"q": "a+b"}, {"q": ["a+b"]}),
        ("a+key=1", {"a key": "1"}, {"a key": ["1"]}),
        ("a=&b", {"a": "", "b": ""}, {"a": [""], "b": [""]}),
        ("a=1&&b=2", {"a": "1", "b": "2"}, {"a": ["1"], "b": ["2"]}),
        ("a=x=y", {"a": "x=y"}, {"a": ["x=y"]}),
        ("t=caf%C3%A9", {"t": "café"}, {"t": ["café"]}),
        ("a=1&b=2&a=3", {"a": "3", "b": "2"}, {"a": ["1", "3"], "b": ["2"]}),
    ],
)
def test_parse_query(query_string: str, last: dict[str, str], every: dict[str, list[str]]) -> None:
    assert parse_query(query_string) == (last, every)


@pytest.mark.parametrize(
    ("subject", "path", "last", "every"),
    [
        ("/search", "/search", {}, {}),
        ("/search?", "/search", {}, {}),
        ("/search?q=test&sort=asc", "/search", {"q": "test", "sort": "asc"}, None),
        ("/search?q=a&q=b", "/search", {"q": "b"}, {"q": ["a", "b"]}),
        ("/search?q=a+b%20c", "/search", {"q": "a b c"}, None),
        ("/search?token=&x", "/search", {"token": "", "x": ""}, None),
        ("/search?a=1?b=2", "/search", {"a": "1?b=2"}, None),  # split at the FIRST `?`
    ],
)
def test_query_on_match(
    subject: str, path: str, last: dict[str, str], every: dict[str, list[str]] | None
) -> None:
    route = PathPattern("/search").match(subject)
    assert route is not None
    assert route.path == path
    assert dict(route.query) == last
    expected_all = every if every is not None else {k: [v] for k, v in last.items()}
    assert dict(route.query_all) == expected_all


def test_query_with_params_and_wildcard() -> None:
    route = PathPattern("/rooms/:roomId/*").match("/rooms/general%20chat/history/42?limit=5")
    assert route == Route(
        params={"roomId": "general chat"},
        wildcard="history/42",
        query={"limit": "5"},
        query_all={"limit": ["5"]},
        path="/rooms/general%20chat/history/42",
    )


def test_query_does_not_affect_path_match() -> None:
    assert PathPattern("/a").match("/b?x=/a") is None
    assert PathPattern("/a/:id").match("/a/?id=1") is None


@pytest.mark.parametrize(
    ("pattern", "names", "wildcard"),
    [
        ("message", (), False),
        ("/rooms/:roomId", ("roomId",), False),
        ("/api/:version/users/:id", ("version", "id"), False),
        ("/rooms/:roomId/*", ("roomId",), True),
        ("*", (), True),
    ],
)
def test_attributes(pattern: str, names: tuple[str, ...], wildcard: bool) -> None:
    compiled = PathPattern(pattern)
    assert compiled.pattern == pattern
    assert compiled.param_names == names
    assert compiled.has_wildcard is wildcard
    assert repr(compiled) == f"PathPattern({pattern!r})"


def test_compile_pattern_caches_and_validates() -> None:
    first = compile_pattern("/rooms/:roomId")
    assert compile_pattern("/rooms/:roomId") is first
    assert first == PathPattern("/rooms/:roomId")
    assert hash(first) == hash(PathPattern("/rooms/:roomId"))
    assert first != PathPattern("/rooms/:other")
    with pytest.raises(InvalidPatternError):
        compile_pattern("/rooms/foo:bar")


def test_route_is_frozen() -> None:
    route = PathPattern("/a").match("/a")
    assert route is not None
    with pytest.raises(AttributeError):
        route.path = "/b"  # type: ignore[misc]


def test_results_are_independent() -> None:
    pattern = PathPattern("/u/:id")
    one, two = pattern.match("/u/1?a=1"), pattern.match("/u/2?a=2")
    assert one is not None and two is not None
    assert (one.params["id"], one.query["a"]) == ("1", "1")
    assert (two.params["id"], two.query["a"]) == ("2", "2")
