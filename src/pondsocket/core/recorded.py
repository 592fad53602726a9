"""The history side of one channel: what it hands its recorder, and how it delivers what
the recorder gives back (in offset order, exactly once per member, members catching up
held until their replay is out). The recorder (``history/service.py``) does the I/O."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pondsocket.core.history import (
    POSITION_KEY,
    RECOVERY_EVENT,
    MemberPositions,
    Position,
    Recorded,
    position_of,
    requested_position,
)
from pondsocket.core.relay import ALL_EXCEPT_SENDER, ALL_USERS, Recipients
from pondsocket.core.values import check_object
from pondsocket.wire.codec import encode_frame, new_request_id
from pondsocket.wire.messages import ServerAction

if TYPE_CHECKING:
    from pondsocket.core.channel import Channel, ChannelHost


class RecordedStream:
    def __init__(self, channel: Channel, host: ChannelHost) -> None:
        self._channel = channel
        self._host = host
        self.positions = MemberPositions()

    def record(
        self,
        event: str,
        payload: dict[str, Any],
        recipients: Recipients,
        sender_id: str,
        request_id: str,
    ) -> bool:
        """A local broadcast: to the recorder (``False``: none, deliver it as usual)."""
        recorder = self._host.recorder
        if recorder is None:
            return False
        clean = check_object(payload, "payload")
        if POSITION_KEY in clean:  # reserved: only the server says where a message is
            clean = {k: v for k, v in clean.items() if k != POSITION_KEY}
        recorder.record(self._channel, event, clean, recipients, sender_id, request_id)
        return True

    def received(
        self,
        event: str,
        payload: dict[str, Any],
        recipients: Recipients,
        sender_id: str,
        request_id: str | None,
    ) -> bool:
        """A peer's broadcast: to the recorder if it carries a position (``False``: from a
        node without history, delivered live and unnumbered)."""
        recorder, position = self._host.recorder, position_of(payload)
        if recorder is None or position is None or recipients not in (ALL_USERS, ALL_EXCEPT_SENDER):
            return False
        clean = {k: v for k, v in payload.items() if k != POSITION_KEY}
        recorded = Recorded(
            position.offset,
            position.epoch,
            event,
            clean,
            recipients,
            sender_id,
            request_id or new_request_id(),
        )
        recorder.received(self._channel, position, recorded)
        return True

    def deliver(self, recorded: Recorded) -> None:
        """Deliver a stored broadcast, in offset order (the recorder calls this), to the
        local members that have not had it; members catching up get it afterwards."""
        skip = self.positions.admit(recorded)
        members = self._channel.recipients(recorded.recipients, recorded.sender_id)
        if skip:
            members = [m for m in members if m.connection.id not in skip]
        if members:
            self._channel.deliver_to(
                members, recorded.event, recorded.positioned(), recorded.request_id
            )

    def deliver_unrecorded(
        self,
        event: str,
        payload: dict[str, Any],
        recipients: Recipients,
        sender_id: str,
        request_id: str,
    ) -> None:
        """A broadcast that could not be stored: live, unnumbered, here and elsewhere."""
        channel = self._channel
        channel.deliver_to(channel.recipients(recipients, sender_id), event, payload, request_id)
        self._host.relay.message_sent(channel, event, payload, recipients, sender_id, request_id)

    def catch_up(self, user_id: str, join_params: dict[str, Any]) -> None:
        """A member just joined: hold its live broadcasts while the recorder replays what
        it asked to recover (``join_params["recover"]``), then release it."""
        recorder = self._host.recorder
        if recorder is not None:
            self.positions.hold(user_id)
            recorder.recover(self._channel, user_id, requested_position(join_params))

    def finish_recovery(
        self,
        user_id: str,
        start: Position | None,
        replay: list[Recorded],
        signal: dict[str, Any],
    ) -> None:
        """Send a caught-up member the replay, the ``recovery`` signal, then what was held."""
        member = self._channel.local_member(user_id)
        if member is None or not self.positions.is_held(user_id):
            return  # it left meanwhile
        positions = self.positions
        replayed, later, overflowed, joined_at = positions.release(user_id, replay, start)
        if joined_at is not None and signal.get("epoch") in (None, positions.epoch):
            # Not the store's top: broadcasts recorded before it but delivered here after
            # the join are sent to the member, so its position must lie below them. (A
            # store in another epoch, its data lost, is the stream from now on: keep it.)
            signal = {**signal, "offset": joined_at, "epoch": positions.epoch}
        if overflowed:
            signal = {**signal, "recovered": False, "reason": "overflow"}
        for batch in (replayed, None, later):
            if batch is None:
                frame = encode_frame(
                    ServerAction.SYSTEM,
                    RECOVERY_EVENT,
                    self._channel.name,
                    new_request_id(),
                    signal,
                )
                member.outlet.send(frame)
                continue
            for recorded in batch:
                if recorded.recipients == ALL_EXCEPT_SENDER and recorded.sender_id == user_id:
                    continue
                self._channel.deliver_to(
                    [member], recorded.event, recorded.positioned(), recorded.request_id
                )
