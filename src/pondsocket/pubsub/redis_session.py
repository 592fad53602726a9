"""The subscriber side of the Redis backend: one dedicated connection (one per shard in
sharded mode), read by one task that reconnects with jittered back-off and replays every
subscription. redis-py's own PubSub reconnects and resubscribes silently inside
``get_message()``; here each outage must be seen (``BusState``), so the session drives a
plain redis-py :class:`~redis.asyncio.connection.Connection` itself: no retries inside
redis-py, no implicit reconnects, no health-check reads racing the reader."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import enum
import logging
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, cast

from redis.asyncio import RedisCluster
from redis.asyncio.connection import AbstractConnection
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff, NoBackoff
from redis.crc import key_slot
from redis.exceptions import AskError, MovedError, RedisClusterException, RedisError
from redis.exceptions import ConnectionError as RedisConnectionError

from pondsocket.pubsub.redis_support import CONFIRMATIONS, UNSUBSCRIBED, Client, Entry, Kind

if TYPE_CHECKING:
    from pondsocket.pubsub.redis import RedisPubSub

log = logging.getLogger("pondsocket.pubsub.redis")

Target = tuple[type[AbstractConnection], dict[str, Any]]
TargetFactory = Callable[[int], Target]
"""Where to connect on the n-th consecutive attempt: a connection class and its kwargs."""

CHUNK = 500  # names per SUBSCRIBE command when replaying

# Keys that tie a connection to a pool, a cluster or redis-py's own retry/health logic.
_DROPPED_KWARGS = ("retry", "retry_on_error", "retry_on_timeout", "redis_connect_func")
_DROPPED_PREFIXES = ("maint", "orig_", "oss_cluster_maint", "himport", "event_dispatcher")


def subscriber_kwargs(kwargs: dict[str, Any], connect_timeout: float) -> dict[str, Any]:
    """The kwargs of a dedicated subscriber connection, derived from a pool's or a cluster
    node's (host, port, credentials, TLS, db...): RESP2 and bytes (pub/sub pushes are plain
    arrays), no retries or health checks inside redis-py (the session does both), and
    bounded connect/handshake/write timeouts."""
    out = {
        key: value
        for key, value in kwargs.items()
        if key not in _DROPPED_KWARGS and not key.startswith(_DROPPED_PREFIXES)
    }
    out.update(
        protocol=2,
        decode_responses=False,
        retry=Retry(NoBackoff(), 0),
        health_check_interval=0,
        socket_connect_timeout=out.get("socket_connect_timeout") or connect_timeout,
        socket_timeout=out.get("socket_timeout") or connect_timeout,
    )
    out.setdefault("client_name", None)
    if not out["client_name"]:
        out["client_name"] = "pondsocket-subscriber"
    return out


def classic_target(client: Client, timeout: float) -> TargetFactory:
    """Where the classic (SUBSCRIBE/PSUBSCRIBE) subscriber connects."""
    if isinstance(client, RedisCluster):

        def cluster_node(attempt: int) -> Target:
            # Classic pub/sub reaches every node of a cluster: any node will do. Start with
            # the default node and move on to the next one after each failure.
            default = client.get_default_node()
            if default is None:
                raise RedisConnectionError("no Redis Cluster node is known")
            nodes = [default, *(n for n in client.get_nodes() if n is not default)]
            node = nodes[attempt % len(nodes)]
            return node.connection_class, subscriber_kwargs(node.connection_kwargs, timeout)

        return cluster_node
    pool = client.connection_pool
    target: Target = (pool.connection_class, subscriber_kwargs(pool.connection_kwargs, timeout))
    return lambda attempt: target


def shard_target(client: Client, name: str, timeout: float) -> TargetFactory:
    """Where the sharded subscriber of cluster node ``name`` connects."""

    def shard_node(attempt: int) -> Target:
        assert isinstance(client, RedisCluster)
        node = client.get_node(node_name=name)
        if node is None:
            raise TopologyChanged(f"{name} is no longer a cluster node")
        return node.connection_class, subscriber_kwargs(node.connection_kwargs, timeout)

    return shard_node


class HealthCheckFailed(RedisError):
    """The subscriber connection did not answer a PING in time (half-open link)."""


class TopologyChanged(RedisError):
    """A shard channel moved to another node (MOVED, or Redis dropped the subscription)."""


class State(enum.Enum):
    CONNECTING = "connecting"  # first attempt, never connected yet
    LIVE = "live"
    FAILED = "failed"  # lost; retrying
    CLOSED = "closed"


class Session:
    """One subscriber connection and its reader task."""

    def __init__(self, owner: RedisPubSub, name: str, target: TargetFactory) -> None:
        self.owner = owner
        self.name = name
        self.state = State.CONNECTING
        self.restored = False
        self.conn: AbstractConnection | None = None
        self._target = target
        self._lock = asyncio.Lock()
        self._settled = asyncio.Event()
        self._waiters: dict[tuple[Kind, bytes], collections.deque[asyncio.Future[bool]]] = {}
        self._unsubscribing: collections.Counter[tuple[Kind, bytes]] = collections.Counter()
        self._generation = 0
        self._failures = 0
        self._backoff = ExponentialWithJitterBackoff(
            base=owner.options.backoff_base, cap=owner.options.backoff_cap
        )
        self._task: asyncio.Task[None] | None = None
        self.last_error: BaseException | None = None
        """Why the last connection ended or failed to open (for a failed start)."""

    # -- lifecycle -----------------------------------------------------------

    def start(self, delay: float = 0.0) -> None:
        self._task = asyncio.get_running_loop().create_task(
            self._run(delay), name=f"pondsocket-redis-reader:{self.name}"
        )
        self._task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        """The safety net: a reader task must never end silently while we are open."""
        if task.cancelled() or self.state is State.CLOSED:
            return
        exc = task.exception()
        if exc is None:
            return  # stopped on purpose (a shard session whose channels all moved away)
        self.owner.stats.reader_restarts += 1
        log.error("redis subscriber reader %s died; restarting it", self.name, exc_info=exc)
        self._lost(exc, crashed=False)
        self.start(delay=self.owner.options.backoff_cap)

    async def wait_settled(self) -> None:
        """Wait until the first connection attempt succeeded or failed."""
        await self._settled.wait()

    async def close(self) -> None:
        self.state = State.CLOSED
        self._settled.set()
        self._resolve_waiters()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        conn, self.conn = self.conn, None
        if conn is not None:
            await conn.disconnect(nowait=True)

    # -- the reader ----------------------------------------------------------

    async def _run(self, delay: float) -> None:
        if delay:
            await asyncio.sleep(delay)
        while self.state is not State.CLOSED:
            conn: AbstractConnection | None = None
            moved = False
            try:
                conn = await self._open()
                await self._replay(conn)
                await self._read(conn)
            except asyncio.CancelledError:
                raise
            except (TopologyChanged, MovedError, AskError) as exc:
                moved = True
                self._lost(exc, crashed=False)
            except (RedisError, RedisClusterException, OSError) as exc:  # connection, refusals
                self._lost(exc, crashed=False)
            except Exception as exc:  # a bug on the read path: restart, never die silently
                self._lost(exc, crashed=True)
            finally:
                if conn is not None:
                    await conn.disconnect(nowait=True)
            self._failures += 1
            await asyncio.sleep(self._backoff.compute(self._failures))
            if not await self.owner._before_reconnect(self, moved or self._failures > 1):
                return  # nothing left to subscribe here (sharded: channels moved away)

    async def _open(self) -> AbstractConnection:
        connection_class, kwargs = self._target(self._failures)
        conn = connection_class(**kwargs)
        try:
            # Any: connect() is untyped in some redis-py releases and typed in others
            await cast(Any, conn).connect()
        except BaseException:
            await conn.disconnect(nowait=True)
            raise
        return conn

    async def _replay(self, conn: AbstractConnection) -> None:
        """Subscribe to everything this session holds, then go live."""
        async with self._lock:
            self.conn = conn
            self._generation += 1
            entries = self.owner._entries_of(self)
            futures = await self._subscribe(conn, entries)
            self.state = State.LIVE
            self._settled.set()
        generation, remaining = self._generation, len(futures)
        if remaining == 0:
            self._on_restored()
            return

        def confirmed(future: asyncio.Future[bool]) -> None:
            nonlocal remaining
            if future.cancelled() or not future.result() or generation != self._generation:
                return
            remaining -= 1
            if remaining == 0:
                self._on_restored()

        for future in futures:
            future.add_done_callback(confirmed)

    def _on_restored(self) -> None:
        self._failures = 0
        self.restored = True
        self.owner._session_restored(self)

    async def _read(self, conn: AbstractConnection) -> None:
        loop = asyncio.get_running_loop()
        interval = self.owner.options.health_check_interval
        poll = min(1.0, interval / 2) if interval else 1.0
        last_data, ping_sent = loop.time(), 0.0
        while True:
            response = await conn.read_response(timeout=poll, push_request=True)
            now = loop.time()
            if response is None:  # nothing within `poll`: maybe time for a health check
                if not interval:
                    continue
                if not ping_sent and now - last_data >= interval:
                    await self._send(conn, [("PING",)])
                    ping_sent = now
                elif ping_sent and now - ping_sent >= interval:
                    self.owner.stats.health_check_failures += 1
                    raise HealthCheckFailed(
                        f"no answer to PING within {interval:g} s from {self.name}"
                    )
                continue
            last_data, ping_sent = now, 0.0
            self._handle(response)

    def _handle(self, response: Any) -> None:
        if not isinstance(response, list) or not response:
            return  # PONG outside subscribed mode
        kind = response[0]
        if kind == b"message":
            self.owner._dispatch(Kind.CHANNEL, response[1], response[1], response[2])
        elif kind == b"pmessage":
            self.owner._dispatch(Kind.PATTERN, response[1], response[2], response[3])
        elif kind == b"smessage":
            self.owner._dispatch(Kind.SHARD, response[1], response[1], response[2])
        elif kind in CONFIRMATIONS:
            waiters = self._waiters.get((CONFIRMATIONS[kind], response[1]))
            if waiters:
                future = waiters.popleft()
                if not future.done():
                    future.set_result(True)
        elif kind in UNSUBSCRIBED:
            key = (UNSUBSCRIBED[kind], response[1])
            if self._unsubscribing[key] > 0:
                self._unsubscribing[key] -= 1
            elif key[0] is Kind.SHARD and self.owner._holds(self, *key):
                # Redis drops shard subscriptions of a slot that moved to another node.
                raise TopologyChanged(f"shard channel {response[1]!r} left {self.name}")

    def _lost(self, exc: BaseException, *, crashed: bool) -> None:
        if self.state is State.CLOSED:
            return
        was_live = self.state is State.LIVE
        self.last_error = exc
        self.conn = None
        self.state = State.FAILED
        self.restored = False
        self._generation += 1
        self._resolve_waiters()
        self._settled.set()
        self.owner._session_lost(self, exc, crashed=crashed, was_live=was_live)

    def _resolve_waiters(self) -> None:
        for waiters in self._waiters.values():
            for future in waiters:
                if not future.done():
                    future.set_result(False)
        self._waiters.clear()
        self._unsubscribing.clear()

    # -- commands ------------------------------------------------------------

    async def _send(self, conn: AbstractConnection, commands: Iterable[tuple[Any, ...]]) -> None:
        for command in commands:
            # Never write to a connection the reader has given up on: redis-py would
            # silently reconnect it and subscribe on a connection nobody reads.
            if conn is not self.conn or not conn.is_connected:
                return
            await conn.send_command(*command, check_health=False)

    async def _subscribe(
        self, conn: AbstractConnection, entries: Iterable[Entry]
    ) -> list[asyncio.Future[bool]]:
        loop = asyncio.get_running_loop()
        futures: list[asyncio.Future[bool]] = []
        groups: dict[tuple[Kind, int], list[bytes]] = collections.defaultdict(list)
        for entry in entries:
            future: asyncio.Future[bool] = loop.create_future()
            self._waiters.setdefault((entry.kind, entry.wire), collections.deque()).append(future)
            entry.ready = future
            futures.append(future)
            # SSUBSCRIBE takes the channels of one slot only (CROSSSLOT otherwise).
            slot = key_slot(entry.wire) if entry.kind is Kind.SHARD else 0
            groups[(entry.kind, slot)].append(entry.wire)
        commands = [
            (kind.subscribe, *names[i : i + CHUNK])
            for (kind, _), names in groups.items()
            for i in range(0, len(names), CHUNK)
        ]
        await self._send(conn, commands)
        return futures

    async def add(self, entries: list[Entry]) -> None:
        """Subscribe on the broker now if live; otherwise the next replay does it."""
        async with self._lock:
            conn = self.conn
            if self.state is not State.LIVE or conn is None:
                return
            with contextlib.suppress(RedisError, OSError):  # the reader sees it too
                await self._subscribe(conn, entries)

    async def remove(self, entry: Entry) -> None:
        async with self._lock:
            conn = self.conn
            if self.state is not State.LIVE or conn is None:
                return
            key = (entry.kind, entry.wire)
            self._unsubscribing[key] += 1
            with contextlib.suppress(RedisError, OSError):
                await self._send(conn, [(entry.kind.unsubscribe, entry.wire)])
