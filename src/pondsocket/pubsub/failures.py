"""Why a broker could not be reached, in one line an operator can act on.

A failed connect surfaces as a chain of exceptions (ours, the client library's, the
socket's) whose class depends on the backend. :func:`explain` walks that chain and names
the cause among the three that need different fixes: the broker is **unreachable**
(address, port, firewall, DNS, not started), it **refused the credentials**, or **TLS**
failed (a plain port for a TLS URL, a certificate not trusted). Classes are matched by
name so that this module imports no broker client.
"""

from __future__ import annotations

import contextlib
import logging
import re
import socket
import ssl
from collections.abc import Iterator
from enum import Enum

__all__ = ["Cause", "classify", "explain", "quiet_while_connecting", "redact"]


class Cause(Enum):
    """What a failed connect comes down to; the value is the phrase :func:`explain` uses."""

    UNREACHABLE = "the broker is unreachable"
    CREDENTIALS = "the broker refused the credentials"
    TLS = "TLS with the broker failed"
    OTHER = "the broker connection failed"


# Class names and reply texts of the clients we ship backends for (redis-py, aiormq,
# nats-py, aiokafka, botocore, google-api-core).
_CREDENTIAL_NAMES = ("authentication", "authorization", "credentials", "unauthenticated")
_CREDENTIAL_NAMES_EXACT = ("PermissionDenied", "AccessDenied", "NoCredentialsError")
_CREDENTIAL_TEXTS = (
    "wrongpass",
    "noauth",
    "invalid password",
    "invalid username-password",
    "access_refused",
    "authorization violation",
    "authentication failed",
    "sasl authentication",
    "invalidclienttokenid",
    "signaturedoesnotmatch",
    "unrecognizedclientexception",
    "invalid_grant",
)
_TLS_TEXTS = ("[ssl:", "certificate verify failed", "ssl handshake", "tls handshake")
_USERINFO = re.compile(r"(?<=://)([^/@\s:]*):[^/@\s]*@")


def redact(text: str) -> str:
    """``text`` with the password of every URL in it replaced by ``***``, for logs."""
    return _USERINFO.sub(r"\1:***@", text)


def chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and its causes (explicit first, then implicit), each once."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def classify(exc: BaseException) -> Cause:
    """The :class:`Cause` of a failed connect, from the whole exception chain."""
    causes = list(chain(exc))
    for item in causes:  # an explicit cause set by a backend wins
        cause = getattr(item, "cause", None)
        if isinstance(cause, Cause):
            return cause
    for item in causes:
        name, text = type(item).__name__, str(item).lower()
        if any(part in name.lower() for part in _CREDENTIAL_NAMES) or any(
            part in text for part in _CREDENTIAL_TEXTS
        ):
            return Cause.CREDENTIALS
        if name in _CREDENTIAL_NAMES_EXACT:
            return Cause.CREDENTIALS
    for item in causes:
        if isinstance(item, ssl.SSLError) or any(part in str(item).lower() for part in _TLS_TEXTS):
            return Cause.TLS
    for item in causes:
        if isinstance(item, ConnectionError | socket.gaierror | TimeoutError):
            return Cause.UNREACHABLE
        if isinstance(item, OSError) and item.errno is not None:
            return Cause.UNREACHABLE  # no route, network unreachable, ...
    return Cause.OTHER


def explain(exc: BaseException) -> str:
    """One line: the cause, then what the first exception said, then the innermost one's
    words when they add something (``the broker is unreachable: cannot connect to Redis
    within 5 s (Connect call failed ('127.0.0.1', 6390))``)."""
    causes = list(chain(exc))
    first = _words(causes[0]) or type(causes[0]).__name__
    detail = first
    for inner in reversed(causes[1:]):
        words = _words(inner)
        if words and words not in first:
            detail = f"{first} ({words})"
            break
    return redact(f"{classify(exc).value}: {detail}")


def _words(exc: BaseException) -> str:
    """What ``exc`` says, on one line; empty for the silent ones (a bare timeout)."""
    return " ".join(str(exc).split())


def _drop(record: logging.LogRecord) -> bool:
    return False


@contextlib.contextmanager
def quiet_while_connecting(*logger_names: str) -> Iterator[None]:
    """Silence a client library's own loggers during a first connect whose failure we
    raise ourselves: its lines would say the same thing again, a line per retry."""
    loggers = [logging.getLogger(name) for name in logger_names]
    for logger in loggers:
        logger.addFilter(_drop)
    try:
        yield
    finally:
        for logger in loggers:
            logger.removeFilter(_drop)
