"""The standalone server's plain HTTP: what it answers to a request on its port that is
not (or not yet) a WebSocket.

websockets hands every request to the server's ``process_request`` hook before the
upgrade; a :class:`Response` returned from there is sent as is and ends the connection,
``None`` lets websockets go on. Requests without ``Upgrade`` get the server's own pages
(health, metrics, the admin page), then the app's fixed ``http_routes``, else 404; the
handshake's refusals are plain-text answers built here too.
"""

from __future__ import annotations

import email.utils
import http
from collections.abc import Mapping

from websockets.asyncio.server import ServerConnection
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from pondsocket.core.request import ConnectionRequest
from pondsocket.transports.host import Host

__all__ = [
    "HttpRoutes",
    "answer_plain_request",
    "connection_request",
    "is_upgrade",
    "text_response",
]

HttpRoutes = Mapping[str, tuple[str, bytes]]
"""Exact path -> (content type, body), served to plain HTTP GETs."""


async def answer_plain_request(
    pond: Host, routes: HttpRoutes, connection: ServerConnection, request: Request
) -> Response | None:
    """The answer to a request without ``Upgrade``; ``None`` for an endpoint's path
    (websockets then answers 426 Upgrade Required)."""
    target = request.path  # the request target: path plus optional ?query
    path, _, query = target.partition("?")
    answer = await pond.http_request(
        request.method, path, lambda: connection_request(connection, request, path, query)
    )
    if answer is not None:
        return _response(answer.status, answer.content_type, answer.body, answer.headers)
    page = routes.get(path)
    if page is not None:
        return _response(200, page[0], page[1])
    if pond.match(target) is None:
        return text_response(404, "Not Found")
    return None


def is_upgrade(headers: Headers) -> bool:
    return any(
        token.strip().lower() == "websocket"
        for value in headers.get_all("Upgrade")
        for token in value.split(",")
    )


def connection_request(
    connection: ServerConnection, request: Request, path: str, query: str
) -> ConnectionRequest:
    """The request as the core sees it: path, query, headers and the client's address."""
    return ConnectionRequest.from_raw(
        path, query, request.headers.raw_items(), _client_address(connection)
    )


def text_response(status: int, text: str) -> Response:
    return _response(status, "text/plain; charset=utf-8", text.encode())


def _client_address(connection: ServerConnection) -> tuple[str, int] | None:
    address = connection.remote_address
    if isinstance(address, tuple) and len(address) >= 2:
        return str(address[0]), int(address[1])
    return None


def _response(
    status: int, content_type: str, body: bytes, extra: tuple[tuple[str, str], ...] = ()
) -> Response:
    try:
        phrase = http.HTTPStatus(status).phrase
    except ValueError:  # a custom decline status such as 499
        phrase = "Error"
    headers = Headers(
        [
            ("Date", email.utils.formatdate(usegmt=True)),
            ("Connection", "close"),
            ("Content-Length", str(len(body))),
            ("Content-Type", content_type),
            *extra,
        ]
    )
    return Response(status, phrase, headers, body)
