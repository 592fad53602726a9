"""This process as a node of a PondSocket cluster (docs/protocol.md).

Channels serve their local members themselves and tell the node (their :class:`Relay`)
what changed; the node publishes that as v1 envelopes on the channel's topic. Envelopes
from other nodes are applied to the local channel (:mod:`pondsocket.cluster.inbound`).
Outgoing envelopes wait in a bounded queue drained by one task, so a channel never awaits
the broker. One heartbeat per node; peers that go silent are declared dead and their users
leave every channel, with LEAVE frames to local clients. Every envelope carries a
per-topic ``seq`` (ignored by other implementations): a gap, or a reconnection of the bus,
triggers a resync of the channels concerned, reported through :meth:`on_resync`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

from pondsocket.cluster import inbound
from pondsocket.cluster.envelope import Envelope, EnvelopeType
from pondsocket.cluster.gate import InboundGate
from pondsocket.cluster.liveness import Heard, Liveness
from pondsocket.cluster.options import ClusterOptions
from pondsocket.cluster.outbox import FLUSH_STALL, ClusterOutbox
from pondsocket.cluster.signing import EnvelopeSigner
from pondsocket.cluster.state_pages import PageAssembler, split_users
from pondsocket.cluster.stats import ClusterStats
from pondsocket.cluster.topics import TopicLayout, endpoint_name
from pondsocket.cluster.tracking import PendingResyncs
from pondsocket.core.ratelog import RateLimitedLog
from pondsocket.core.relay import ALL_USERS, SENDER_CHANNEL, Recipients
from pondsocket.core.user import User
from pondsocket.pubsub.base import BusState, PubSub, PubSubClosedError, Subscription
from pondsocket.wire.ids import random_hex

if TYPE_CHECKING:
    from pondsocket.core.channel import Channel

log = logging.getLogger("pondsocket.cluster")

Spawn = Callable[[Coroutine[Any, Any, None], str], None]
ResyncListener = Callable[[str, str], None]
"""``listener(channel_name, reason)``; reasons: ``reconnect``, ``gap``, ``node_returned``."""


class ClusterNode:
    def __init__(
        self,
        pubsub: PubSub,
        spawn: Spawn,
        *,
        node_id: str | None = None,
        options: ClusterOptions | None = None,
        clock: Callable[[], float] = time.monotonic,
        alone: Callable[[], bool] | None = None,
    ) -> None:
        self.pubsub = pubsub
        # True while nothing published can reach another node (the private in-memory bus
        # of a single PondSocket): then nothing is published. Encoding every change only
        # to decode and drop our own echo doubled the CPU of a broadcast into a small room.
        self._alone = alone
        self.node_id = node_id or random_hex()[:12]
        self.options = options or ClusterOptions()
        self.layout = TopicLayout(self.options.prefix, self.options.namespace)
        self.stats = ClusterStats()
        self.liveness = Liveness(self.node_id, self.options)
        self.registry = self.liveness.registry
        self.state_pages = PageAssembler()
        self._spawn = spawn
        self.clock = clock
        self._channels: dict[str, Channel] = {}
        self._subscriptions: dict[str, asyncio.Task[Subscription | None]] = {}
        self._resyncs = PendingResyncs()
        self._pending_gets: dict[str, asyncio.Future[User | None]] = {}
        self._resync_listeners: list[ResyncListener] = []
        self.channel_resynced: Callable[[Channel, str], None] | None = None
        """Told of each resync with the channel itself (the history service fills gaps)."""
        self._tasks: list[asyncio.Task[None]] = []
        self._heartbeat_sub: asyncio.Task[Subscription | None] | None = None
        self._started = False
        self._closed = False
        keys = self.options.signing_keys
        self._signer = EnvelopeSigner(keys) if keys else None
        self.outbox = ClusterOutbox(pubsub, self.options, self.stats, self._signer, self._repair)
        self.gate = InboundGate(self.node_id, self.options, self.stats, self._signer)
        self.refusals = RateLimitedLog(log)

    # -- lifecycle -----------------------------------------------------------

    @property
    def started(self) -> bool:
        return self._started

    def not_ready(self) -> str | None:
        """Why this node cannot serve cluster traffic now (``None``: it can): the broker
        is disconnected, or the node's subscriptions are not in place yet."""
        if self.outbox.bus_down:
            return "broker disconnected"
        if self._started:
            sub = self._heartbeat_sub
            if sub is None or not sub.done():
                return "subscribing"
            if sub.cancelled() or sub.exception() is not None or sub.result() is None:
                return "not subscribed to the cluster's heartbeats"
        return None

    @property
    def authenticated(self) -> bool:
        """Whether envelopes are signed with a cluster secret: then a node may ask another
        to change that node's users (e.g. their assigns), as only our nodes can sign."""
        return self._signer is not None

    def start(self) -> None:
        """Start heartbeats and liveness checks (idempotent; needs a running loop)."""
        if self._started or self._closed:
            return
        self._started = True
        loop = asyncio.get_running_loop()
        self.pubsub.add_state_listener(self._bus_state_changed)
        self._heartbeat_sub = loop.create_task(
            self._subscribe(self.layout.heartbeat(), self._on_heartbeat_topic)
        )
        self.outbox.start()
        self._tasks += [
            loop.create_task(self._heartbeat_loop(), name="pondsocket-cluster-heartbeat"),
            loop.create_task(self._liveness_loop(), name="pondsocket-cluster-liveness"),
        ]

    async def aclose(self, timeout: float = 5.0) -> None:
        """Publish what is queued (bounded by ``timeout``), then stop and unsubscribe."""
        if self._closed:
            return
        if self._started:
            self._send_heartbeat(leaving=True)
        self._closed = True
        await self.outbox.aclose(timeout)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        subscriptions = list(self._subscriptions.values())
        if self._heartbeat_sub is not None:
            subscriptions.append(self._heartbeat_sub)
        self._subscriptions.clear()
        if subscriptions:
            # Bounded like the flush: a subscribe still waiting for a broker that is gone,
            # or an unsubscribe it does not answer, must not hold the shutdown.
            unsubscribing = [asyncio.ensure_future(self._unsubscribe(s)) for s in subscriptions]
            _, late = await asyncio.wait(unsubscribing, timeout=FLUSH_STALL)
            for task in late:
                task.cancel()
            if late:
                log.warning("cluster node closed with %d subscriptions not cancelled", len(late))
            await asyncio.gather(*unsubscribing, return_exceptions=True)
        for future in self._pending_gets.values():
            future.cancel()

    def on_resync(self, listener: ResyncListener) -> Callable[[], None]:
        """Call ``listener(channel_name, reason)`` whenever a channel is resynced because
        messages may have been lost (``reconnect``: the bus came back; ``gap``: a peer's
        sequence skipped; ``node_returned``: a node declared dead heartbeats again).
        Returns a remover."""
        self._resync_listeners.append(listener)
        return lambda: self._resync_listeners.remove(listener)

    # -- channels (Relay) ----------------------------------------------------

    def topic_of(self, channel: Channel) -> str:
        return self.layout.channel(endpoint_name(channel.endpoint_path), channel.name)

    def channel_opened(self, channel: Channel) -> None:
        self.start()
        topic = self.topic_of(channel)
        self._channels[topic] = channel

        async def subscribe_then_ask() -> Subscription | None:
            subscription = await self._subscribe(topic, self._receive)
            if subscription is not None and self._channels.get(topic) is channel:
                self._publish(channel, EnvelopeType.STATE_REQUEST, {"fromNode": self.node_id})
            return subscription

        self._subscriptions[topic] = asyncio.get_running_loop().create_task(subscribe_then_ask())

    def channel_closed(self, channel: Channel) -> None:
        topic = self.topic_of(channel)
        if self._channels.get(topic) is channel:
            del self._channels[topic]
            self._resyncs.forget(topic)
            self.gate.sequences.forget_topic(topic)
            self.outbox.forget(topic)
        task = self._subscriptions.pop(topic, None)
        if task is not None:
            self._spawn(self._unsubscribe(task), "cluster unsubscribe")

    def message_sent(
        self,
        channel: Channel,
        event: str,
        payload: dict[str, Any],
        recipients: Recipients,
        sender_id: str,
        request_id: str,
        *,
        system: bool = False,
    ) -> None:
        fields: dict[str, Any] = {
            "fromUserId": sender_id,
            "event": event,
            "payload": payload,
            "requestId": request_id,
            "recipientDescriptor": recipients,
        }
        if system:  # our extension; other implementations deliver it as a BROADCAST
            fields["action"] = "SYSTEM"
        self._publish(channel, EnvelopeType.USER_MESSAGE, fields)

    def member_joined(self, channel: Channel, user_id: str, assigns: dict[str, Any]) -> None:
        fields = {"userId": user_id, "presence": {}, "assigns": assigns}
        self._publish(channel, EnvelopeType.USER_JOINED, fields)

    def member_left(self, channel: Channel, user_id: str) -> None:
        self._publish(channel, EnvelopeType.USER_LEFT, {"userId": user_id})

    def presence_changed(
        self, channel: Channel, user_id: str, presence: dict[str, Any] | None
    ) -> None:
        if presence is None:
            self._publish(channel, EnvelopeType.PRESENCE_REMOVED, {"userId": user_id})
        else:
            fields = {"userId": user_id, "presence": presence}
            self._publish(channel, EnvelopeType.PRESENCE_UPDATE, fields)

    def assigns_changed(self, channel: Channel, user_id: str, assigns: dict[str, Any]) -> None:
        self._publish(channel, EnvelopeType.ASSIGNS_UPDATE, {"userId": user_id, "assigns": assigns})

    def user_evicted(self, channel: Channel, user_id: str, reason: str) -> None:
        self._publish(channel, EnvelopeType.EVICT_USER, {"userId": user_id, "reason": reason})

    def remove_requested(self, channel: Channel, user_id: str, reason: str) -> None:
        self._publish(channel, EnvelopeType.USER_REMOVE, {"userId": user_id, "reason": reason})

    async def fetch_user(
        self, channel: Channel, user_id: str, timeout: float | None
    ) -> User | None:
        """Ask the node hosting ``user_id`` for its live data (``None`` if nobody answers)."""
        request_id = random_hex()
        future: asyncio.Future[User | None] = asyncio.get_running_loop().create_future()
        self._pending_gets[request_id] = future
        fields = {"userId": user_id, "requestId": request_id, "fromNode": self.node_id}
        self._publish(channel, EnvelopeType.USER_GET_REQUEST, fields)
        try:
            async with asyncio.timeout(timeout or self.options.get_user_timeout):
                return await future
        except TimeoutError:
            return None
        finally:
            self._pending_gets.pop(request_id, None)

    def broadcast_elsewhere(
        self, endpoint_path: str, channel_name: str, event: str, payload: dict[str, Any]
    ) -> None:
        """Broadcast into a channel that has no local members (a server-side broadcast)."""
        self.start()
        fields = {
            "fromUserId": SENDER_CHANNEL,
            "event": event,
            "payload": payload,
            "requestId": random_hex(),
            "recipientDescriptor": ALL_USERS,
        }
        name = endpoint_name(endpoint_path)
        envelope = Envelope(EnvelopeType.USER_MESSAGE, self.node_id, name, channel_name, fields)
        self._enqueue(self.layout.channel(name, channel_name), envelope)

    # -- resync --------------------------------------------------------------

    def resync(self, channel: Channel, reason: str) -> None:
        """Ask every node for the channel's state again; remote users nobody confirms
        within ``resync_window`` are dropped."""
        unconfirmed = {uid for uid in channel.all_user_ids if not channel.has_user(uid)}
        deadline = self.clock() + self.options.resync_window
        self._resyncs.begin(self.topic_of(channel), unconfirmed, deadline)
        self.stats.resyncs += 1
        self._publish(channel, EnvelopeType.STATE_REQUEST, {"fromNode": self.node_id})
        self.answer_state(channel)  # peers that lost our messages learn our truth unasked
        log.info("resyncing channel %s (%s)", channel.name, reason)
        if self.channel_resynced is not None:
            self.channel_resynced(channel, reason)
        for listener in list(self._resync_listeners):
            try:
                listener(channel.name, reason)
            except Exception:
                log.exception("resync listener failed")

    def confirm(self, topic: str, node_id: str, user_ids: set[str]) -> None:
        """A node answered a STATE_REQUEST: its listed users are confirmed."""
        self._resyncs.confirm(topic, user_ids)

    def _expire_resyncs(self, now: float) -> None:
        for topic, unconfirmed in self._resyncs.expire(now):
            channel = self._channels.get(topic)
            if channel is not None:
                for user_id in unconfirmed:
                    channel.forget_remote(user_id)

    def _bus_state_changed(self, state: BusState) -> None:
        if state is BusState.DISCONNECTED:
            self.outbox.bus_down = True
            self.outbox.release_waiters()
            log.warning("cluster bus disconnected; channels will resync when it is back")
            return
        self.outbox.bus_down = False
        self.stats.reconnects += 1
        self._send_heartbeat()
        for channel in list(self._channels.values()):
            self.resync(channel, "reconnect")

    # -- outgoing ------------------------------------------------------------

    def _publish(self, channel: Channel, kind: EnvelopeType, fields: dict[str, Any]) -> None:
        envelope = Envelope(
            kind, self.node_id, endpoint_name(channel.endpoint_path), channel.name, fields
        )
        self._enqueue(self.topic_of(channel), envelope)

    async def wait_for_room(self) -> None:
        """Backpressure for client input (see :meth:`ClusterOutbox.wait_for_room`)."""
        await self.outbox.wait_for_room()

    def stop_backpressure(self) -> None:
        """Shutdown has begun: client input no longer waits for the outbox."""
        self.outbox.stop_backpressure()

    def _enqueue(self, topic: str, envelope: Envelope) -> None:
        if self._closed or (self._alone is not None and self._alone()):
            return
        self.outbox.put(topic, envelope)

    def _repair(self, topic: str, endpoint: str, channel_name: str) -> None:
        """Envelopes of this channel were lost on the way out: publish our state of it (an
        empty one if we have no members there any more), so peers drop the users we no
        longer have, who would otherwise stay listed as ghosts after a lost USER_LEFT."""
        channel = self._channels.get(topic)
        users = channel.local_snapshot() if channel is not None else []
        self._answer_state(topic, endpoint, channel_name, users)

    def _send_heartbeat(self, *, leaving: bool = False) -> None:
        self._enqueue(self.layout.heartbeat(), self.liveness.heartbeat(leaving=leaving))

    async def _heartbeat_loop(self) -> None:
        while True:
            self._send_heartbeat()
            await asyncio.sleep(self.options.heartbeat_interval)

    async def _liveness_loop(self) -> None:
        while True:
            await asyncio.sleep(self.options.liveness_check_interval)
            now = self.clock()
            for node_id in self.liveness.expire(now):
                self._node_died(node_id)
            self._expire_resyncs(now)

    def node_heartbeat(self, node_id: str, timeout: float | None, *, leaving: bool = False) -> None:
        heard = self.liveness.observe(node_id, timeout, self.clock(), leaving=leaving)
        if heard is Heard.LEFT:
            self.gate.sequences.forget_source(node_id)
            return
        if heard is not Heard.KNOWN:
            self._send_heartbeat()  # it may have missed ours: it must know our timeout
        if heard is Heard.RETURNED:
            log.warning("node %s is back after being declared dead; resyncing", node_id)
            for channel in list(self._channels.values()):
                self.resync(channel, "node_returned")

    def _node_died(self, node_id: str) -> None:
        self.stats.dead_nodes += 1
        self.gate.sequences.forget_source(node_id)
        removed = 0
        for channel in list(self._channels.values()):
            for user_id in channel.remote_users_of(node_id):
                channel.forget_remote(user_id)
                removed += 1
        log.warning(
            "node %s stopped heartbeating: removed its %d channel members", node_id, removed
        )

    # -- incoming ------------------------------------------------------------

    def _on_heartbeat_topic(self, topic: str, data: bytes) -> None:
        envelope = self._accept(topic, data)
        if envelope is not None and envelope.type is EnvelopeType.NODE_HEARTBEAT:
            inbound.heartbeat(self, envelope)

    def _receive(self, topic: str, data: bytes) -> None:
        envelope = self._accept(topic, data)
        channel = self._channels.get(topic)
        if envelope is None or channel is None:
            return
        if envelope.type is not EnvelopeType.NODE_HEARTBEAT:
            inbound.apply(self, channel, topic, envelope)

    def _accept(self, topic: str, data: bytes) -> Envelope | None:
        accepted = self.gate.accept(topic, data)
        if accepted is None:
            return None
        envelope, gap = accepted
        if gap:
            self._gap(topic, envelope.source_node_id)
        return envelope

    def _gap(self, topic: str, source: str) -> None:
        self.stats.gaps += 1
        log.warning("messages from node %s on %s were lost; resyncing", source, topic)
        channel = self._channels.get(topic)
        channels = [channel] if channel is not None else list(self._channels.values())
        for target in channels:  # a heartbeat-topic gap: the link itself dropped messages
            self.resync(target, "gap")

    def answer_state(self, channel: Channel) -> None:
        self._answer_state(
            self.topic_of(channel),
            endpoint_name(channel.endpoint_path),
            channel.name,
            channel.local_snapshot(),
        )

    def _answer_state(
        self, topic: str, endpoint: str, channel_name: str, users: list[dict[str, Any]]
    ) -> None:
        pages = split_users(users)
        state_id = random_hex() if len(pages) > 1 else None
        for number, page in enumerate(pages, 1):
            fields: dict[str, Any] = {"users": page}
            if state_id is not None:
                fields.update(stateId=state_id, statePage=number, statePages=len(pages))
            kind = EnvelopeType.STATE_RESPONSE
            self._enqueue(topic, Envelope(kind, self.node_id, endpoint, channel_name, fields))

    def answer_get(self, channel: Channel, user: User, request_id: str) -> None:
        fields = {
            "userId": user.id,
            "requestId": request_id,
            "assigns": user.assigns,
            "presence": user.presence or {},
        }
        self._publish(channel, EnvelopeType.USER_GET_RESPONSE, fields)

    def resolve_get(self, request_id: str, user: User) -> None:
        future = self._pending_gets.get(request_id)
        if future is not None and not future.done():
            future.set_result(user)

    # -- subscriptions -------------------------------------------------------

    async def _subscribe(
        self, topic: str, handler: Callable[[str, bytes], None]
    ) -> Subscription | None:
        async def deliver(received_topic: str, data: bytes) -> None:
            handler(received_topic, data)

        try:
            return await self.pubsub.subscribe(topic, deliver)
        except PubSubClosedError:
            return None
        except Exception:
            log.exception("subscribing to %s failed", topic)
            return None

    @staticmethod
    async def _unsubscribe(task: asyncio.Task[Subscription | None]) -> None:
        subscription = await task
        if subscription is not None:
            with contextlib.suppress(PubSubClosedError):
                await subscription.cancel()
