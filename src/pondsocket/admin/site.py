"""The admin page's HTTP side: the page and its two assets at ``admin_path`` (no data in
them, served to anyone), and the JSON API below ``{admin_path}/api/`` (a credential on
every request, see :mod:`pondsocket.admin.auth`).

The API takes its arguments in the query string and never a body: the standalone
server (websockets) cannot receive a request body, and a body-less API needs no body
limit. Actions are ``POST`` and must carry ``X-Pond-Admin: 1``: a page on another site
cannot send that header without a CORS preflight, which this API never grants, so a
check based on cookies (``admin_auth``) cannot be ridden by a cross-site form."""

from __future__ import annotations

import logging
import urllib.parse
from collections.abc import Callable
from functools import cache
from importlib.resources import files
from typing import TYPE_CHECKING, Any

import orjson

from pondsocket.admin import actions
from pondsocket.admin.auth import admitted
from pondsocket.admin.state import snapshot
from pondsocket.admin.throttle import FailedSignIns
from pondsocket.core.proxies import client_address
from pondsocket.core.ratelog import RateLimitedLog
from pondsocket.core.request import ConnectionRequest
from pondsocket.transports.host import HttpResponse

if TYPE_CHECKING:
    from pondsocket.server import PondSocket

log = logging.getLogger("pondsocket.admin")
_refusals = RateLimitedLog(log)

JSON = "application/json"
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
HEADERS = (
    ("Cache-Control", "no-store"),
    ("X-Content-Type-Options", "nosniff"),
    ("Content-Security-Policy", CSP),
    ("Referrer-Policy", "no-referrer"),
    ("X-Frame-Options", "DENY"),
    ("Cross-Origin-Resource-Policy", "same-origin"),
)
ACTION_HEADER = "x-pond-admin"
_ASSETS = {
    "admin.js": "text/javascript; charset=utf-8",
    "admin.css": "text/css; charset=utf-8",
    "favicon.svg": "image/svg+xml",
}
_MAX_QUERY = 4096  # characters: what the longest valid arguments take, percent-encoded
# Each API call: its method and its arguments, with the longest value each may have.
_API: dict[str, tuple[str, dict[str, int]]] = {
    "state": ("GET", {"endpoint": 1024, "channel": 1024, "filter": 200}),
    "evict": ("POST", {"endpoint": 1024, "channel": 1024, "user": 256, "reason": 200}),
    "close": ("POST", {"connection": 256}),
}
_REQUIRED = {"evict": ("endpoint", "channel", "user"), "close": ("connection",)}


class BadRequest(Exception):
    """An API call's arguments are not acceptable (answered 400 with the message)."""


class AdminSite:
    """Answers the requests under ``pond.options.admin_path`` (read at each request, so
    :meth:`PondSocket.configure` applies); ``None`` for every other path."""

    def __init__(self, pond: PondSocket) -> None:
        self._pond = pond
        self._failures = FailedSignIns()

    async def answer(
        self, method: str, path: str, request: Callable[[], ConnectionRequest]
    ) -> HttpResponse | None:
        root = self._pond.options.admin_path
        if root is None:
            return None
        if path == root:
            return _static(method, "text/html; charset=utf-8", _page(root.rsplit("/", 1)[1]))
        if not path.startswith(root + "/"):
            return None
        rest = path[len(root) + 1 :]
        if rest in _ASSETS:
            return _static(method, _ASSETS[rest], _asset(rest))
        if rest.startswith("api/") and rest[4:] in _API:
            return await self._api(method, rest[4:], request())
        return _json(404, {"error": "not found"})

    async def _api(self, method: str, name: str, request: ConnectionRequest) -> HttpResponse:
        address = self._address(request)
        wait = self._failures.retry_after(address)
        if wait > 0:  # refused too often: the credential is not even looked at
            retry = FailedSignIns.header(wait)
            error = f"too many refused requests from this address; retry in {retry} s"
            return _json(429, {"error": error}, (("Retry-After", retry),))
        if not await admitted(self._pond.options, request):
            self._failures.failed(address)
            _refusals.warning(
                "admin API: refused a request without a valid credential from %s", address
            )
            bearer = (("WWW-Authenticate", 'Bearer realm="pondsocket-admin"'),)
            return _json(401, {"error": "unauthorized"}, bearer)
        allowed, limits = _API[name]
        if method != allowed:
            return _json(405, {"error": f"use {allowed}"}, (("Allow", allowed),))
        headers = request.headers
        if "transfer-encoding" in headers or headers.get("content-length", "0") != "0":
            return _json(413, {"error": "the admin API takes no request body"})
        if method == "POST" and headers.get(ACTION_HEADER) != "1":
            return _json(403, {"error": "actions need the header X-Pond-Admin: 1"})
        try:
            args = arguments(request.query_string, limits, _REQUIRED.get(name, ()))
        except BadRequest as exc:
            return _json(400, {"error": str(exc)})
        pond = self._pond
        if name == "evict":
            outcome = actions.evict(
                pond, args["endpoint"], args["channel"], args["user"], args.get("reason", "")
            )
        elif name == "close":
            outcome = actions.close(pond, args["connection"])
        else:
            selected = None
            if "channel" in args:
                selected = (args.get("endpoint", ""), args["channel"])
            outcome = 200, snapshot(pond, channel_filter=args.get("filter", ""), selected=selected)
        return _json(*outcome)

    def _address(self, request: ConnectionRequest) -> str:
        """The client as the endpoints see it (behind trusted proxies, the forwarded one)."""
        trusted = tuple(self._pond.options.trusted_proxies or ())
        client = client_address(request.client, request.headers, trusted)
        return client[0] if client else "an unknown client"


def arguments(query: str, limits: dict[str, int], required: tuple[str, ...]) -> dict[str, str]:
    """The query string's arguments: each known, given once, UTF-8, within its length."""
    if len(query) > _MAX_QUERY:
        raise BadRequest("query string too long")
    try:
        pairs = urllib.parse.parse_qsl(
            # Room for a repeat or two, so that it is named; past that, refused unread.
            query,
            keep_blank_values=True,
            errors="strict",
            max_num_fields=2 * len(limits) + 1,
        )
    except ValueError as exc:  # UnicodeDecodeError too: percent-escapes that are not UTF-8
        raise BadRequest(f"malformed query string ({type(exc).__name__})") from None
    args: dict[str, str] = {}
    for key, value in pairs:
        if key not in limits:
            raise BadRequest(f"unknown argument {key[:40]!r}")
        if key in args:
            raise BadRequest(f"argument {key!r} given twice")
        if len(value) > limits[key]:
            raise BadRequest(f"argument {key!r} longer than {limits[key]} characters")
        args[key] = value
    missing = [key for key in required if not args.get(key)]
    if missing:
        raise BadRequest(f"missing argument {', '.join(missing)}")
    return args


def _json(
    status: int, body: dict[str, Any], extra: tuple[tuple[str, str], ...] = ()
) -> HttpResponse:
    return HttpResponse(status, JSON, orjson.dumps(body), HEADERS + extra)


def _static(method: str, content_type: str, body: bytes) -> HttpResponse:
    if method != "GET":
        return HttpResponse(
            405, "text/plain; charset=utf-8", b"use GET\n", (*HEADERS, ("Allow", "GET"))
        )
    return HttpResponse(200, content_type, body, HEADERS)


@cache
def _asset(name: str) -> bytes:
    return files("pondsocket.admin").joinpath("static", name).read_bytes()


@cache
def _page(last_segment: str) -> bytes:
    # The assets are linked relative to the page's own URL, so the page works wherever
    # the app is mounted (ASGI root_path); the segment is validated by PondOptions.
    return _asset("admin.html").replace(b"__BASE__", last_segment.encode("ascii"))
