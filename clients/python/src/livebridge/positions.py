"""Channel positions: where a subscriber is in each channel's history, so that missed events
can be recovered after a reconnect or a queue overflow and no event reaches the application
twice (docs/protocol.md, recovery).

A hub with channel history stamps every channel event with `channel`, `offset` (strictly
increasing per channel, without holes) and `epoch` (changes when the history was lost). A
subscriber keeps the last (epoch, offset) it saw per channel, sends them as `since` when it
subscribes again, and the hub answers `recovered` per channel and replays what was missed.

The subtle part is the window between asking for a replay and the end of that replay. Events
that were already queued for the subscriber keep arriving in it, and accepting one of them
past a gap would move the position beyond events that the replay is about to deliver (which
would then be dropped as duplicates). So while a channel is *recovering*, only the next
offset is accepted; anything further is left to the replay, which delivers it in order.
The recovery ends when the position reaches the offset the hub reported as latest when it
answered, or when an event beyond that arrives (the replay is over; it may have had holes,
e.g. the subscriber's own events, which the hub never sends back to it).

Without history (events without offsets), nothing here has any effect.

Pure logic, no I/O: the sync and asyncio clients and the tests drive it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Iterable, List, Optional, Tuple


@dataclass(frozen=True)
class Position:
    epoch: str
    offset: int

    def to_json(self) -> Dict[str, Any]:
        return {"offset": self.offset, "epoch": self.epoch}

    @staticmethod
    def parse(value: Any) -> Optional["Position"]:
        if not isinstance(value, dict):
            return None
        offset, epoch = value.get("offset"), value.get("epoch")
        if isinstance(offset, int) and not isinstance(offset, bool) and offset >= 0 and isinstance(epoch, str):
            return Position(epoch, offset)
        return None


@dataclass
class _ChannelState:
    position: Optional[Position] = None
    recovering: bool = False
    # The latest offset when the hub answered the recovery; None until it answered.
    recover_until: Optional[int] = None


def event_position(event: Dict[str, Any]) -> Optional[Tuple[str, Position]]:
    """The (channel, position) an event carries, or None for events without history."""
    channel = event.get("channel")
    position = Position.parse(event)
    if isinstance(channel, str) and position is not None:
        return channel, position
    return None


def recovery_failed_notice(channel: str, positions: Any) -> Dict[str, Any]:
    return {"type": "recovery_failed", "channel": channel, "positions": positions}


class ChannelPositions:
    def __init__(self) -> None:
        self._channels: Dict[str, _ChannelState] = {}

    def position(self, channel: str) -> Optional[Position]:
        state = self._channels.get(channel)
        return state.position if state else None

    def recovering(self, channel: str) -> bool:
        state = self._channels.get(channel)
        return bool(state and state.recovering)

    def since(self, channels: Iterable[str]) -> Dict[str, Dict[str, Any]]:
        """The `since` of a subscribe: the position of every given channel that has one."""
        out: Dict[str, Dict[str, Any]] = {}
        for channel in channels:
            position = self.position(channel)
            if position is not None:
                out[channel] = position.to_json()
        return out

    def begin_recovery(self, channels: Iterable[str]) -> None:
        """A subscribe with `since` for these channels was sent."""
        for channel in channels:
            state = self._channels.setdefault(channel, _ChannelState())
            state.recovering = True
            state.recover_until = None

    def forget(self, channels: Iterable[str]) -> None:
        """Unsubscribed channels: their positions no longer mean anything."""
        for channel in channels:
            self._channels.pop(channel, None)

    def accept(self, event: Dict[str, Any]) -> Tuple[bool, Optional[Dict[str, Any]]]:
        """Whether to deliver `event` to the application, and a `recovery_failed` notice to
        deliver before it when the channel's history was lost under a live subscription."""
        located = event_position(event)
        if located is None:
            return True, None
        channel, position = located
        state = self._channels.setdefault(channel, _ChannelState())
        known = state.position
        if known is None:
            state.position = position
            return True, None
        if position.epoch != known.epoch:
            if state.recovering:
                return False, None  # the pending answer tells where the new history starts
            state.position = position
            return True, recovery_failed_notice(channel, {channel: position.to_json()})
        if position.offset <= known.offset:
            return False, None  # a duplicate (queued and replayed, or replayed twice)
        if state.recovering:
            next_in_line = position.offset == known.offset + 1
            replay_over = state.recover_until is not None and position.offset > state.recover_until
            if not (next_in_line or replay_over):
                return False, None  # beyond a gap: the replay will deliver it in order
            state.position = position
            if state.recover_until is not None and position.offset >= state.recover_until:
                state.recovering = False
                state.recover_until = None
            return True, None
        state.position = position
        return True, None

    def subscribed(
        self,
        reply: Dict[str, Any],
        since_channels: Iterable[str] = (),
        new_channels: Iterable[str] = (),
    ) -> List[Dict[str, Any]]:
        """Applies the `subscribed` reply to a subscribe that carried `since` for
        `since_channels`: ends or schedules the end of each recovery, adopts the hub's
        position where the recovery failed and for `new_channels` (channels this session did
        not have, so nothing older can be queued for them). Returns the `recovery_failed`
        notices, in the reply's order."""
        latest: Dict[str, Position] = {}
        raw_positions = reply.get("positions")
        if isinstance(raw_positions, dict):
            for channel, value in raw_positions.items():
                position = Position.parse(value)
                if isinstance(channel, str) and position is not None:
                    latest[channel] = position
        notices: List[Dict[str, Any]] = []
        recovered = reply.get("recovered")
        if not isinstance(recovered, dict):
            recovered = {}
        for channel in since_channels:
            if channel not in recovered:
                # The hub did not answer for it: do not wait for a replay that will not come.
                state = self._channels.setdefault(channel, _ChannelState())
                state.recovering = False
                state.recover_until = None
        if recovered:
            for channel, ok in recovered.items():
                state = self._channels.setdefault(channel, _ChannelState())
                target = latest.get(channel)
                if ok is True:
                    if target is None or (
                        state.position is not None
                        and state.position.epoch == target.epoch
                        and state.position.offset >= target.offset
                    ):
                        state.recovering = False
                        state.recover_until = None
                    else:
                        state.recover_until = target.offset
                else:
                    state.recovering = False
                    state.recover_until = None
                    if target is not None:
                        state.position = target
                    notices.append(recovery_failed_notice(channel, raw_positions if isinstance(raw_positions, dict) else {}))
        for channel in new_channels:
            target = latest.get(channel)
            state = self._channels.setdefault(channel, _ChannelState())
            if target is not None and state.position is None:
                state.position = target
        return notices

    def abandon_recoveries(self) -> None:
        """The connection ended: recoveries in progress start again on the next subscribe."""
        for state in self._channels.values():
            state.recovering = False
            state.recover_until = None
