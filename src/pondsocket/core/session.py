"""Inbound side of one connection: validate, rate-limit and dispatch client messages.

A transport feeds every received message to :meth:`Session.receive` and awaits it before
feeding the next, so one connection's messages are handled in arrival order; when the
connection ends it awaits :meth:`Session.close`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pondsocket.core.contexts import Decision, EventContext, JoinContext
from pondsocket.core.flow import Backlogged, current_sender, hold_back
from pondsocket.core.invoke import call_handler, run_chain
from pondsocket.core.options import OverflowPolicy
from pondsocket.core.outlet import CloseCode
from pondsocket.core.ratelog import FailureLog
from pondsocket.core.user import Connection, Member
from pondsocket.errors import HandlerError
from pondsocket.wire.codec import (
    ApplicationPing,
    DecodeError,
    decode_client_message,
    encode_frame,
    error_payload,
    protocol_error_frame,
)
from pondsocket.wire.messages import (
    EVENT_ACKNOWLEDGE,
    EVENT_EXIT_ACKNOWLEDGE,
    EVENT_HANDLER_ERROR,
    EVENT_HANDLER_NOT_FOUND,
    EVENT_UNAUTHORIZED,
    ClientMessage,
    ErrorCode,
    ServerAction,
)

if TYPE_CHECKING:
    from pondsocket.core.endpoint import Endpoint

log = logging.getLogger("pondsocket.session")
_failures = FailureLog(log)  # clients can make a handler raise at will: bound the lines

UNDECIDED_JOIN = "Join handler completed without accepting or declining the request"
INTERNAL_ERROR = "Internal server error"


class _TokenBucket:
    __slots__ = ("_burst", "_clock", "_rate", "_stamp", "_tokens")

    def __init__(self, rate: float, burst: int, clock: Callable[[], float]) -> None:
        self._rate, self._burst, self._clock = rate, float(burst), clock
        self._tokens = float(burst)
        self._stamp = clock()

    def take(self) -> bool:
        now = self._clock()
        self._tokens = min(self._burst, self._tokens + (now - self._stamp) * self._rate)
        self._stamp = now
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return True


class Session:
    def __init__(
        self,
        endpoint: Endpoint,
        connection: Connection,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._endpoint = endpoint
        self.connection = connection
        options = endpoint.options
        self._max_size = options.max_message_size
        self._bucket = (
            _TokenBucket(options.rate_limit, options.rate_burst, clock)
            if options.rate_limit is not None
            else None
        )
        self._join_bucket = (
            _TokenBucket(options.join_rate_limit, options.join_rate_burst, clock)
            if options.join_rate_limit is not None
            else None
        )
        self._max_channels = options.max_channels_per_connection
        self._metrics = endpoint.metrics
        self._stuck_timeout = options.outbox_stuck_timeout
        self._close_stuck = options.overflow_policy is OverflowPolicy.CLOSE
        # Recipients above their soft watermark after our last message (core/flow.py).
        self._held: set[Backlogged] | None = None

    @property
    def connection_id(self) -> str:
        return self.connection.id

    async def receive(self, data: bytes | str) -> None:
        """Handle one text message from the client."""
        self._metrics.messages_received += 1
        size = len(data) if isinstance(data, bytes) or data.isascii() else len(data.encode())
        if size > self._max_size:
            self._metrics.messages_too_large += 1
            self._protocol_error(
                ErrorCode.MESSAGE_TOO_LARGE,
                f"Message of {size} bytes exceeds the limit of {self._max_size} bytes",
                413,
            )
            return
        decoded = decode_client_message(data)
        if isinstance(decoded, ApplicationPing):
            self._metrics.received_pings += 1
            return  # the JS client's watchdog ping: answering would only be noise
        if self._bucket is not None and not self._bucket.take():
            self._metrics.rate_limited += 1
            request_id = decoded.requestId if isinstance(decoded, ClientMessage) else None
            channel = decoded.channelName if isinstance(decoded, ClientMessage) else None
            self._protocol_error(
                ErrorCode.RATE_LIMITED, "Too many messages; slow down", 429, request_id, channel
            )
            return
        if isinstance(decoded, DecodeError):
            if decoded.code is ErrorCode.INVALID_UTF8:
                self.connection.outlet.close(CloseCode.INVALID_DATA, decoded.message)
            else:
                self._send_error(decoded)
            return
        # Backpressure: a client flooding faster than the cluster can publish waits here
        # (and TCP slows it down) instead of making the node drop envelopes.
        await self._endpoint.relay.wait_for_room()
        if self._endpoint.recorder is not None:
            await self._endpoint.recorder.wait_for_room()
        token = current_sender.set(self)
        try:
            if decoded.action == "JOIN_CHANNEL":
                self._metrics.received_joins += 1
                await self._join(decoded)
            elif decoded.action == "BROADCAST":
                self._metrics.received_broadcasts += 1
                await self._event(decoded)
            else:
                self._metrics.received_leaves += 1
                self._leave(decoded)
        finally:
            current_sender.reset(token)
        if self._held is not None:
            # Flow control: what we sent sits in queues above their soft watermark. Our
            # next message is not read until they drain (or a stuck one is closed).
            held, self._held = self._held, None
            if await hold_back(held, self._stuck_timeout, self._close_stuck, self._stuck):
                self._metrics.flow_waits += 1

    def held_back_by(self, outlet: Backlogged) -> None:
        """An outlet got one of our frames while above its soft watermark (core/flow.py)."""
        if self._held is None:
            self._held = {outlet}
        else:
            self._held.add(outlet)

    def _stuck(self) -> None:
        self._metrics.stuck_closes += 1

    def receive_binary(self) -> None:
        self._metrics.messages_received += 1
        self._metrics.received_binary += 1
        self._protocol_error(
            ErrorCode.INVALID_MESSAGE, "Binary frames are not supported; send JSON text", 400
        )

    async def close(self) -> None:
        """The connection has ended: leave every channel (reason ``connection_closed``)."""
        if self.connection.closed:
            return
        self.connection.closed = True
        for channel in list(self.connection.channels.values()):
            if channel.has_user(self.connection.id):
                channel.remove_user(self.connection.id, "connection_closed")
        self._endpoint.forget(self.connection)

    # -- errors --------------------------------------------------------------

    def _protocol_error(
        self,
        code: ErrorCode,
        message: str,
        status: int,
        request_id: str | None = None,
        channel_name: str | None = None,
    ) -> None:
        self._send_error(DecodeError(code, message, status, request_id, channel_name))

    def _send_error(self, error: DecodeError) -> None:
        self._metrics.protocol_errors += 1
        self.connection.outlet.send(protocol_error_frame(error))

    def _not_a_member(self, msg: ClientMessage) -> None:
        self._protocol_error(
            ErrorCode.NOT_A_MEMBER,
            f"Not a member of channel {msg.channelName}",
            404,
            msg.requestId,
            msg.channelName,
        )

    def _send(self, action: ServerAction, event: str, msg: ClientMessage, payload: Any) -> None:
        self.connection.outlet.send(
            encode_frame(action, event, msg.channelName, msg.requestId, payload)
        )

    def _refuse_join(self, msg: ClientMessage, code: ErrorCode, message: str, status: int) -> None:
        # SYSTEM/UNAUTHORIZED is the one form both published clients decline on: npm 0.0.32
        # looks only at the event, PyPI 0.0.6 only at SYSTEM + UNAUTHORIZED (docs/protocol.md).
        self._send(
            ServerAction.SYSTEM, EVENT_UNAUTHORIZED, msg, error_payload(code, message, status)
        )

    def _event_error(self, msg: ClientMessage, event: str, message: str, status: int) -> None:
        payload = {"message": message, "code": status, "status": status}
        self._send(ServerAction.ERROR, event, msg, payload)

    # -- dispatch ------------------------------------------------------------

    async def _join(self, msg: ClientMessage) -> None:
        connection, name = self.connection, msg.channelName
        if name in connection.channels:
            # A duplicate join must not duplicate membership; re-ACK so the client settles.
            self._send(ServerAction.SYSTEM, EVENT_ACKNOWLEDGE, msg, {})
            return
        if self._max_channels is not None and len(connection.channels) >= self._max_channels:
            self._metrics.joins_limited += 1
            message = f"Already in {self._max_channels} channels, the most a connection may join"
            self._refuse_join(msg, ErrorCode.TOO_MANY_CHANNELS, message, 429)
            return
        if self._join_bucket is not None and not self._join_bucket.take():
            self._metrics.joins_limited += 1
            self._refuse_join(msg, ErrorCode.RATE_LIMITED, "Too many joins; slow down", 429)
            return
        found = self._endpoint.find_lobby(name)
        if found is None:
            self._refuse_join(msg, ErrorCode.CHANNEL_NOT_FOUND, f"No channel matches {name}", 404)
            return
        lobby, route = found
        channel = self._endpoint.get_or_create_channel(name, lobby)
        member = Member(connection, dict(connection.assigns))

        def admit() -> None:
            if connection.closed:
                return  # the socket went away while the handler ran
            channel.add_member(member)
            self._send(
                ServerAction.SYSTEM, EVENT_ACKNOWLEDGE, msg, {}
            )  # first frame of the channel
            if channel.recorded is not None:  # history channels: recover, then signal
                channel.recorded.catch_up(member.id, msg.payload)

        ctx = JoinContext(channel, route, msg.payload, member, msg.requestId, admit)
        channel.begin_join()
        answered = False
        try:
            await run_chain(ctx, lobby.middleware, lobby.join_handler)
        except HandlerError as exc:
            answered = self._join_failed(ctx, msg, exc.status, exc.message, exc)
        except Exception as exc:
            answered = self._join_failed(ctx, msg, 500, INTERNAL_ERROR, exc)
        finally:
            channel.end_join()
        if answered:
            return
        if ctx.decision is Decision.PENDING:
            self._metrics.joins_declined += 1
            self._refuse_join(msg, ErrorCode.UNAUTHORIZED_JOIN_REQUEST, UNDECIDED_JOIN, 500)
        elif ctx.decision is Decision.DECLINED:
            self._metrics.joins_declined += 1
            self._refuse_join(
                msg, ErrorCode.UNAUTHORIZED_JOIN_REQUEST, ctx.decline_message, ctx.decline_status
            )

    def _join_failed(
        self, ctx: JoinContext, msg: ClientMessage, status: int, message: str, exc: Exception
    ) -> bool:
        """Answer a join whose handler raised; ``True`` if the refusal was sent here."""
        if not isinstance(exc, HandlerError):
            # Keyed by the handler, not the channel name: a client picks names at will.
            _failures.error(ctx.channel.lobby, exc, "join handler for %s failed", msg.channelName)
            self._metrics.handler_errors += 1
            self._metrics.recent_errors.record("join handler", msg.channelName, exc)
        if ctx.decision is not Decision.PENDING:
            return False  # already accepted (the ACK went out) or declined (answered below)
        self._refuse_join(msg, ErrorCode.CHANNEL_ERROR, message, status)
        return True

    async def _event(self, msg: ClientMessage) -> None:
        channel = self.connection.channels.get(msg.channelName)
        if channel is None:
            self._not_a_member(msg)
            return
        found = channel.lobby.find_event_handler(msg.event)
        if found is None:
            self._event_error(
                msg, EVENT_HANDLER_NOT_FOUND, f"No handler for event {msg.event}", 404
            )
            return
        handler, route = found
        ctx = EventContext(
            channel, msg.event, route, msg.payload, self.connection.id, msg.requestId
        )
        started = time.perf_counter()
        try:
            await call_handler(handler, ctx)
        except HandlerError as exc:
            self._event_error(msg, EVENT_HANDLER_ERROR, exc.message, exc.status)
        except Exception as exc:
            _failures.error(
                handler, exc, "handler for event %r in %s failed", msg.event, msg.channelName
            )
            self._metrics.handler_errors += 1
            where = f"{msg.channelName} event {msg.event!r}"
            self._metrics.recent_errors.record("event handler", where, exc)
            self._event_error(msg, EVENT_HANDLER_ERROR, INTERNAL_ERROR, 500)
        finally:
            self._metrics.handler_latency.observe(time.perf_counter() - started)

    def _leave(self, msg: ClientMessage) -> None:
        channel = self.connection.channels.get(msg.channelName)
        if channel is None:
            self._not_a_member(msg)
            return
        channel.remove_user(self.connection.id, "explicit_leave")
        # Go and upstream Python acknowledge a leave; the PyPI client and ported apps expect it.
        self._send(ServerAction.SYSTEM, EVENT_EXIT_ACKNOWLEDGE, msg, {})
