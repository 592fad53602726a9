"""Redis PubSub backend (``pip install 'pondsocket-cluster[redis]'``), on redis-py's asyncio client.

    bus = await RedisPubSub.connect("redis://127.0.0.1:6379")
    pond = PondSocket(pubsub=bus)

* Subscriptions: exact topics use SUBSCRIBE (SSUBSCRIBE with ``sharded=True`` on Redis
  Cluster), ``prefix.*`` patterns PSUBSCRIBE with the prefix's glob characters escaped.
  One dedicated subscriber connection per node (per shard when sharded), read by one task;
  handlers run in their own tasks behind bounded queues.
* Publishing: ``publish()`` puts the message in a bounded outbox and returns; one flusher
  task sends the outbox in pipelines (no round trip per message). A full outbox makes
  ``publish()`` wait up to ``publish_timeout``, then raise :class:`PubSubUnavailableError`.
* Outages: the subscriber reconnects for ever with jittered back-off, restores every
  subscription, and reports ``BusState.DISCONNECTED`` / ``BusState.RECONNECTED``.
  Messages published meanwhile wait in the outbox and go out once the subscriptions are
  back.

Options, guarantees and measurements: ``docs/pubsub/redis.md``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping
from typing import Any

from redis.asyncio import RedisCluster, SSLConnection
from redis.exceptions import RedisClusterException

from pondsocket.errors import InvalidOptionError
from pondsocket.history.redis import RedisHistory
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
from pondsocket.pubsub.failures import Cause
from pondsocket.pubsub.redis_publisher import Publisher
from pondsocket.pubsub.redis_session import Session, State, classic_target, shard_target
from pondsocket.pubsub.redis_support import (
    TRANSIENT,
    Client,
    Entry,
    Kind,
    MessageTooLargeError,
    MiB,
    Options,
    PubSubUnavailableError,
    RedisPubSubStats,
    ShardedPatternError,
    make_client,
    wire_name,
)

__all__ = [
    "MessageTooLargeError",
    "PubSubClosedError",
    "PubSubError",
    "PubSubUnavailableError",
    "RedisPubSub",
    "RedisPubSubStats",
    "ShardedPatternError",
]

log = logging.getLogger("pondsocket.pubsub.redis")

_CLASSIC = "subscriber"


class RedisPubSub(PubSub):
    """A node's link to Redis (standalone or Cluster). Create it with :meth:`connect`."""

    def __init__(self, client: Client, *, owns_client: bool, options: Options) -> None:
        self.client = client
        self.options = options
        self.stats = RedisPubSubStats()
        self.cluster = isinstance(client, RedisCluster)
        self._owns_client = owns_client
        self._prefix = options.channel_prefix.encode()
        self._entries: dict[str, Entry] = {}
        self._by_wire: dict[tuple[Kind, bytes], Entry] = {}
        self._sessions: dict[str, Session] = {}
        self._publisher = Publisher(client, options, self.stats)
        self._connected = True
        self._down_since = 0.0
        self._closed = False
        self._started = False  # until connect() returns: a failure is its exception, not a log
        self._history: RedisHistory | None = None

    def history_store(self) -> HistoryStore:
        """Channel history in this Redis, as Streams (:class:`RedisHistory`)."""
        if self._history is None:
            self._history = RedisHistory(self.client)
        return self._history

    # -- construction --------------------------------------------------------

    @classmethod
    async def connect(
        cls,
        client_or_url: Client | str,
        *,
        cluster: bool | None = None,
        sharded: bool = False,
        channel_prefix: str = "",
        max_message_size: int = MiB,
        publish_batch_size: int = 1000,
        outbox_size: int = 10_000,
        publish_timeout: float = 5.0,
        queue_size: int = 10_000,
        health_check_interval: float = 5.0,
        backoff_base: float = 0.05,
        backoff_cap: float = 1.0,
        connect_timeout: float = 5.0,
        subscribe_timeout: float = 5.0,
        close_timeout: float = 5.0,
        client_options: Mapping[str, Any] | None = None,
    ) -> RedisPubSub:
        """Connect to Redis and start the subscriber and the publisher.

        ``client_or_url`` is a ``redis.asyncio.Redis``, a ``redis.asyncio.RedisCluster``
        or a URL: ``redis://``, ``rediss://``, ``unix://``, or ``redis+cluster://host:port``
        (``rediss+cluster://``; or ``cluster=True``) for Redis Cluster. A client passed
        in stays the caller's: :meth:`close` does not close it. ``client_options`` are
        passed to ``from_url`` when a URL is given. Raises :class:`PubSubUnavailableError`
        when Redis cannot be reached within ``connect_timeout``. The other options are
        described in ``docs/pubsub/redis.md``.
        """
        options = Options(
            sharded=sharded,
            channel_prefix=channel_prefix,
            max_message_size=max_message_size,
            publish_batch_size=publish_batch_size,
            outbox_size=outbox_size,
            publish_timeout=publish_timeout,
            queue_size=queue_size,
            health_check_interval=health_check_interval,
            backoff_base=backoff_base,
            backoff_cap=backoff_cap,
            connect_timeout=connect_timeout,
            subscribe_timeout=subscribe_timeout,
            close_timeout=close_timeout,
        )
        client, owns = make_client(client_or_url, cluster, options, client_options or {})
        if sharded and not isinstance(client, RedisCluster):
            if owns:
                await client.aclose()
            raise InvalidOptionError(
                "sharded=True needs Redis Cluster (a RedisCluster or cluster URL)"
            )
        bus = cls(client, owns_client=owns, options=options)
        try:
            await bus._start()
        except BaseException:
            await bus.close()
            raise
        bus._started = True
        return bus

    async def _start(self) -> None:
        timeout = self.options.connect_timeout
        try:
            async with asyncio.timeout(timeout):
                if isinstance(self.client, RedisCluster):
                    await self.client.initialize()  # slots and nodes, before any pub/sub
                else:
                    await self.client.ping()
        except TimeoutError as exc:
            raise self._no_answer(timeout) from exc
        except TRANSIENT as exc:
            raise PubSubUnavailableError(f"cannot connect to Redis: {exc}") from exc
        self._publisher.start()
        if self.options.sharded:
            return  # one subscriber per shard, opened when a channel of that shard is wanted
        session = Session(self, _CLASSIC, classic_target(self.client, timeout))
        self._sessions[_CLASSIC] = session
        session.start()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await session.wait_settled()
        if session.state is not State.LIVE:
            error = session.last_error
            if error is None:
                raise self._no_answer(timeout)
            raise PubSubUnavailableError(
                f"the subscriber connection to Redis failed: {error}"
            ) from error

    def _no_answer(self, timeout: float) -> PubSubUnavailableError:
        pool = getattr(self.client, "connection_pool", None)
        if pool is not None and issubclass(pool.connection_class, SSLConnection):
            # A TLS client on a plain port waits for a handshake reply that never comes.
            return PubSubUnavailableError(
                f"no TLS handshake with Redis within {timeout:g} s: is its port TLS-enabled?",
                cause=Cause.TLS,
            )
        return PubSubUnavailableError(
            f"no answer from Redis within {timeout:g} s", cause=Cause.UNREACHABLE
        )

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
    def outbox_pending(self) -> int:
        """Messages accepted by ``publish()`` and not yet confirmed by Redis."""
        return self._publisher.pending

    def _check_open(self) -> None:
        if self._closed:
            raise PubSubClosedError("this RedisPubSub is closed")

    # -- subscriptions -------------------------------------------------------

    async def subscribe(self, pattern: str, handler: MessageHandler) -> Subscription:
        """Deliver messages matching ``pattern`` to ``handler``; returns once Redis has
        confirmed the subscription (at once while Redis is unreachable: the subscription
        is then made on reconnection)."""
        self._check_open()
        validate_pattern(pattern)
        kind, wire = wire_name(pattern, self.options.channel_prefix, self.options.sharded)
        entry = self._entries.get(pattern)
        if entry is None:
            entry = Entry(pattern, kind, wire)
            entry.session = await self._session_for(entry)
            self._check_open()
            existing = self._entries.get(pattern)  # another task won the race meanwhile
            if existing is None:
                self._entries[pattern] = entry
                self._by_wire[(kind, wire)] = entry
            else:
                entry = existing
        subscription = QueuedSubscription(
            pattern,
            handler,
            queue_size=self.options.queue_size,
            on_drop=self.count_drop,
            detach=self._remove_subscription,
            name="pondsocket-redis-handler",
        )
        entry.subscriptions.append(subscription)
        if len(entry.subscriptions) == 1:
            try:
                await entry.session.add([entry])
            finally:
                entry.added.set()
        await self._confirmed(entry)
        return subscription

    async def _session_for(self, entry: Entry) -> Session:
        if not self.options.sharded:
            return self._sessions[_CLASSIC]
        assert isinstance(self.client, RedisCluster)
        slot = self.client.keyslot(entry.wire)
        try:
            node = self.client.nodes_manager.get_node_from_slot(slot)
        except RedisClusterException:  # slot not covered: the topology may have changed
            with contextlib.suppress(*TRANSIENT):
                await self.client.nodes_manager.initialize()
            try:
                node = self.client.nodes_manager.get_node_from_slot(slot)
            except RedisClusterException as exc:
                raise PubSubUnavailableError(f"no cluster node serves {entry.pattern!r}") from exc
        return self._shard_session(node.name)

    def _shard_session(self, name: str) -> Session:
        session = self._sessions.get(name)
        if session is None or session.state is State.CLOSED:
            session = self._sessions[name] = Session(
                self, name, shard_target(self.client, name, self.options.connect_timeout)
            )
            session.start()
        return session

    async def _confirmed(self, entry: Entry) -> None:
        session: Session = entry.session
        try:
            async with asyncio.timeout(self.options.subscribe_timeout):
                await entry.added.wait()  # a concurrent first subscriber may still be sending
                if session.state is State.CONNECTING:
                    await session.wait_settled()
                ready = entry.ready
                if ready is not None and not ready.done():
                    await asyncio.shield(ready)
        except TimeoutError:
            log.warning(
                "Redis did not confirm the subscription to %r within %g s; it stays "
                "registered and is restored if the connection is replaced",
                entry.pattern,
                self.options.subscribe_timeout,
            )

    def count_drop(self) -> None:
        self.stats.dropped += 1

    async def _remove_subscription(self, subscription: QueuedSubscription) -> None:
        entry = self._entries.get(subscription.pattern)
        if entry is None or subscription not in entry.subscriptions:
            return
        entry.subscriptions.remove(subscription)
        if not entry.subscriptions:  # the last handler: drop the broker subscription
            self._forget(entry)
            await entry.session.remove(entry)

    def _forget(self, entry: Entry) -> None:
        del self._entries[entry.pattern]
        del self._by_wire[(entry.kind, entry.wire)]

    async def unsubscribe(self, pattern: str) -> None:
        """Drop every handler of ``pattern`` and the broker subscription."""
        self._check_open()
        entry = self._entries.get(pattern)
        if entry is None:
            return
        self._forget(entry)
        subscriptions, entry.subscriptions = entry.subscriptions, []
        await entry.session.remove(entry)
        for subscription in subscriptions:
            await subscription.stop()

    # -- called by the subscriber sessions -----------------------------------

    def _entries_of(self, session: Session) -> list[Entry]:
        return [entry for entry in self._entries.values() if entry.session is session]

    def _holds(self, session: Session, kind: Kind, wire: bytes) -> bool:
        entry = self._by_wire.get((kind, wire))
        return entry is not None and entry.session is session

    def _dispatch(self, kind: Kind, wire: bytes, channel: bytes, data: bytes) -> None:
        self.stats.received += 1
        entry = self._by_wire.get((kind, wire))
        if entry is None:
            return  # unsubscribed meanwhile
        topic = channel[len(self._prefix) :].decode("utf-8", "replace")
        for subscription in entry.subscriptions:
            subscription.offer(topic, data)

    def _session_lost(
        self, session: Session, exc: BaseException, *, crashed: bool, was_live: bool
    ) -> None:
        if was_live:
            self.stats.disconnects += 1
        if crashed:
            self.stats.reader_restarts += 1
            log.error(
                "Redis subscriber reader %s crashed; restarting it", session.name, exc_info=exc
            )
        if self._closed:
            return
        if not self._connected:
            log.debug("Redis subscriber %s: still unreachable (%s)", session.name, exc)
            return
        self._connected = False
        self._publisher.link_up.clear()
        self._down_since = time.monotonic()
        log.log(
            logging.WARNING if self._started else logging.DEBUG,  # connect() raises it
            "Redis subscriber connection %s lost (%s: %s); reconnecting",
            session.name,
            type(exc).__name__,
            exc,
        )
        self._notify(BusState.DISCONNECTED)

    def _session_restored(self, session: Session) -> None:
        self._maybe_reconnected()

    def _maybe_reconnected(self) -> None:
        if self._connected or self._closed:
            return
        if not all(s.restored for s in self._sessions.values()):
            return
        self._connected = True
        self._publisher.link_up.set()
        self.stats.reconnects += 1
        log.info(
            "Redis pubsub reconnected after %.2f s; %d subscription(s) restored",
            time.monotonic() - self._down_since,
            len(self._entries),
        )
        self._notify(BusState.RECONNECTED)

    async def _before_reconnect(self, session: Session, refresh: bool) -> bool:
        """Between two attempts: refresh the cluster map; in sharded mode move channels
        whose slot changed owner. False stops the session (nothing left on it)."""
        if self._closed:
            return False
        client = self.client
        if not isinstance(client, RedisCluster):
            return True
        if refresh:
            try:
                await client.nodes_manager.initialize()
            except TRANSIENT as exc:
                log.debug("Redis Cluster topology refresh failed: %s", exc)
        if self._closed:
            return False
        if not self.options.sharded:
            return True
        moved: dict[str, list[Entry]] = {}
        for entry in self._entries_of(session):
            try:
                node = client.nodes_manager.get_node_from_slot(client.keyslot(entry.wire))
            except RedisClusterException:
                continue  # uncovered for now: keep trying where it was
            if node.name != session.name:
                moved.setdefault(node.name, []).append(entry)
        for name, entries in moved.items():
            target = self._shard_session(name)
            for entry in entries:
                entry.session = target
            await target.add(entries)
            for entry in entries:
                entry.added.set()
        # A live target subscribes at once: wait for Redis to confirm before this session
        # can count as restored (a new target session restores them itself).
        pending = [e.ready for es in moved.values() for e in es if e.ready and not e.ready.done()]
        if pending:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.options.subscribe_timeout):
                    await asyncio.gather(*(asyncio.shield(ready) for ready in pending))
        if self._entries_of(session) or self._closed:
            return not self._closed
        session.state = State.CLOSED
        if self._sessions.get(session.name) is session:
            del self._sessions[session.name]
        self._maybe_reconnected()
        return False

    # -- publishing ----------------------------------------------------------

    async def publish(self, topic: str, data: bytes) -> None:
        """Accept ``data`` for sending to ``topic``; returns before Redis has it.

        Raises :class:`MessageTooLargeError` above ``max_message_size`` (nothing is sent)
        and :class:`PubSubUnavailableError` when the outbox stays full for
        ``publish_timeout`` seconds."""
        self._check_open()
        if not topic:
            raise InvalidOptionError("pubsub topic is empty")
        if not isinstance(data, bytes):
            data = bytes(data)
        if len(data) > self.options.max_message_size:
            raise MessageTooLargeError(topic, len(data), self.options.max_message_size)
        item = ((self.options.channel_prefix + topic).encode(), data)
        try:
            await self._publisher.put(topic, item)
        except PubSubUnavailableError:
            self._check_open()  # closed while waiting for room: say so instead
            raise

    # -- closing -------------------------------------------------------------

    async def close(self) -> None:
        """Publish what is queued (for up to ``close_timeout``), stop every task and close
        the connections this object opened. A client passed to :meth:`connect` is left
        open. Idempotent; afterwards every other call raises :class:`PubSubClosedError`."""
        if self._closed:
            return
        self._closed = True
        await self._publisher.close()
        sessions, self._sessions = list(self._sessions.values()), {}
        for session in sessions:
            await session.close()
        entries, self._entries = list(self._entries.values()), {}
        self._by_wire.clear()
        for entry in entries:
            for subscription in entry.subscriptions:
                await subscription.stop()
        if self._owns_client:
            await self.client.aclose()
