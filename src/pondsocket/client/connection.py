"""The connection: :class:`PondClient` opens it, reads every frame, hands channel frames
to their :class:`~pondsocket.client.Channel`, and reconnects with jittered exponential
backoff, rejoining (and recovering) every channel the application had joined."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI

from pondsocket.client.channel import Channel
from pondsocket.client.errors import (
    ClientClosedError,
    ClientError,
    ConnectError,
    HandshakeRefusedError,
    NotConnectedError,
    ReconnectFailedError,
)
from pondsocket.client.frames import Message, ServerFrame, decode_frame
from pondsocket.client.options import ClientOptions
from pondsocket.client.state import ConnectionState, Watched
from pondsocket.errors import InvalidOptionError
from pondsocket.wire.messages import ENDPOINT_CHANNEL

log = logging.getLogger("pondsocket.client")

FrameHook = Callable[[ServerFrame], object]
_FINAL = (ConnectionState.CLOSED, ConnectionState.FAILED)


def build_url(url: str, query: Mapping[str, Any] | None) -> str:
    """``url`` with ``query`` added to its own query string; http(s) becomes ws(s)."""
    parts = urlsplit(url)
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme)
    if scheme not in ("ws", "wss"):
        raise InvalidOptionError(f"unsupported URL {url!r}: expected ws://, wss://, http(s)://")
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    for key, value in (query or {}).items():
        text = ("true" if value else "false") if isinstance(value, bool) else str(value)
        pairs.append((key, text))
    return urlunsplit((scheme, parts.netloc, parts.path or "/", urlencode(pairs), ""))


class PondClient:
    """A PondSocket connection: ``async with PondClient(url, query={...}) as client``.

    Options are :class:`ClientOptions` fields, given as keywords or as ``options=``."""

    def __init__(
        self,
        url: str,
        *,
        query: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        options: ClientOptions | None = None,
        **overrides: Any,
    ) -> None:
        self.url = build_url(url, query)
        self.headers = dict(headers or {})
        self.options = ClientOptions(**overrides) if options is None else options
        if options is not None and overrides:
            raise InvalidOptionError("give either options= or option keywords, not both")
        self.state: Watched[ConnectionState] = Watched(ConnectionState.IDLE)
        self.connection_id: str | None = None
        self.error: ClientError | None = None
        """Why the client FAILED (refused, reconnection gave up)."""
        self.reconnects = 0
        self._ws: ClientConnection | None = None
        self._channels: dict[str, Channel] = {}
        self._frame_hooks: list[FrameHook] = []
        self._message_hooks: list[Callable[[Message], object]] = []
        self._runner: asyncio.Task[None] | None = None

    # -- lifecycle -----------------------------------------------------------------

    async def __aenter__(self) -> PondClient:
        await self.connect()
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def connect(self) -> None:
        """Open the connection (one attempt, bounded by ``connect_timeout``). Raises
        :class:`HandshakeRefusedError` on a 4xx answer, :class:`ConnectError` otherwise."""
        if self.state.value is not ConnectionState.IDLE:
            raise ClientClosedError(f"connect() on a client that is {self.state.value}")
        self.state.set(ConnectionState.CONNECTING)
        try:
            ws = await self._open()
        except ClientError as exc:
            self._finish(ConnectionState.FAILED, exc)
            raise
        self._runner = asyncio.create_task(self._run(ws), name="pondsocket-client")

    async def close(self) -> None:
        """Close the connection (close handshake, bounded by ``close_timeout``) and every
        channel; pending joins, requests and iterations end. Idempotent."""
        if self.state.value not in _FINAL:
            self._finish(ConnectionState.CLOSED, None)
        runner, self._runner = self._runner, None
        ws = self._ws
        if ws is not None:
            await ws.close()
        if runner is not None and runner is not asyncio.current_task():
            runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await runner

    async def wait_closed(self) -> None:
        """Return once the client is CLOSED or FAILED; raises :attr:`error` if it failed."""
        await self.state.wait_for(*_FINAL, timeout=None)
        if self.error is not None:
            raise self.error

    @property
    def connected(self) -> bool:
        return self.state.value is ConnectionState.CONNECTED and self._ws is not None

    def check_usable(self) -> None:
        if self.state.value in _FINAL:
            raise self.error or ClientClosedError("the client is closed")
        if self.state.value is ConnectionState.IDLE:
            raise NotConnectedError("connect first: async with PondClient(...) as client")

    # -- channels and hooks ----------------------------------------------------------

    def channel(self, name: str, params: Mapping[str, Any] | None = None) -> Channel:
        """The channel ``name`` (created on first use; ``params`` replace its join params)."""
        channel = self._channels.get(name)
        if channel is None:
            channel = self._channels[name] = Channel(self, name, dict(params or {}))
        elif params is not None:
            channel.params = dict(params)
        return channel

    @property
    def channels(self) -> list[Channel]:
        return list(self._channels.values())

    def on_frame(self, hook: FrameHook) -> Callable[[], None]:
        """Call ``hook(frame)`` with every frame received (before it is dispatched)."""
        self._frame_hooks.append(hook)
        return lambda: self._frame_hooks.remove(hook)

    def on_message(self, hook: Callable[[Message], object]) -> Callable[[], None]:
        """Connection-level messages (channel ``ENDPOINT``: replies of the connection
        handler, protocol errors)."""
        self._message_hooks.append(hook)
        return lambda: self._message_hooks.remove(hook)

    async def send_text(self, text: str) -> None:
        ws = self._ws
        if ws is None or self.state.value is not ConnectionState.CONNECTED:
            raise NotConnectedError(f"not connected (the client is {self.state.value})")
        try:
            await ws.send(text)
        except ConnectionClosed as exc:
            raise NotConnectedError(f"the connection closed while sending: {exc}") from None

    # -- connecting --------------------------------------------------------------------

    async def _open(self) -> ClientConnection:
        """Connect and read the CONNECTION frame, or raise a :class:`ConnectError`."""
        options = self.options
        try:
            async with asyncio.timeout(options.connect_timeout):
                ws = await connect(
                    self.url,
                    additional_headers=self.headers,
                    open_timeout=None,
                    ping_interval=options.ping_interval,
                    ping_timeout=options.ping_timeout,
                    close_timeout=options.close_timeout,
                    max_size=options.max_message_size,
                )
                try:
                    first = await ws.recv()
                except BaseException:
                    ws.transport.abort()
                    raise
        except InvalidStatus as exc:
            raise self._refusal(exc) from None
        except TimeoutError:
            raise ConnectError(
                f"{self.url}: no connection in {options.connect_timeout} s"
            ) from None
        except (OSError, InvalidHandshake, InvalidURI, ConnectionClosed) as exc:
            raise ConnectError(f"{self.url}: {exc or type(exc).__name__}") from exc
        frame = decode_frame(first)
        if frame is None or (frame.action, frame.event) != ("CONNECT", "CONNECTION"):
            ws.transport.abort()
            raise ConnectError(f"{self.url}: not a PondSocket server (first frame {first!r:.100})")
        self.connection_id = str(frame.payload.get("connectionId", ""))
        self._ws = ws
        self.state.set(ConnectionState.CONNECTED)
        self._hooks(frame)
        return ws

    def _refusal(self, exc: InvalidStatus) -> ConnectError:
        response = exc.response
        body = response.body.decode("utf-8", "replace") if response.body else ""
        if 400 <= response.status_code < 500:
            return HandshakeRefusedError(response.status_code, response.reason_phrase, body)
        return ConnectError(f"{self.url}: HTTP {response.status_code} {response.reason_phrase}")

    async def _run(self, ws: ClientConnection) -> None:
        """Read frames; on a lost connection, back off and reconnect until closed."""
        try:
            while True:
                await self._read(ws)
                self._lost()
                if self.state.value in _FINAL:
                    return
                if not self.options.reconnect:
                    self._finish(ConnectionState.FAILED, ConnectError("the connection was lost"))
                    return
                ws = await self._reconnect()
                await self._rejoin()
        except ClientError as exc:
            self._finish(ConnectionState.FAILED, exc)

    async def _reconnect(self) -> ClientConnection:
        self.state.set(ConnectionState.RECONNECTING)
        attempt = 0
        while True:
            delay = self.options.backoff(attempt)
            log.info("connection lost; reconnecting in %.2f s (attempt %d)", delay, attempt + 1)
            await asyncio.sleep(delay)
            try:
                ws = await self._open()
            except HandshakeRefusedError:
                raise
            except ConnectError as exc:
                attempt += 1
                if self.options.max_attempts is not None and attempt >= self.options.max_attempts:
                    raise ReconnectFailedError(
                        f"gave up reconnecting to {self.url} after {attempt} attempts: {exc}"
                    ) from exc
                continue
            self.reconnects += 1
            return ws

    async def _rejoin(self) -> None:
        for channel in list(self._channels.values()):
            try:
                await channel.connected()
            except NotConnectedError:
                return  # lost again: the read loop sees it and reconnects

    async def _read(self, ws: ClientConnection) -> None:
        try:
            async for raw in ws:
                frame = decode_frame(raw)
                if frame is None:
                    log.warning("ignored a frame that is not a PondSocket frame: %.200r", raw)
                    continue
                self._hooks(frame)
                self._dispatch(frame)
        except ConnectionClosed:
            pass

    def _dispatch(self, frame: ServerFrame) -> None:
        channel = self._channels.get(frame.channelName)
        if channel is not None:
            channel.handle(frame)
        elif frame.channelName == ENDPOINT_CHANNEL:
            message = Message.from_frame(frame)
            for hook in list(self._message_hooks):
                self._guard(hook, message)

    def _hooks(self, frame: ServerFrame) -> None:
        for hook in list(self._frame_hooks):
            self._guard(hook, frame)

    @staticmethod
    def _guard(hook: Callable[[Any], object], value: Any) -> None:
        try:
            hook(value)
        except Exception:
            log.exception("client hook %r failed", hook)

    def _lost(self) -> None:
        self._ws = None
        for channel in list(self._channels.values()):
            channel.disconnected()

    def _finish(self, state: ConnectionState, error: ClientError | None) -> None:
        self.error = error
        self.state.set(state)
        reason = "client closed" if error is None else str(error)
        for channel in list(self._channels.values()):
            channel.fail(error, reason)
