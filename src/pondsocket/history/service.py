"""``HistoryService``: the :class:`~pondsocket.core.history.Recorder` of a server.

It stores every broadcast of a history channel (one writer task, in order, batched per
channel), then has the channel deliver it and tells the other nodes; it puts what other
nodes recorded back in offset order (:class:`Sequencer`), fills gaps from the store, and
catches joining members up. Nothing here blocks a channel: the work runs in tasks.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Coroutine
from contextvars import Context
from typing import TYPE_CHECKING, Any

from pondsocket.core.flow import current_sender
from pondsocket.core.history import (
    INVALID,
    Position,
    Recorded,
)
from pondsocket.core.ratelog import RateLimitedLog
from pondsocket.core.relay import Recipients, Relay
from pondsocket.history.records import (
    HistoryStats,
    Pending,
    decode_record,
    replay_for,
    signal,
)
from pondsocket.history.records import finish as _finish
from pondsocket.history.sequencer import Placed, Sequencer
from pondsocket.history.store import HistoryStore, HistoryUnavailableError, Slice
from pondsocket.wire.ids import random_hex

if TYPE_CHECKING:
    from pondsocket.core.channel import Channel

log = logging.getLogger("pondsocket.history")

Spawn = Callable[[Coroutine[Any, Any, None], str], None]

QUEUE_LIMIT = 10_000
"""Broadcasts waiting to be stored; past this they are delivered live, unrecorded."""
BATCH = 512
GAP_WAIT = 0.25
"""How long an out-of-order broadcast waits for the ones before it, before the store is
asked for them (copies from different nodes may overtake each other on the broker)."""
READ_TIMEOUT = 5.0
STORE_CONCURRENCY = 32
RETRY_MAX = 2.0


class HistoryService:
    def __init__(
        self,
        relay: Callable[[], Relay],
        key_of: Callable[[Channel], str],
        spawn: Spawn,
        find_store: Callable[[], HistoryStore | None] = lambda: None,
    ) -> None:
        self._store: HistoryStore | None = None
        self._find_store: Callable[[], HistoryStore | None] | None = find_store
        self._relay = relay
        self._key_of = key_of
        self._spawn = spawn
        self.stats = HistoryStats()
        self._queue: deque[Pending] = deque()
        self._wake = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None
        self._sequencers: dict[Channel, Sequencer] = {}
        self._keys: dict[Channel, str] = {}  # the store's key of each channel, built once
        self._filling: set[Channel] = set()
        self._recoveries: dict[Channel, list[tuple[str, Position | str | None]]] = {}
        self._room = asyncio.Event()
        self._failing = False
        self._stopping = False
        # Store calls in flight at once: a client library's pool is bounded (redis-py:
        # 100 connections, and it fails rather than waits past that).
        self._slots = asyncio.Semaphore(STORE_CONCURRENCY)
        self._warn = RateLimitedLog(log)
        self._closed = False
        self._prefix = random_hex()[:12]
        self._count = 0

    def _uid(self) -> str:
        self._count += 1
        return f"{self._prefix}{self._count:x}"

    @property
    def store(self) -> HistoryStore | None:
        """Where broadcasts are kept: found on first use (the server's ``history`` store,
        else its pubsub's), unless set before."""
        if self._find_store is not None:
            self._store, self._find_store = self._find_store(), None
        return self._store

    @store.setter
    def store(self, store: HistoryStore | None) -> None:
        self._store, self._find_store = store, None

    # -- recording local broadcasts ------------------------------------------

    def record(
        self,
        channel: Channel,
        event: str,
        payload: dict[str, Any],
        recipients: Recipients,
        sender_id: str,
        request_id: str,
    ) -> None:
        config = channel.lobby.history_config
        if self.store is None or config is None or self._closed:
            self._unrecorded(channel, event, payload, recipients, sender_id, request_id)
            return
        if len(self._queue) >= QUEUE_LIMIT:
            self._warn.warning(
                "history queue full (%d broadcasts waiting for the store): delivering"
                " live without recording, recovery will report the gap",
                QUEUE_LIMIT,
            )
            self._unrecorded(channel, event, payload, recipients, sender_id, request_id)
            return
        key = self._keys.get(channel)
        if key is None:
            key = self._key_of(channel)
            if not channel.closed:  # a closed stand-in (Endpoint.broadcast) is used once
                self._keys[channel] = key
        self._queue.append(
            Pending(
                channel,
                key,
                config,
                event,
                payload,
                recipients,
                sender_id,
                request_id,
                self._uid(),
                current_sender.get(),
            )
        )
        self._wake.set()
        if self._writer is None:
            # A context of its own: it must not inherit the first sender's (core/flow.py).
            self._writer = asyncio.get_running_loop().create_task(
                self._write_loop(), name="pondsocket-history-writer", context=Context()
            )

    def _unrecorded(
        self,
        channel: Channel,
        event: str,
        payload: dict[str, Any],
        recipients: Recipients,
        sender_id: str,
        request_id: str,
    ) -> None:
        self.stats.unrecorded += 1
        assert channel.recorded is not None
        channel.recorded.deliver_unrecorded(event, payload, recipients, sender_id, request_id)

    async def _write_loop(self) -> None:
        while not self._closed:
            await self._wake.wait()
            self._wake.clear()
            while self._queue:
                batch = [self._queue.popleft() for _ in range(min(BATCH, len(self._queue)))]
                await self._store_batch(batch)
                if len(self._queue) * 4 < QUEUE_LIMIT:
                    self._room.set()

    async def wait_for_room(self) -> None:
        """Backpressure for client input: while more than half of :data:`QUEUE_LIMIT`
        broadcasts wait for a store that answers but does not keep up, wait until a
        quarter is left, so a fast sender is slowed down (TCP) rather than pushing the
        channel into unrecorded delivery. While the store fails, nobody waits: the queue
        then fills and overflows into live, unrecorded delivery (counted)."""
        while (
            len(self._queue) * 2 >= QUEUE_LIMIT
            and not self._failing
            and not self._closed
            and not self._stopping
        ):
            self._room.clear()
            await self._room.wait()

    async def _store_batch(self, batch: list[Pending]) -> None:
        groups: dict[str, list[Pending]] = {}
        for item in batch:
            groups.setdefault(item.key, []).append(item)
        delay = 0.05
        todo = list(groups.values())
        while todo:
            if len(todo) == 1:  # the usual case: one busy channel, no task to spawn
                results = [await self._append(todo[0])]
            else:
                results = await asyncio.gather(*(self._append(g) for g in todo))
            for group, result in zip(todo, results, strict=True):
                if result is not None:
                    self._stored(group, *result)
            todo = [g for g, r in zip(todo, results, strict=True) if r is None]
            if todo:
                if self._closed:
                    for group in todo:  # shutting down: deliver what the store never took
                        for p in group:
                            self._unrecorded(
                                p.channel,
                                p.event,
                                p.payload,
                                p.recipients,
                                p.sender_id,
                                p.request_id,
                            )
                    return
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX)

    async def _append(self, group: list[Pending]) -> tuple[str, list[int]] | None:
        assert self.store is not None
        config = group[0].config
        try:
            async with self._slots, asyncio.timeout(READ_TIMEOUT + 0.01 * len(group)):
                stored = await self.store.append(
                    group[0].key,
                    [p.encode() for p in group],
                    size=config.size,
                    ttl=config.ttl,
                    meta_ttl=config.meta_ttl,
                )
            self._failing = False
            return stored
        except (HistoryUnavailableError, TimeoutError) as exc:
            self._failing = True
            self._room.set()  # nobody waits for a store that fails
            self.stats.store_errors += 1
            self._warn.warning("history store unavailable, retrying: %s", exc or "timed out")
            return None

    def _stored(self, group: list[Pending], epoch: str, offsets: list[int]) -> None:
        relay = self._relay()
        self.stats.recorded += len(group)
        for offset, p in zip(offsets, group, strict=True):
            recorded = Recorded(
                offset, epoch, p.event, p.payload, p.recipients, p.sender_id, p.request_id
            )
            relay.message_sent(
                p.channel,
                p.event,
                recorded.positioned(),
                p.recipients,
                p.sender_id,
                p.request_id,
            )
            if p.channel.closed:
                continue
            if p.sender is None:  # the app's own broadcast (this task's context has none)
                self._place(p.channel, recorded)
                continue
            # Deliveries count against the client that sent it, as a live broadcast's
            # would: flow control holds that client back if recipients fall behind.
            token = current_sender.set(p.sender)
            try:
                self._place(p.channel, recorded)
            finally:
                current_sender.reset(token)

    # -- ordering ------------------------------------------------------------

    def received(self, channel: Channel, position: Position, recorded: Recorded) -> None:
        self._place(channel, recorded)

    def _sequencer(self, channel: Channel) -> Sequencer:
        sequencer = self._sequencers.get(channel)
        if sequencer is None:
            config = channel.lobby.history_config
            limit = config.size if config is not None else 100
            sequencer = self._sequencers[channel] = Sequencer(max(limit, 64))
        return sequencer

    def _place(self, channel: Channel, recorded: Recorded) -> None:
        sequencer = self._sequencer(channel)
        self._apply(channel, sequencer, sequencer.offer(recorded))

    def _apply(self, channel: Channel, sequencer: Sequencer, placed: Placed) -> None:
        if placed.reset:
            channel.continuity_lost("epoch_changed", sequencer.epoch, reset=True)
        if placed.skipped:
            self.stats.gaps_lost += 1
            self._warn.warning(
                "history: broadcasts of %s before offset %s were lost (the store no longer"
                " has them); members were sent continuity_lost",
                channel.name,
                placed.ready[0].offset if placed.ready else "?",
            )
            channel.continuity_lost("gap", sequencer.epoch)
        stream = channel.recorded
        if stream is not None:
            for recorded in placed.ready:
                stream.deliver(recorded)
        if placed.waiting and channel not in self._filling:
            self._filling.add(channel)
            self._spawn(self._fill_later(channel), "history gap fill")

    async def _fill_later(self, channel: Channel) -> None:
        wait = GAP_WAIT
        try:
            while not self._closed:
                await asyncio.sleep(wait)
                sequencer = self._sequencers.get(channel)
                if sequencer is None or not sequencer.waiting:
                    return  # the missing ones arrived meanwhile
                stored_before = sequencer.highest  # offsets given out before the read
                top = await self._fill(channel)
                if top is not None and (top >= (sequencer.next or 0) or top < stored_before):
                    # The store had given out the missing offsets when we read and holds
                    # them no more, or it lost what it had given out: gone for good. (A
                    # gap past what the read saw waits for the next read.)
                    self._apply(channel, sequencer, sequencer.skip())
                    wait = GAP_WAIT
                elif top is None:
                    # The store is unreachable (a broker outage): the missing broadcasts
                    # may still come, live or from the store once it is back. Keep waiting;
                    # the sequencer's bound gives up first if too much piles up meanwhile.
                    wait = min(wait * 2, RETRY_MAX)
                else:
                    wait = GAP_WAIT  # given out after our read: look again shortly
        finally:
            self._filling.discard(channel)

    async def _fill(self, channel: Channel) -> int | None:
        """Fetch from the store what came after the last offset delivered here; the
        store's top offset then (``None``: it could not be read, or nothing to do)."""
        sequencer = self._sequencers.get(channel)
        config = channel.lobby.history_config
        if sequencer is None or sequencer.last is None or config is None or channel.closed:
            return None
        found = await self._read(channel, sequencer.last, config.size)
        if found is None or self._sequencers.get(channel) is not sequencer:
            return None
        for stored in found.records:
            recorded = decode_record(stored, found.epoch)
            if recorded is None:
                self.stats.invalid_records += 1
                continue
            if sequencer.next is not None and recorded.offset >= sequencer.next:
                self.stats.gaps_filled += 1
            self._apply(channel, sequencer, sequencer.offer(recorded))
        return found.top if found.epoch == sequencer.epoch else None

    async def _read(self, channel: Channel, after: int, limit: int) -> Slice | None:
        config = channel.lobby.history_config
        if self.store is None or config is None:
            return None
        try:
            async with self._slots, asyncio.timeout(READ_TIMEOUT):
                return await self.store.read(
                    self._key_of(channel), after, limit, ttl=config.ttl, meta_ttl=config.meta_ttl
                )
        except (HistoryUnavailableError, TimeoutError) as exc:
            self.stats.store_errors += 1
            self._warn.warning("history read for %s failed: %s", channel.name, exc)
            return None

    def resynced(self, channel: Channel, reason: str) -> None:
        """The cluster says messages of ``channel`` may have been lost (a gap, the broker
        link came back, a node returned): fill from the store, or tell the members."""
        if channel.lobby.history_config is None or self.store is None:
            channel.continuity_lost(reason, None)
            return
        self._spawn(self._refill(channel, reason), "history refill")

    async def _refill(self, channel: Channel, reason: str) -> None:
        await self._fill(channel)
        if reason == "reconnect":
            # What was published between the reconnection and the new subscription is in
            # the store by now: look once more.
            await asyncio.sleep(1.0)
            await self._fill(channel)

    def forget(self, channel: Channel) -> None:
        self._sequencers.pop(channel, None)
        self._keys.pop(channel, None)

    # -- catching up a joining member ----------------------------------------

    def recover(self, channel: Channel, user_id: str, since: Position | str | None) -> None:
        # Joins of one channel that arrive while its store read is in flight share the next
        # read: a thousand clients reconnecting after a restart cost a few reads, not 1000.
        waiting = self._recoveries.get(channel)
        if waiting is not None:
            waiting.append((user_id, since))
            return
        self._recoveries[channel] = [(user_id, since)]
        self._spawn(self._recover_all(channel), "history recovery")

    async def _recover_all(self, channel: Channel) -> None:
        waiting = self._recoveries[channel]
        try:
            while waiting:
                batch = waiting[:]
                del waiting[:]
                await self._recover_batch(channel, batch)
        finally:
            del self._recoveries[channel]

    async def _recover_batch(
        self, channel: Channel, batch: list[tuple[str, Position | str | None]]
    ) -> None:
        config = channel.lobby.history_config
        wanted = [since.offset for _, since in batch if isinstance(since, Position)]
        found = None
        if config is not None:
            # The store holds at most ``size`` records: one read from the earliest position
            # asked serves every member of the batch.
            found = await self._read(channel, min(wanted, default=0), config.size if wanted else 0)
        if found is None:
            self.stats.recoveries_failed += len(wanted)
            for user_id, _ in batch:
                _finish(channel, user_id, None, [], signal(False, "unavailable", 0, None))
            return
        self._sequencer(channel).start_at(found.epoch, found.top)
        now = Position(found.top, found.epoch)
        for user_id, since in batch:
            if not isinstance(since, Position):
                why = "invalid" if since == INVALID else "not_requested"
                self.stats.recoveries_failed += since == INVALID
                _finish(channel, user_id, None, [], signal(False, why, 0, now))
                continue
            refused, replay = replay_for(since, found)
            if refused is not None:
                self.stats.recoveries_failed += 1
                _finish(channel, user_id, None, [], signal(False, refused, 0, now))
                continue
            self.stats.recoveries += 1
            _finish(channel, user_id, since, replay, signal(True, None, len(replay), now))

    # -- for the app ---------------------------------------------------------

    async def read(self, channel: Channel, after: int, limit: int) -> list[Recorded]:
        found = await self._read(channel, after, limit)
        if found is None:
            raise HistoryUnavailableError(f"the history of {channel.name} could not be read")
        return [r for r in (decode_record(s, found.epoch) for s in found.records) if r]

    def stop_backpressure(self) -> None:
        """Shutdown has begun: client input no longer waits for the store."""
        self._stopping = True
        self._room.set()

    async def aclose(self) -> None:
        self.stop_backpressure()
        self._closed = True
        self._wake.set()
        if self._writer is not None:
            self._writer.cancel()
            await asyncio.gather(self._writer, return_exceptions=True)
        for item in self._queue:  # never stored: at least deliver them here
            self._unrecorded(
                item.channel,
                item.event,
                item.payload,
                item.recipients,
                item.sender_id,
                item.request_id,
            )
        self._queue.clear()
