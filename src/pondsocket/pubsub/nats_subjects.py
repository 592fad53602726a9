"""The reversible mapping between PubSub topics and NATS subjects (``docs/pubsub/nats.md``).

A topic is split on ``:`` into tokens, which become the ``.``-separated tokens of the
subject. Inside a token, every byte of the UTF-8 encoding outside ``[A-Za-z0-9_/-]`` is
written ``~XX`` (two upper-case hex digits): that covers ``.``, ``*``, ``>``, whitespace,
``$``, ``~`` itself and anything non-ASCII. An empty token (``a::b``, a leading or trailing
``:``) is written as a lone ``~``, which no escape produces. The encoding is canonical, so
``decode_topic`` accepts exactly what ``encode_topic`` produces and two topics never share a
subject::

    pondsocket:v1:default:api/socket:/chat/lobby -> pondsocket.v1.default.api/socket./chat/lobby
    pond:a.b*c                                   -> pond.a~2Eb~2Ac
    pond::x:                                     -> pond.~.x.~

A prefix pattern ``prefix.*`` becomes ``<tokens before the prefix's last ':'>.>``; when the
prefix does not end just after a ``:`` its last token is partial, NATS cannot match it, and
the node filters what the wildcard delivers with :func:`pondsocket.pubsub.base.pattern_matches`.
"""

from __future__ import annotations

import re

from pondsocket.errors import InvalidOptionError
from pondsocket.pubsub.base import PubSubError

SAFE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-/")
ESCAPE = "~"
EMPTY_TOKEN = "~"
MAX_SUBJECT_LENGTH = 4000
"""Longest subject sent: nats-server refuses control lines over 4096 bytes (max_control_line)
and drops the connection, so longer ones are refused here, before anything is sent."""

_ESCAPED = re.compile(r"~([0-9A-F]{2})")
_TABLE = {b: chr(b) if b in SAFE else f"{ESCAPE}{b:02X}" for b in range(256)}
_BAD_PREFIX_TOKEN = re.compile(r"[\s.*>]")


class TopicTooLongError(PubSubError, ValueError):
    """A topic whose subject would exceed :data:`MAX_SUBJECT_LENGTH`; nothing was sent."""


class UndecodableSubjectError(ValueError):
    """A subject :func:`encode_token` cannot have produced (published by something else)."""


def encode_token(token: str) -> str:
    if not token:
        return EMPTY_TOKEN
    if token.isascii() and all(ord(c) in SAFE for c in token):
        return token  # the common case, no copy through bytes
    return "".join(_TABLE[b] for b in token.encode("utf-8", "surrogatepass"))


def decode_token(token: str) -> str:
    if token == EMPTY_TOKEN:
        return ""
    if ESCAPE not in token:
        if not token or not all(ord(c) in SAFE for c in token):
            raise UndecodableSubjectError(f"subject token {token!r} is not an encoded topic token")
        return token
    out = bytearray()
    position = 0
    while position < len(token):
        char = token[position]
        if char == ESCAPE:
            match = _ESCAPED.match(token, position)
            if match is None:
                raise UndecodableSubjectError(f"bad escape in subject token {token!r}")
            value = int(match.group(1), 16)
            if value in SAFE:  # canonical form: safe bytes are never escaped
                raise UndecodableSubjectError(f"needless escape in subject token {token!r}")
            out.append(value)
            position += 3
        elif ord(char) < 128 and ord(char) in SAFE:
            out.append(ord(char))
            position += 1
        else:
            raise UndecodableSubjectError(f"unescaped {char!r} in subject token {token!r}")
    try:
        return out.decode("utf-8", "surrogatepass")
    except UnicodeDecodeError as exc:
        raise UndecodableSubjectError(f"subject token {token!r} is not UTF-8") from exc


def encode_topic(topic: str) -> str:
    """The NATS subject of ``topic`` (without any subject prefix)."""
    return ".".join(encode_token(token) for token in topic.split(":"))


def decode_topic(subject: str) -> str:
    """The topic whose :func:`encode_topic` is ``subject``; raises
    :class:`UndecodableSubjectError` for anything else."""
    return ":".join(decode_token(token) for token in subject.split("."))


def check_subject_prefix(prefix: str) -> str:
    """Validate ``subject_prefix``: empty, or ``.``-separated non-empty tokens without
    whitespace, ``*`` or ``>``. Returned with a trailing ``.`` when not empty."""
    if not prefix:
        return ""
    prefix = prefix.removesuffix(".")
    tokens = prefix.split(".")
    if any(not token or _BAD_PREFIX_TOKEN.search(token) for token in tokens):
        raise InvalidOptionError(
            f"subject_prefix {prefix!r} must be NATS subject tokens separated by '.' "
            "(no empty token, whitespace, '*' or '>')"
        )
    return prefix + "."


class SubjectCodec:
    """Topics to subjects and back under one ``subject_prefix``."""

    def __init__(self, subject_prefix: str = "") -> None:
        self.prefix = check_subject_prefix(subject_prefix)

    def subject(self, topic: str) -> str:
        subject = self.prefix + encode_topic(topic)
        if len(subject) > MAX_SUBJECT_LENGTH:
            raise TopicTooLongError(
                f"topic {topic[:60]!r}... encodes to a {len(subject)}-byte NATS subject; the "
                f"limit is {MAX_SUBJECT_LENGTH} (nats-server's max_control_line is 4096)"
            )
        return subject

    def topic(self, subject: str) -> str:
        if not subject.startswith(self.prefix):
            raise UndecodableSubjectError(f"subject {subject!r} lacks prefix {self.prefix!r}")
        return decode_topic(subject[len(self.prefix) :])

    def pattern(self, pattern: str) -> tuple[str, bool]:
        """The NATS subscription subject of a PubSub pattern, and whether what it delivers
        must be filtered on this node (a prefix whose last token is partial)."""
        if not pattern.endswith(".*"):
            return self.subject(pattern), False
        *complete, last = pattern[:-2].split(":")
        subject = self.prefix + ".".join([*map(encode_token, complete), ">"])
        if len(subject) > MAX_SUBJECT_LENGTH:
            raise TopicTooLongError(f"pattern {pattern[:60]!r}... is too long for NATS")
        return subject, last != ""
