"""This process as a node of a PondSocket cluster (docs/protocol.md): the :class:`Relay`
core channels call, and the wiring of the parts around it.

Channels serve their local members themselves and tell the node what changed; the node
publishes that as v1 envelopes on the channel's topic through the outbox
(:mod:`~pondsocket.cluster.outbox`: a bounded queue drained by one task, so a channel never
awaits the broker). What arrives passes the gate (:mod:`~pondsocket.cluster.gate`) and is
applied to the local channel (:mod:`~pondsocket.cluster.inbound`). Around them: broker
subscriptions (:mod:`~pondsocket.cluster.subscriptions`), heartbeats and dead peers
(:mod:`~pondsocket.cluster.heartbeats`), and resyncs after a sequence gap, a reconnection
of the bus or a returning peer (:mod:`~pondsocket.cluster.resync`, reported through
:meth:`ClusterNode.on_resync`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pondsocket.cluster.envelope import Envelope, EnvelopeType
from pondsocket.cluster.gate import InboundGate
from pondsocket.cluster.heartbeats import Heartbeats
from pondsocket.cluster.liveness import Liveness
from pondsocket.cluster.lookups import PendingLookups
from pondsocket.cluster.options import ClusterOptions
from pondsocket.cluster.outbox import ClusterOutbox
from pondsocket.cluster.receiver import Receiver
from pondsocket.cluster.resync import ResyncListener, Resyncs
from pondsocket.cluster.signing import EnvelopeSigner
from pondsocket.cluster.state_pages import PageAssembler, state_responses
from pondsocket.cluster.stats import ClusterStats
from pondsocket.cluster.subscriptions import Spawn, Subscriptions
from pondsocket.cluster.topics import TopicLayout, endpoint_name
from pondsocket.core.ratelog import RateLimitedLog
from pondsocket.core.relay import ALL_USERS, SENDER_CHANNEL, Recipients
from pondsocket.core.user import User
from pondsocket.pubsub.base import BusState, PubSub
from pondsocket.wire.ids import random_hex

if TYPE_CHECKING:
    from pondsocket.core.channel import Channel

log = logging.getLogger("pondsocket.cluster")

__all__ = ["ClusterNode", "ResyncListener", "Spawn"]


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
        self.clock = clock
        self._channels: dict[str, Channel] = {}
        self._lookups = PendingLookups()
        self._tasks: list[asyncio.Task[None]] = []
        self._started = False
        self._closed = False
        keys = self.options.signing_keys
        self._signer = EnvelopeSigner(keys) if keys else None
        self.outbox = ClusterOutbox(pubsub, self.options, self.stats, self._signer, self._repair)
        self.gate = InboundGate(self.node_id, self.options, self.stats, self._signer)
        self.refusals = RateLimitedLog(log)
        self.subscriptions = Subscriptions(pubsub, spawn)
        self.resyncs = Resyncs(self._channels, self, self.stats, self.options, clock)
        self.receiver = Receiver(self.gate, self._channels, self.resyncs, self)
        self.heartbeats = Heartbeats(
            self.liveness,
            self._send_heartbeat,
            channels=self._channels,
            sequences=self.gate.sequences,
            resyncs=self.resyncs,
            stats=self.stats,
            options=self.options,
            clock=clock,
        )

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
            return self.subscriptions.heartbeats_missing()
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
        self.subscriptions.subscribe_heartbeats(
            self.layout.heartbeat(), self.receiver.heartbeat_topic
        )
        self.outbox.start()
        self._tasks += [
            loop.create_task(self.heartbeats.run(), name="pondsocket-cluster-heartbeat"),
            loop.create_task(self._liveness_loop(), name="pondsocket-cluster-liveness"),
        ]

    async def aclose(self, timeout: float = 5.0) -> None:
        """Publish what is queued (bounded by ``timeout``), then stop and unsubscribe."""
        if self._closed:
            return
        if self._started:
            self.heartbeats.send(leaving=True)
        self._closed = True
        await self.outbox.aclose(timeout)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.subscriptions.aclose()
        self._lookups.cancel_all()

    def on_resync(self, listener: ResyncListener) -> Callable[[], None]:
        """Call ``listener(channel_name, reason)`` whenever a channel is resynced because
        messages may have been lost (``reconnect``: the bus came back; ``gap``: a peer's
        sequence skipped; ``node_returned``: a node declared dead heartbeats again).
        Returns a remover."""
        return self.resyncs.on_resync(listener)

    @property
    def channel_resynced(self) -> Callable[[Channel, str], None] | None:
        """Told of each resync with the channel itself (the history service fills gaps)."""
        return self.resyncs.channel_resynced

    @channel_resynced.setter
    def channel_resynced(self, callback: Callable[[Channel, str], None] | None) -> None:
        self.resyncs.channel_resynced = callback

    def _bus_state_changed(self, state: BusState) -> None:
        if state is BusState.DISCONNECTED:
            self.outbox.bus_down = True
            self.outbox.release_waiters()
            log.warning("cluster bus disconnected; channels will resync when it is back")
            return
        self.outbox.bus_down = False
        self.stats.reconnects += 1
        self.heartbeats.send()
        self.resyncs.resync_all("reconnect")

    async def _liveness_loop(self) -> None:
        while True:
            await asyncio.sleep(self.options.liveness_check_interval)
            now = self.clock()
            self.heartbeats.expire(now)
            self.resyncs.expire(now)

    # -- channels (Relay) ----------------------------------------------------

    def topic_of(self, channel: Channel) -> str:
        return self.layout.channel(endpoint_name(channel.endpoint_path), channel.name)

    def channel_opened(self, channel: Channel) -> None:
        self.start()
        topic = self.topic_of(channel)
        self._channels[topic] = channel

        def ask_state_if_still_open() -> None:
            if self._channels.get(topic) is channel:
                self.request_state(channel)

        self.subscriptions.subscribe_channel(
            topic, self.receiver.channel_topic, ask_state_if_still_open
        )

    def channel_closed(self, channel: Channel) -> None:
        topic = self.topic_of(channel)
        if self._channels.get(topic) is channel:
            del self._channels[topic]
            self.resyncs.forget(topic)
            self.gate.sequences.forget_topic(topic)
            self.outbox.forget(topic)
        self.subscriptions.unsubscribe_channel(topic)

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
        request_id, answer = self._lookups.expect()
        fields = {"userId": user_id, "requestId": request_id, "fromNode": self.node_id}
        self._publish(channel, EnvelopeType.USER_GET_REQUEST, fields)
        try:
            async with asyncio.timeout(timeout or self.options.get_user_timeout):
                return await answer
        except TimeoutError:
            return None
        finally:
            self._lookups.discard(request_id)

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

    def resync(self, channel: Channel, reason: str) -> None:
        """Ask every node for the channel's state again; remote users nobody confirms
        within ``resync_window`` are dropped."""
        self.resyncs.resync(channel, reason)

    async def wait_for_room(self) -> None:
        """Backpressure for client input (see :meth:`ClusterOutbox.wait_for_room`)."""
        await self.outbox.wait_for_room()

    def stop_backpressure(self) -> None:
        """Shutdown has begun: client input no longer waits for the outbox."""
        self.outbox.stop_backpressure()

    # -- outgoing ------------------------------------------------------------

    def _publish(self, channel: Channel, kind: EnvelopeType, fields: dict[str, Any]) -> None:
        envelope = Envelope(
            kind, self.node_id, endpoint_name(channel.endpoint_path), channel.name, fields
        )
        self._enqueue(self.topic_of(channel), envelope)

    def _enqueue(self, topic: str, envelope: Envelope) -> None:
        if self._closed or (self._alone is not None and self._alone()):
            return
        self.outbox.put(topic, envelope)

    def _send_heartbeat(self, heartbeat: Envelope) -> None:
        self._enqueue(self.layout.heartbeat(), heartbeat)

    def request_state(self, channel: Channel) -> None:
        self._publish(channel, EnvelopeType.STATE_REQUEST, {"fromNode": self.node_id})

    def answer_state(self, channel: Channel) -> None:
        self._answer_state(
            self.topic_of(channel),
            endpoint_name(channel.endpoint_path),
            channel.name,
            channel.local_snapshot(),
        )

    def _repair(self, topic: str, endpoint: str, channel_name: str) -> None:
        """Envelopes of this channel were lost on the way out: publish our state of it (an
        empty one if we have no members there any more), so peers drop the users we no
        longer have, who would otherwise stay listed as ghosts after a lost USER_LEFT."""
        channel = self._channels.get(topic)
        users = channel.local_snapshot() if channel is not None else []
        self._answer_state(topic, endpoint, channel_name, users)

    def _answer_state(
        self, topic: str, endpoint: str, channel_name: str, users: list[dict[str, Any]]
    ) -> None:
        for response in state_responses(self.node_id, endpoint, channel_name, users):
            self._enqueue(topic, response)

    def answer_get(self, channel: Channel, user: User, request_id: str) -> None:
        fields = {
            "userId": user.id,
            "requestId": request_id,
            "assigns": user.assigns,
            "presence": user.presence or {},
        }
        self._publish(channel, EnvelopeType.USER_GET_RESPONSE, fields)

    # -- what inbound handlers call back (inbound.InboundNode) --------------

    def node_heartbeat(self, node_id: str, timeout: float | None, *, leaving: bool = False) -> None:
        self.heartbeats.heard(node_id, timeout, leaving=leaving)

    def confirm(self, topic: str, node_id: str, user_ids: set[str]) -> None:
        """A node answered a STATE_REQUEST: its listed users are confirmed."""
        self.resyncs.confirm(topic, user_ids)

    def resolve_get(self, request_id: str, user: User) -> None:
        self._lookups.resolve(request_id, user)
