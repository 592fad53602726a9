"""NATS PubSub backend (``pip install 'pondsocket-cluster[nats]'``), on nats-py (core NATS).

    bus = await NatsPubSub.connect("nats://127.0.0.1:4222")
    pond = PondSocket(pubsub=bus)

* Subjects: topics are mapped to NATS subjects by a reversible, collision-free encoding
  (:mod:`pondsocket.pubsub.nats_subjects`): ``:`` separates tokens, other special
  characters are escaped. Exact topics are exact subjects; ``prefix.*`` patterns are
  ``...>`` wildcards, filtered on this node when the prefix ends inside a token.
* One NATS subscription per pattern, shared by its handlers (reference counted); handlers
  run in their own tasks behind bounded queues.
* Publishing: ``publish()`` hands the message to nats-py's buffered writer. While NATS is
  unreachable the client keeps up to ``pending_size`` bytes and sends them on
  reconnection; past that, ``publish()`` raises :class:`PubSubUnavailableError`.
* Outages: nats-py reconnects (for ever by default, with jittered waits) and replays the
  subscriptions; this backend reports ``BusState.DISCONNECTED`` / ``BusState.RECONNECTED``.

Options, guarantees and measurements: ``docs/pubsub/nats.md``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import nats.errors
from nats.aio.client import Client
from nats.aio.msg import Msg

from pondsocket.errors import InvalidOptionError
from pondsocket.history.nats import NatsHistory
from pondsocket.history.store import HistoryStore
from pondsocket.pubsub.base import (
    BusState,
    MessageHandler,
    PubSub,
    PubSubClosedError,
    PubSubError,
    Subscription,
    validate_pattern,
)
from pondsocket.pubsub.delivery import QueuedSubscription
from pondsocket.pubsub.failures import redact
from pondsocket.pubsub.nats_subjects import (
    SubjectCodec,
    TopicTooLongError,
    UndecodableSubjectError,
)
from pondsocket.pubsub.nats_support import (
    Entry,
    MessageTooLargeError,
    MiB,
    NatsPubSubStats,
    Options,
    PubSubUnavailableError,
    flush_in_order,
)

__all__ = [
    "MessageTooLargeError",
    "NatsPubSub",
    "NatsPubSubStats",
    "PubSubClosedError",
    "PubSubError",
    "PubSubUnavailableError",
    "TopicTooLongError",
]

log = logging.getLogger("pondsocket.pubsub.nats")

Callback = Callable[[], Awaitable[None]]
ErrorCallback = Callable[[Exception], Awaitable[None]]
_HAS_SERVER_HANDLER = "reconnect_to_server_handler" in inspect.signature(Client.connect).parameters


class NatsPubSub(PubSub):
    """A node's link to NATS. Create it with :meth:`connect`."""

    def __init__(self, client: Client, *, owns_client: bool, options: Options) -> None:
        self._history: NatsHistory | None = None
        self.client = client
        self.options = options
        self.stats = NatsPubSubStats()
        self.max_message_size = options.max_message_size or 0  # set once connected
        self._codec = SubjectCodec(options.subject_prefix)
        self._owns_client = owns_client
        self._entries: dict[str, Entry] = {}
        self._lock = asyncio.Lock()
        self._connected = True
        self._closed = False
        self._opening = False
        self._open_error: Exception | None = None
        self._down_since = 0.0
        self._rotation = 0
        self._resync: asyncio.TimerHandle | None = None
        self._last_slow_log = 0.0
        self._restore: Callable[[], None] | None = None

    # -- construction --------------------------------------------------------

    def history_store(self) -> HistoryStore:
        """Channel history in this server's JetStream (:class:`NatsHistory`; the server
        must run with JetStream, ``nats-server -js``)."""
        if self._history is None:
            self._history = NatsHistory(self.client)
        return self._history

    @classmethod
    async def connect(
        cls,
        url_or_client: str | Client,
        *,
        subject_prefix: str = "",
        max_message_size: int | None = None,
        queue_size: int = 10_000,
        max_reconnect_attempts: int = -1,
        reconnect_wait: float = 0.5,
        reconnect_jitter: float = 0.5,
        pending_size: int = 8 * MiB,
        connect_timeout: float = 5.0,
        ping_interval: float = 10.0,
        subscribe_timeout: float = 5.0,
        close_timeout: float = 5.0,
        client_options: Mapping[str, Any] | None = None,
    ) -> NatsPubSub:
        """Connect to NATS.

        ``url_or_client`` is a ``nats://`` (``tls://``, ``ws://``) URL, several of them
        separated by commas (a NATS cluster), or a connected ``nats.aio.client.Client``:
        that one stays the caller's (:meth:`close` does not close it) and its own
        reconnect and buffer settings apply; the connection options here are then unused.
        ``client_options`` go to ``Client.connect`` (credentials, TLS...). Raises
        :class:`PubSubUnavailableError` when NATS cannot be reached within
        ``connect_timeout``. Every option is described in ``docs/pubsub/nats.md``.
        """
        options = Options(
            subject_prefix=subject_prefix,
            max_message_size=max_message_size,
            queue_size=queue_size,
            max_reconnect_attempts=max_reconnect_attempts,
            reconnect_wait=reconnect_wait,
            reconnect_jitter=reconnect_jitter,
            pending_size=pending_size,
            connect_timeout=connect_timeout,
            ping_interval=ping_interval,
            subscribe_timeout=subscribe_timeout,
            close_timeout=close_timeout,
        )
        if isinstance(url_or_client, Client):
            bus = cls(url_or_client, owns_client=False, options=options)
            if not url_or_client.is_connected:
                raise PubSubUnavailableError(
                    "the nats.aio.client.Client passed in is not connected"
                )
            if url_or_client.options.get("no_echo"):
                raise InvalidOptionError(
                    "NatsPubSub needs a client without no_echo (nodes hear themselves)"
                )
            bus._chain_callbacks()
        elif isinstance(url_or_client, str):
            bus = cls(Client(), owns_client=True, options=options)
            await bus._open(url_or_client, dict(client_options or {}))
        else:
            raise TypeError(
                "NatsPubSub.connect() takes a nats.aio.client.Client or a URL, "
                f"not {type(url_or_client).__name__}"
            )
        try:
            bus._set_message_limit()
        except BaseException:
            await bus.close()
            raise
        return bus

    async def _open(self, url: str, client_options: dict[str, Any]) -> None:
        opts = self.options
        kwargs: dict[str, Any] = {
            "servers": [server.strip() for server in url.split(",") if server.strip()],
            "name": "pondsocket",
            "connect_timeout": opts.connect_timeout,
            "allow_reconnect": opts.max_reconnect_attempts != 0,
            "max_reconnect_attempts": opts.max_reconnect_attempts,
            "reconnect_time_wait": opts.reconnect_wait,
            "ping_interval": opts.ping_interval,
            "pending_size": opts.pending_size,
            "error_cb": self._on_error,
            "disconnected_cb": self._on_disconnected,
            "reconnected_cb": self._on_reconnected,
            "closed_cb": self._on_closed,
        }
        if _HAS_SERVER_HANDLER:  # nats-py >= 2.11: add jitter to the reconnect waits
            kwargs["reconnect_to_server_handler"] = self._pick_server
        kwargs.update(client_options)
        self._opening = True  # the client's retries report to _on_error: keep the last one
        try:
            async with asyncio.timeout(opts.connect_timeout):
                await self.client.connect(**kwargs)
        except (TimeoutError, OSError, nats.errors.Error) as exc:
            with contextlib.suppress(Exception):
                await self.client.close()
            self._closed = True
            cause = self._open_error if self._open_error is not None else exc
            raise PubSubUnavailableError(
                f"cannot connect to NATS at {redact(url)} within {opts.connect_timeout:g} s:"
                f" {cause!r}"
            ) from cause
        finally:
            self._opening = False

    def _set_message_limit(self) -> None:
        server_max = self.client.max_payload
        wanted = self.options.max_message_size
        if wanted is not None and wanted > server_max:
            raise InvalidOptionError(
                f"max_message_size {wanted} exceeds the server's max_payload ({server_max} "
                "bytes); raise max_payload in nats-server's configuration first"
            )
        self.max_message_size = wanted or server_max

    def _pick_server(self, servers: list[Any], info: dict[str, Any]) -> tuple[Any, float]:
        """Round robin over the pool; wait ``reconnect_wait`` before retrying a server
        that already failed, plus a random jitter so a fleet does not reconnect in step."""
        server = servers[self._rotation % len(servers)]
        self._rotation += 1
        wait = self.options.reconnect_wait if server.reconnects else 0.0
        return server, wait + random.uniform(0, self.options.reconnect_jitter)

    def _chain_callbacks(self) -> None:
        """Hook our state callbacks into a client we did not create, after its own."""
        client = self.client
        saved = (client._error_cb, client._disconnected_cb, client._reconnected_cb)

        def then(first: Callback | None, ours: Callback) -> Callback:
            async def both() -> None:
                if first is not None:
                    await first()
                await ours()

            return both

        async def errors(exc: Exception) -> None:
            await saved[0](exc)
            await self._on_error(exc)

        client._error_cb = errors
        client._disconnected_cb = then(saved[1], self._on_disconnected)
        client._reconnected_cb = then(saved[2], self._on_reconnected)

        def restore() -> None:
            client._error_cb, client._disconnected_cb, client._reconnected_cb = saved

        self._restore = restore

    # -- state ---------------------------------------------------------------

    @property
    def connected(self) -> bool:
        """False from ``DISCONNECTED`` until ``RECONNECTED``."""
        return self._connected

    @property
    def dropped(self) -> int:
        """Messages dropped because a handler's queue was full (also ``stats.dropped``)."""
        return self.stats.dropped

    @property
    def pending_bytes(self) -> int:
        """Bytes nats-py holds for sending (the outage buffer, bounded by ``pending_size``)."""
        return int(self.client.pending_data_size)

    def _check_open(self) -> None:
        if self._closed:
            raise PubSubClosedError("this NatsPubSub is closed")

    async def _on_disconnected(self) -> None:
        if self._closed or not self._connected or self._opening:
            return
        self._connected = False
        self._down_since = time.monotonic()
        self.stats.disconnects += 1
        log.warning("lost the connection to NATS; reconnecting")
        self._notify(BusState.DISCONNECTED)

    async def _on_reconnected(self) -> None:
        if self._closed:
            return
        was_down = not self._connected
        self._connected = True
        self.stats.reconnects += 1
        if was_down:
            down = time.monotonic() - self._down_since
            log.warning("reconnected to NATS after %.2f s; subscriptions restored", down)
        self._notify(BusState.RECONNECTED)

    async def _on_closed(self) -> None:
        if not self._closed and not self._opening:
            log.error("the NATS client gave up reconnecting; publish() will raise")

    async def _on_error(self, exc: Exception) -> None:
        if isinstance(exc, nats.errors.SlowConsumerError):
            self._slow_consumer(exc)
        elif self._opening:  # connect() raises in the end; its message names the last error
            self._open_error = exc
            log.debug("NATS client error while connecting: %r", exc)
        elif self._connected and not self._closed:
            log.warning("NATS client error: %r", exc)
        else:
            log.debug("NATS client error while disconnected: %r", exc)

    def _slow_consumer(self, exc: nats.errors.SlowConsumerError) -> None:
        """nats-py dropped a message for one of our subscriptions: count it, log it (once
        a second), and report RECONNECTED a second later so the cluster layer resyncs."""
        self.stats.slow_consumer += 1
        now = time.monotonic()
        if now - self._last_slow_log >= 1.0:
            self._last_slow_log = now
            log.warning("NATS client dropped messages on %r (slow consumer)", exc.subject)
        if self._resync is None and not self._closed:
            self._resync = asyncio.get_running_loop().call_later(1.0, self._resync_now)

    def _resync_now(self) -> None:
        self._resync = None
        if not self._closed and self._connected:
            self._notify(BusState.RECONNECTED)

    # -- subscriptions -------------------------------------------------------

    async def subscribe(self, pattern: str, handler: MessageHandler) -> Subscription:
        """Deliver messages matching ``pattern`` to ``handler``; returns once NATS has
        answered a PING sent after the SUB (at once while NATS is unreachable: nats-py
        makes the subscription on reconnection)."""
        self._check_open()
        validate_pattern(pattern)
        subject, filtered = self._codec.pattern(pattern)
        async with self._lock:
            self._check_open()
            entry = self._entries.get(pattern)
            new = entry is None
            if entry is None:
                prefix = pattern[:-2] if pattern.endswith(".*") else None
                entry = Entry(pattern, subject, prefix, filtered)
                try:
                    entry.sub = await self.client.subscribe(
                        subject, cb=functools.partial(self._on_message, entry)
                    )
                except nats.errors.Error as exc:
                    raise PubSubUnavailableError(
                        f"cannot subscribe to {pattern!r}: {exc!r}"
                    ) from exc
                self._entries[pattern] = entry
            subscription = QueuedSubscription(
                pattern,
                handler,
                queue_size=self.options.queue_size,
                on_drop=self.count_drop,
                detach=self._remove_subscription,
                name="pondsocket-nats-handler",
            )
            entry.handlers.append(subscription)
        if new and self.client.is_connected:
            try:
                async with asyncio.timeout(self.options.subscribe_timeout):
                    await flush_in_order(self.client)
            except (TimeoutError, nats.errors.Error) as exc:  # replayed on reconnection
                log.debug("no confirmation of the subscription to %r: %r", pattern, exc)
        return subscription

    async def _on_message(self, entry: Entry, msg: Msg) -> None:
        self.stats.received += 1
        if entry.prefix is None:
            topic = entry.pattern
        else:
            try:
                topic = self._codec.topic(msg.subject)
            except UndecodableSubjectError:
                self.stats.undecodable += 1
                log.debug("ignoring a message on %r: not an encoded topic", msg.subject)
                return
            if entry.filtered and not topic.startswith(entry.prefix):
                self.stats.filtered += 1
                return
        for subscription in entry.handlers:
            subscription.offer(topic, msg.data)

    def count_drop(self) -> None:
        self.stats.dropped += 1

    async def _remove_subscription(self, subscription: QueuedSubscription) -> None:
        async with self._lock:
            entry = self._entries.get(subscription.pattern)
            if entry is None or subscription not in entry.handlers:
                return
            entry.handlers.remove(subscription)
            if not entry.handlers:  # the last handler: leave the NATS subscription
                del self._entries[entry.pattern]
                await self._unsubscribe_entry(entry)

    async def _unsubscribe_entry(self, entry: Entry) -> None:
        if entry.sub is not None:
            with contextlib.suppress(nats.errors.Error):
                await entry.sub.unsubscribe()

    async def unsubscribe(self, pattern: str) -> None:
        """Drop every handler of ``pattern`` and its NATS subscription."""
        self._check_open()
        async with self._lock:
            entry = self._entries.pop(pattern, None)
            if entry is not None:
                await self._unsubscribe_entry(entry)
        for subscription in entry.handlers if entry is not None else ():
            await subscription.stop()

    # -- publishing ----------------------------------------------------------

    async def publish(self, topic: str, data: bytes) -> None:
        """Send ``data`` to every subscriber of a matching pattern (this node included).
        Returns once nats-py has buffered the message, not once NATS has it."""
        self._check_open()
        if len(data) > self.max_message_size:
            raise MessageTooLargeError(topic, len(data), self.max_message_size)
        subject = self._codec.subject(topic)
        try:
            await self.client.publish(subject, data)
        except nats.errors.OutboundBufferLimitError as exc:
            self.stats.publish_rejected += 1
            raise PubSubUnavailableError(
                f"NATS is unreachable and the pending buffer is full (pending_size "
                f"{self.options.pending_size} bytes): the message on {topic!r} was not sent"
            ) from exc
        except nats.errors.MaxPayloadError as exc:  # a server with a smaller max_payload
            raise MessageTooLargeError(topic, len(data), self.client.max_payload) from exc
        except (nats.errors.ConnectionClosedError, nats.errors.ConnectionDrainingError) as exc:
            self.stats.publish_rejected += 1
            raise PubSubUnavailableError(
                f"the NATS connection is closed; the message on {topic!r} was not sent"
            ) from exc
        self.stats.published += 1

    # -- shutdown ------------------------------------------------------------

    async def close(self) -> None:
        """Stop every handler and leave NATS; closes the client only if we created it.
        Messages still buffered are flushed first (within ``close_timeout``)."""
        if self._closed:
            return
        self._closed = True
        if self._resync is not None:
            self._resync.cancel()
            self._resync = None
        async with self._lock:
            entries, self._entries = list(self._entries.values()), {}
        for entry in entries:
            for subscription in entry.handlers:
                await subscription.stop()
        if self._restore is not None:
            self._restore()
        with contextlib.suppress(TimeoutError, nats.errors.Error, OSError):
            async with asyncio.timeout(self.options.close_timeout):
                if self._owns_client:
                    await self.client.close()
                else:
                    for entry in entries:
                        await self._unsubscribe_entry(entry)
        if self._owns_client and not self.client.is_closed:
            log.warning("the NATS client did not close within %g s", self.options.close_timeout)
