"""HMAC-SHA256 signatures on cluster envelopes (a shared secret between our nodes).

The signature is one more JSON field, ``"signature"``, appended after the encoded
envelope, so upstream peers (which ignore unknown fields) still read a signed envelope.
It covers the exact bytes before it: no canonical JSON is needed, and a receiver checks
it before it parses anything. Several keys are accepted at once, so a secret can be
rotated node by node: the first key signs, every key verifies.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Sequence
from pathlib import Path

from pondsocket.errors import UsageError

SECRET_ENV = "PONDSOCKET_CLUSTER_SECRET"
"""Environment variable read when ``ClusterOptions.secret`` is not given: one key, or
several separated by commas (the first signs)."""
MIN_KEY_BYTES = 16

_FIELD = b',"signature":"'
_HEX_DIGEST = 64
_TAIL = len(_FIELD) + _HEX_DIGEST + 2  # the field, the digest, '"}'


def parse_keys(secret: str | bytes | Sequence[str | bytes]) -> tuple[bytes, ...]:
    """Keys from ``ClusterOptions.secret``; raises :class:`UsageError` for weak ones."""
    items = [secret] if isinstance(secret, str | bytes) else list(secret)
    keys = tuple(k.encode() if isinstance(k, str) else bytes(k) for k in items)
    if not keys:
        raise UsageError("ClusterOptions.secret: give at least one key")
    for key in keys:
        if len(key) < MIN_KEY_BYTES:
            raise UsageError(
                f"ClusterOptions.secret: each key needs at least {MIN_KEY_BYTES} bytes"
                " (e.g. `python -c 'import secrets; print(secrets.token_urlsafe(32))'`)"
            )
    return keys


def keys_from_env() -> tuple[bytes, ...] | None:
    """The keys in :data:`SECRET_ENV`, or ``None`` if it is unset or empty."""
    value = os.environ.get(SECRET_ENV, "").strip()
    if not value:
        return None
    return parse_keys([k.strip() for k in value.split(",") if k.strip()])


def read_secret_file(path: str | Path) -> list[str]:
    """Keys from a file: one per line, the first signs; blank lines and ``#`` comments
    are skipped. Raises :class:`UsageError` if it cannot be read or holds no key."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read the cluster secret file {path}: {exc}") from None
    keys = [s for line in text.splitlines() if (s := line.strip()) and not s.startswith("#")]
    if not keys:
        raise UsageError(f"the cluster secret file {path} holds no key")
    parse_keys(keys)
    return keys


class EnvelopeSigner:
    """Signs encoded envelopes with the first key and verifies them against every key."""

    __slots__ = ("_keys",)

    def __init__(self, keys: Sequence[bytes]) -> None:
        self._keys = tuple(keys)

    @staticmethod
    def _digest(key: bytes, body: bytes) -> bytes:
        return hmac.digest(key, body, hashlib.sha256).hex().encode()

    def sign(self, encoded: bytes) -> bytes:
        """``encoded`` (a JSON object) with its signature as the last field."""
        return encoded[:-1] + _FIELD + self._digest(self._keys[0], encoded) + b'"}'

    def verify(self, data: bytes) -> bytes | None:
        """The envelope without its signature if a key signed it; ``None`` if it is
        unsigned or the signature is wrong."""
        cut = len(data) - _TAIL
        if cut < 1 or data[cut : cut + len(_FIELD)] != _FIELD or not data.endswith(b'"}'):
            return None
        body = data[:cut] + b"}"
        digest = data[cut + len(_FIELD) : -2]
        for key in self._keys:
            if hmac.compare_digest(self._digest(key, body), digest):
                return body
        return None

    @staticmethod
    def is_signed(data: bytes) -> bool:
        """Whether ``data`` carries a signature field at all (right or wrong)."""
        cut = len(data) - _TAIL
        return cut >= 1 and data[cut : cut + len(_FIELD)] == _FIELD
