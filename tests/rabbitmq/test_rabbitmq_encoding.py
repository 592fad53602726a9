"""The topic <-> routing-key encoding: reversible, collision-free, wildcard-safe, and the
hash-based fallback for keys over 255 bytes. Pure functions: no broker needed."""

from __future__ import annotations

import itertools

import pytest

from pondsocket.pubsub.rabbitmq_support import (
    MAX_KEY,
    MAX_TOPIC,
    TopicTooLongError,
    binding_key,
    check_topic,
    decode_routing_key,
    message_topic,
    routing_key,
)

TOPICS = [
    "a",
    "pond:v1:default:chat",
    "pond:v1:default:",
    ":",
    "::",
    ":a:",
    "pond.chat.room1",
    "pond.files/*",
    "#",
    "*",
    "~",
    "~7E",
    "a.b",
    "a:b",
    "a~2Eb",
    "/room/:id",
    "x y\tz",
    "héllo:世界:🎉",
    "pond:v1:default:/room/1",
]


def amqp_matches(binding: str, key: str) -> bool:
    """RabbitMQ's topic-exchange matching (``*`` one word, ``#`` zero or more)."""
    b, k = binding.split("."), key.split(".")

    def match(i: int, j: int) -> bool:
        if i == len(b):
            return j == len(k)
        if b[i] == "#":
            return any(match(i + 1, jj) for jj in range(j, len(k) + 1))
        if j == len(k):
            return False
        return (b[i] == "*" or b[i] == k[j]) and match(i + 1, j + 1)

    return match(0, 0)


@pytest.mark.parametrize("topic", TOPICS)
def test_encoding_is_reversible_and_wildcard_free(topic: str) -> None:
    key = routing_key(topic)
    assert decode_routing_key(key) == topic
    words = key.split(".")
    assert all(words) and "*" not in words and "#" not in words
    assert all(ch.isascii() and ch not in "*#" for ch in key)


def test_encoding_is_collision_free() -> None:
    alphabet = ["a", ":", ".", "~", "*", "#", "7E", "é", ""]
    topics = {"".join(parts) for parts in itertools.product(alphabet, repeat=3)} - {""}
    keys = {routing_key(topic) for topic in topics}
    assert len(keys) == len(topics)


def test_exact_bindings_match_only_their_topic() -> None:
    for a, b in itertools.product(TOPICS, repeat=2):
        assert amqp_matches(binding_key(a), routing_key(b)) == (a == b), (a, b)


@pytest.mark.parametrize(
    "prefix",
    ["pond:v1:default:", "pond:room", "pond.chat", "a:b:c", ":", "é:", "x" * 150 + ":y:"],
)
def test_prefix_bindings_cover_every_matching_topic(prefix: str) -> None:
    binding = binding_key(prefix + ".*")
    suffixes = ["", "x", ":", ":x", "y:z", ".*", "#", "~", ":" + "w" * 300, "q" * 400]
    for suffix in suffixes:
        topic = prefix + suffix
        assert amqp_matches(binding, routing_key(topic)), (binding, topic)


def test_prefix_ending_at_a_word_boundary_binds_exactly() -> None:
    assert binding_key("pond:v1:default:.*") == "pond.v1.default.*.#"
    assert not amqp_matches("pond.v1.default.*.#", routing_key("pond:v1:default"))
    assert not amqp_matches("pond.v1.default.*.#", routing_key("pond:v1:other:x"))
    assert binding_key("pond.chat.*") == "*.#"  # no complete word: filtered on the node


def test_long_topics_get_a_hash_based_key() -> None:
    topic = "pond:v1:default:" + "room/" * 100
    key = routing_key(topic)
    assert len(key) <= MAX_KEY
    assert key.startswith("pond.v1.default.") and ".~h." in key
    assert decode_routing_key(key) is None  # the topic comes from the header
    assert message_topic(key, {"pondsocket-topic": topic}) == topic
    assert message_topic(key, {"pondsocket-topic": topic.encode()}) == topic
    other = topic + "x"
    assert routing_key(other) != key
    assert amqp_matches(binding_key(topic), key)
    assert amqp_matches(binding_key("pond:v1:.*"), key)
    long_prefix = "w" * 120 + ":" + "v" * 120 + ":"
    assert amqp_matches(binding_key(long_prefix + ".*"), routing_key(long_prefix + "z" * 50))


def test_topic_length_limit() -> None:
    check_topic("t" * MAX_TOPIC)
    with pytest.raises(TopicTooLongError):
        check_topic("t" * (MAX_TOPIC + 1))
    with pytest.raises(ValueError):
        check_topic("")


def test_foreign_keys_are_rejected_or_decoded() -> None:
    assert message_topic("a.~3A", None) == "a::"
    assert message_topic("a.b*", None) is None
    assert message_topic("a.~Z1", {}) is None
