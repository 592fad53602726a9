"""Exceptions raised by PondSocket.

    PondSocketError
    ├── UsageError (also RuntimeError)      the API was called wrongly; the message says how to fix it
    │   ├── InvalidOptionError (also ValueError)  an option or argument out of its range
    │   ├── AlreadyDecidedError             accept/decline called twice, or after the other
    │   └── NotJoinedError                  a channel operation for a user who is not a member
    ├── PayloadError (also TypeError)       a payload/presence/assigns value is not a JSON object
    ├── PresenceError                       track/update/untrack in the wrong presence state
    │   └── PresenceTooLargeError (also HandlerError, 413)  presence above max_presence_bytes
    ├── HandlerError                        raised by applications to answer with a status code
    └── StartupError                        the broker or history store failed at startup

Errors that reach a client carry their wire status (``status``), like Starlette's
``HTTPException``: raise ``HandlerError("no such room", status=404)`` from any handler.
"""

from __future__ import annotations


class PondSocketError(Exception):
    """Base class of every PondSocket exception."""


class UsageError(PondSocketError, RuntimeError):
    """The public API was used in a way it does not support."""


class InvalidOptionError(UsageError, ValueError):
    """An option, URL or argument has a value the API does not accept (a backend's
    ``queue_size=0``, an unknown URL option, an empty topic)."""


class AlreadyDecidedError(UsageError):
    """A request was accepted or declined more than once."""


class NotJoinedError(UsageError):
    """The user is not a member of the channel the operation names."""


class PayloadError(PondSocketError, TypeError):
    """A value that must be a JSON object (dict with str keys) was something else."""


class PresenceError(PondSocketError):
    """A presence operation that does not fit the user's presence state."""


class HandlerError(PondSocketError):
    """Raise from a handler to refuse a request with a status code and message."""

    def __init__(self, message: str, status: int = 500) -> None:
        super().__init__(message)
        self.message = message
        """The message sent to the client."""
        self.status = status
        """The status code sent to the client."""


class PresenceTooLargeError(HandlerError, PresenceError):
    """A presence encodes to more than ``PondOptions.max_presence_bytes``. Raised by
    ``track``/``update_presence``; uncaught in a handler, the client gets a 413."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(
            f"presence of {size} bytes exceeds max_presence_bytes ({limit}): every member "
            "receives the whole presence list on every change, so keep presence small",
            413,
        )
        self.size, self.limit = size, limit


class StartupError(PondSocketError):
    """The server could not start because its broker or history store failed: the
    message is one line naming the cause (unreachable, credentials refused, TLS); the
    backend's exception is ``__cause__``. :meth:`PondSocket.run` and the command line turn
    it into that line on stderr and exit status 1."""
