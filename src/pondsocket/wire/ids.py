"""Random identifiers: UUID version 4 strings and 128-bit hex tokens.

``str(uuid.uuid4())`` builds an ``UUID`` object and formats it through an int (about
2.5 µs); a connect+join needs three ids, so the string is built from the same 16 bytes of
``os.urandom`` directly (about 0.9 µs). The bytes come from the OS CSPRNG, as uuid4's do:
a connection id doubles as the SSE transport's capability, so it must be unguessable.
"""

from __future__ import annotations

import os

__all__ = ["random_hex", "random_uuid"]

# The variant nibble of an RFC 9562 UUID is 10xx: keep the two random low bits.
_VARIANT = {digit: "89ab"[int(digit, 16) & 3] for digit in "0123456789abcdef"}


def random_uuid() -> str:
    """A random UUID (version 4) in its canonical 36-character form."""
    h = os.urandom(16).hex()
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{_VARIANT[h[16]]}{h[17:20]}-{h[20:]}"


def random_hex() -> str:
    """128 random bits as 32 lowercase hex digits (message ids, queue names)."""
    return os.urandom(16).hex()
