"""Who may use the admin API: the bearer token (``PondOptions.admin_token``, compared in
constant time) or the app's own check (``PondOptions.admin_auth``); either admits."""

from __future__ import annotations

import dataclasses
import hmac
import inspect
import logging

from pondsocket.core.options import PondOptions
from pondsocket.core.proxies import client_address
from pondsocket.core.ratelog import RateLimitedLog
from pondsocket.core.request import ConnectionRequest

log = logging.getLogger("pondsocket.admin")
_check_failures = RateLimitedLog(log)


def bearer(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, else ``None``."""
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return None
    return token


def token_matches(options: PondOptions, request: ConnectionRequest) -> bool:
    expected = options.admin_token
    offered = bearer(request.headers.get("authorization"))
    if expected is None or offered is None:
        return False
    # Bytes: compare_digest refuses non-ASCII str, and headers arrive latin-1 decoded.
    return hmac.compare_digest(offered.encode("latin-1"), expected.encode("ascii"))


async def admitted(options: PondOptions, request: ConnectionRequest) -> bool:
    """Whether ``request`` may use the admin API. A check that raises refuses (logged)."""
    if token_matches(options, request):
        return True
    check = options.admin_auth
    if check is None:
        return False
    # The check sees the client as the endpoints do: behind trusted proxies, the forwarded one.
    trusted = tuple(options.trusted_proxies or ())
    client = client_address(request.client, request.headers, trusted)
    if client != request.client:
        request = dataclasses.replace(request, client=client)
    try:
        verdict = check(request)
        if inspect.isawaitable(verdict):
            verdict = await verdict
    except Exception as exc:
        _check_failures.log(
            logging.ERROR, "admin_auth raised %r: the admin request is refused", exc, exc_info=exc
        )
        return False
    return verdict is True  # exactly True: a truthy object returned by mistake does not admit
