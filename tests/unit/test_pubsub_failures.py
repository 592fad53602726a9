"""One line that names why a broker could not be reached (pondsocket.pubsub.failures)."""

from __future__ import annotations

import socket
import ssl

import aiormq.exceptions
import redis.exceptions

from pondsocket.pubsub.base import PubSubUnavailableError
from pondsocket.pubsub.failures import Cause, chain, classify, explain, redact


def _wrapped(inner: BaseException, message: str = "cannot connect to the broker") -> Exception:
    """``inner`` as the cause of a backend's error, the way ``raise ... from`` builds it."""
    try:
        try:
            raise inner
        except BaseException as exc:
            raise PubSubUnavailableError(f"{message}: {exc}") from exc
    except PubSubUnavailableError as outer:
        return outer


def test_refused_connection_and_unknown_host_are_unreachable() -> None:
    refused = _wrapped(ConnectionRefusedError(111, "Connection refused"))
    assert classify(refused) is Cause.UNREACHABLE
    assert explain(refused).startswith("the broker is unreachable: cannot connect")
    assert classify(_wrapped(socket.gaierror(-2, "Name or service not known"))) is Cause.UNREACHABLE


def test_credentials_are_told_apart_from_unreachable() -> None:
    # redis-py's AuthenticationError is a ConnectionError: it must not read as unreachable
    auth = redis.exceptions.AuthenticationError("invalid username-password pair")
    assert isinstance(auth, redis.exceptions.ConnectionError)
    assert classify(_wrapped(auth)) is Cause.CREDENTIALS
    amqp = aiormq.exceptions.ProbableAuthenticationError("ACCESS_REFUSED - Login was refused")
    assert classify(_wrapped(amqp)) is Cause.CREDENTIALS
    assert classify(_wrapped(RuntimeError("nats: 'Authorization Violation'"))) is Cause.CREDENTIALS


def test_tls_failures_are_named_even_inside_a_connection_error() -> None:
    inner = ssl.SSLError(1, "[SSL: WRONG_VERSION_NUMBER] wrong version number")
    failure = _wrapped(aiormq.exceptions.AMQPConnectionError(inner))
    assert classify(failure) is Cause.TLS
    verify = ssl.SSLCertVerificationError(1, "certificate verify failed: self-signed")
    assert classify(_wrapped(verify)) is Cause.TLS


def test_a_backend_that_knows_the_cause_says_it() -> None:
    told = PubSubUnavailableError("no TLS handshake within 5 s", cause=Cause.TLS)
    assert classify(told) is Cause.TLS
    assert explain(told) == "TLS with the broker failed: no TLS handshake within 5 s"
    assert classify(PubSubUnavailableError("odd")) is Cause.OTHER


def test_explain_is_one_line_and_adds_the_innermost_words_once() -> None:
    failure = _wrapped(OSError(113, "No route to host"), "cannot connect to NATS\nwithin 5 s")
    line = explain(failure)
    assert "\n" not in line
    assert line.count("No route to host") == 1  # already in the outer message
    silent = _wrapped(TimeoutError())  # a bare timeout adds nothing in parentheses
    assert explain(silent) == "the broker is unreachable: cannot connect to the broker:"


def test_passwords_never_reach_the_line() -> None:
    failure = _wrapped(
        ConnectionRefusedError(111, "refused"), "cannot reach amqp://app:s3cret@mq:5672/"
    )
    assert "s3cret" not in explain(failure)
    assert redact("nats://u:p@a:4222,nats://b:4222 redis://:pw@h/0") == (
        "nats://u:***@a:4222,nats://b:4222 redis://:***@h/0"
    )


def test_chain_ends_on_a_cycle() -> None:
    first, second = ValueError("a"), ValueError("b")
    first.__cause__, second.__cause__ = second, first
    assert list(chain(first)) == [first, second]
