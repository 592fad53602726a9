"""The topic <-> NATS subject encoding: reversible, collision-free, valid NATS subjects,
and prefix patterns that cover exactly the topics they should (property-style, seeded)."""

from __future__ import annotations

import random
import re

import pytest

from pondsocket.pubsub.base import pattern_matches
from pondsocket.pubsub.nats_subjects import (
    MAX_SUBJECT_LENGTH,
    SubjectCodec,
    TopicTooLongError,
    UndecodableSubjectError,
    check_subject_prefix,
    decode_topic,
    encode_topic,
)

TRICKY = [
    "pondsocket:v1:default:api/socket:/chat/lobby",
    "a.b",
    "a*b",
    "a>b",
    ">",
    "*",
    ".",
    "..",
    ":",
    "::",
    "a::b",
    ":a",
    "a:",
    "~",
    "~7E",
    "~2E",
    "a~",
    " ",
    "a b\tc\nd\re",
    "$SYS:x",
    "_INBOX:x",
    "\u00e9t\u00e9:\u65e5\u672c:\U0001f600",
    "\x00\x7f",
    "%2E",
    "a/b/c-d_e",
    "\ud800",  # a lone surrogate survives too
]
ALPHABET = "ab:./*>~ \t-_$%\u00e9\U0001f600\x00Z9"
NATS_SUBJECT = re.compile(r"^[^\s.*>]+(\.[^\s.*>]+)*$")


def random_topics(count: int, seed: int = 1234) -> list[str]:
    rng = random.Random(seed)
    return ["".join(rng.choice(ALPHABET) for _ in range(rng.randint(1, 12))) for _ in range(count)]


@pytest.mark.parametrize("topic", TRICKY)
def test_tricky_topics_round_trip_to_valid_subjects(topic: str) -> None:
    subject = encode_topic(topic)
    assert NATS_SUBJECT.match(subject), subject
    assert decode_topic(subject) == topic
    assert len(subject.split(".")) == len(topic.split(":"))


def test_random_topics_round_trip_without_collisions() -> None:
    topics = set(random_topics(5000)) | set(TRICKY)
    subjects = {encode_topic(topic): topic for topic in topics}
    assert len(subjects) == len(topics)  # injective
    for subject, topic in subjects.items():
        assert NATS_SUBJECT.match(subject), subject
        assert decode_topic(subject) == topic


def test_readable_topics_stay_readable() -> None:
    assert (
        encode_topic("pondsocket:v1:default:api/socket:/chat/lobby")
        == "pondsocket.v1.default.api/socket./chat/lobby"
    )
    assert encode_topic("pond:a.b*c") == "pond.a~2Eb~2Ac"
    assert encode_topic("pond::x:") == "pond.~.x.~"
    assert encode_topic("~") == "~7E"


@pytest.mark.parametrize(
    "subject", ["a..b", "a.~7", "a.~7e", "a.~41", "a.b c", "a.*", "a.>", "a.~FF", "é", ""]
)
def test_foreign_subjects_are_rejected(subject: str) -> None:
    with pytest.raises(UndecodableSubjectError):
        decode_topic(subject)


def nats_matches(wildcard: str, subject: str) -> bool:
    """NATS' own matching of a subscription subject (``*`` and ``>`` wildcards)."""
    pattern, tokens = wildcard.split("."), subject.split(".")
    for i, token in enumerate(pattern):
        if token == ">":
            return len(tokens) > i
        if i >= len(tokens) or (token != "*" and token != tokens[i]):
            return False
    return len(tokens) == len(pattern)


def test_prefix_patterns_cover_exactly_their_topics() -> None:
    codec = SubjectCodec("app.x")
    topics = random_topics(800, seed=99) + TRICKY
    prefixes = ["a", "a:", "a:b", ":", "::", "~", "a.b", "*", ">:", "\U0001f600:a"]
    prefixes += [t[: len(t) // 2] for t in topics[:50] if len(t) > 1]
    for prefix in prefixes:
        pattern = prefix + ".*"
        wildcard, filtered = codec.pattern(pattern)
        assert wildcard.startswith("app.x.") and wildcard.endswith(">")
        assert filtered == (not prefix.endswith(":"))
        for topic in topics:
            subject = codec.subject(topic)
            wanted = pattern_matches(pattern, topic)
            delivered = nats_matches(wildcard, subject)
            if wanted:  # NATS delivers every matching topic...
                assert delivered, (pattern, topic, wildcard, subject)
            if not filtered:  # ...and nothing else when the prefix ends at a token boundary
                assert delivered == wanted, (pattern, topic, wildcard, subject)
            assert codec.topic(subject) == topic


def test_exact_patterns_are_exact_subjects() -> None:
    codec = SubjectCodec("p")
    assert codec.pattern("pond.files/*") == ("p.pond~2Efiles/~2A", False)
    assert codec.pattern("a:b") == ("p.a.b", False)


def test_subject_prefix_validation() -> None:
    assert check_subject_prefix("") == ""
    assert check_subject_prefix("app.one") == "app.one."
    assert check_subject_prefix("app.one.") == "app.one."
    for bad in ("a..b", "a b", "a.*", ">", ".a"):
        with pytest.raises(ValueError):
            check_subject_prefix(bad)


def test_overlong_topics_are_refused() -> None:
    codec = SubjectCodec()
    codec.subject("x" * MAX_SUBJECT_LENGTH)
    with pytest.raises(TopicTooLongError):
        codec.subject("." * (MAX_SUBJECT_LENGTH // 3 + 1))
