"""Exceptions raised by :mod:`pondsocket.client`.

PondSocketError
└── ClientError                         anything the client reports
    ├── ConnectError                    could not connect (network, timeout, bad answer)
    │   └── HandshakeRefusedError       the server answered the handshake with an HTTP
    │                                   4xx status: never retried
    ├── ReconnectFailedError            reconnection gave up (``max_attempts``)
    ├── ClientClosedError               the client was closed while something waited
    ├── NotConnectedError               an operation needs a connection it does not have
    ├── JoinDeclinedError               the server refused a join (``SYSTEM/UNAUTHORIZED``)
    ├── ChannelClosedError              the channel was left, declined or evicted
    ├── ClientTimeoutError (also TimeoutError)  a join, leave, request or wait timed out
    └── RequestFailedError              the server answered a request with an ERROR frame
"""

from __future__ import annotations

from typing import Any

from pondsocket.errors import PondSocketError


class ClientError(PondSocketError):
    """Base class of every error of the PondSocket client."""


class ConnectError(ClientError):
    """The connection could not be opened (refused, unreachable, timed out, not PondSocket)."""


class HandshakeRefusedError(ConnectError):
    """The server refused the WebSocket handshake with an HTTP status (401, 403, 404, ...).
    A 4xx status is an answer, not an outage, so the client does not retry."""

    def __init__(self, status: int, reason: str, body: str = "") -> None:
        detail = f": {body.strip()[:200]}" if body.strip() else ""
        super().__init__(f"the server refused the connection with HTTP {status} {reason}{detail}")
        self.status = status
        self.reason = reason
        self.body = body


class ReconnectFailedError(ClientError):
    """Reconnection stopped after ``max_attempts`` failed attempts; ``__cause__`` is the
    last failure."""


class ClientClosedError(ClientError):
    """The client (or its channel) was closed while the operation was pending."""


class NotConnectedError(ClientError):
    """The operation needs an open connection (``async with PondClient(...)`` first)."""


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


class JoinDeclinedError(ClientError):
    """The server declined the join. ``status`` (the HTTP-like status: ``payload.status``,
    ``statusCode``, or a numeric ``code`` as upstream servers send), ``code`` (a string
    code such as ``UNAUTHORIZED_JOIN_REQUEST``, else ``None``) and ``message`` come from
    the refusal frame."""

    def __init__(self, channel: str, payload: dict[str, Any]) -> None:
        code, details = payload.get("code"), payload.get("details")
        status = payload.get("status", payload.get("statusCode"))
        if not _is_int(status) and isinstance(details, dict):
            status = details.get("statusCode")  # Go
        if not _is_int(status):
            status = code  # upstream Python and Go: the HTTP status is the numeric code
        self.status = status if _is_int(status) else None
        self.code = code if isinstance(code, str) and code else None
        self.message = str(payload.get("message", "declined"))
        self.channel = channel
        self.payload = payload
        super().__init__(f"join of {channel} declined ({self.status}): {self.message}")


class ChannelClosedError(ClientError):
    """The channel is no longer joined (left, declined or evicted) and will not rejoin."""


class ClientTimeoutError(ClientError, TimeoutError):
    """A join, leave, request or state wait did not complete in time."""


class RequestFailedError(ClientError):
    """The server answered a request with an ERROR frame (no handler, handler failure)."""

    def __init__(self, event: str, payload: dict[str, Any]) -> None:
        code, details = payload.get("code"), payload.get("details")
        status = payload.get("status", payload.get("statusCode"))
        if not _is_int(status) and isinstance(details, dict):
            status = details.get("statusCode")  # Go
        if not _is_int(status):
            status = code  # upstream Python and Go: the HTTP status is the numeric code
        self.status = status if _is_int(status) else None
        self.code = code if isinstance(code, str) and code else None
        self.message = str(payload.get("message", "request failed"))
        self.event = event
        self.payload = payload
        super().__init__(f"request {event!r} failed ({self.status}): {self.message}")
