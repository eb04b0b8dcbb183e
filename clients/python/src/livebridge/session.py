"""What a subscriber does, whatever its transport: the messages it sends when a session opens
(register, subscribe with the channel positions it has), what it makes of each message from
the hub (deliver it, drop a duplicate, recover after a drop), and how long it waits before
reconnecting. Pure logic, no I/O and no threads: `livebridge.client` (threads, WebSocket or
long polling) and `livebridge.aio` (asyncio) drive it, and tests can too.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

from .catalogue import validate_channel_name
from .positions import ChannelPositions

PROTOCOL_VERSION = "1.0"

# Replies: each client message gets exactly one, in order (docs/protocol.md).
REPLY_TYPES = frozenset({"registered", "subscribed", "unsubscribed", "pong", "published", "error"})
# Messages about the protocol rather than the application.
CONTROL_TYPES = REPLY_TYPES | {"connection_established", "messages_dropped"}
# Notices made by the client itself.
NOTICE_TYPES = frozenset({"state", "recovery_failed"})


def is_application_message(message: Dict[str, Any]) -> bool:
    """Whether `message` goes to the `"*"` callbacks and the async iterator: events and
    messages published by applications, and `recovery_failed` (the application must reload
    its state at that point of the stream)."""
    message_type = message.get("type")
    return message_type == "recovery_failed" or (
        message_type not in CONTROL_TYPES and message_type not in NOTICE_TYPES
    )


@dataclass
class Request:
    """A message for the hub, with what the session needs to know when its reply comes."""

    message: Dict[str, Any]
    since_channels: Tuple[str, ...] = ()  # subscribe: channels sent with a position
    new_channels: Tuple[str, ...] = ()  # subscribe: channels the session did not have


@dataclass
class Outcome:
    """What to do after a message from the hub: dispatch `deliver` in order (every message,
    application or not; see `is_application_message`), and send `send`."""

    deliver: List[Dict[str, Any]] = field(default_factory=list)
    send: List[Request] = field(default_factory=list)


class SessionCore:
    def __init__(self, client_type: str, client_name: Optional[str], channels: Iterable[str]) -> None:
        if not isinstance(client_type, str) or not client_type:
            raise ValueError("client_type must be a non-empty str")
        self.client_type = client_type
        self.client_name = client_name
        self.channels: List[str] = []
        for channel in channels:
            validate_channel_name(channel, "channels")
            if channel not in self.channels:
                self.channels.append(channel)
        self.client_id: Optional[str] = None
        self.positions = ChannelPositions()

    def opened(self, client_id: str, resumed: bool) -> List[Request]:
        """A session is attached (new, or resumed by its id): what to send first. A new
        session is registered; every session is (re)subscribed, with the positions known, so
        that what was missed meanwhile is replayed."""
        self.client_id = client_id
        requests: List[Request] = []
        if not resumed:
            register: Dict[str, Any] = {"type": "register", "client_type": self.client_type}
            if self.client_name is not None:
                register["client_name"] = self.client_name
            requests.append(Request(register))
        if self.channels:
            requests.append(self._subscribe(self.channels, new=() if resumed else self.channels))
        return requests

    def lost(self) -> None:
        """The transport ended; the session may live on at the hub."""
        self.positions.abandon_recoveries()

    def _subscribe(self, channels: Sequence[str], new: Sequence[str]) -> Request:
        since = self.positions.since(channels)
        message: Dict[str, Any] = {"type": "subscribe", "channels": list(channels)}
        if since:
            message["since"] = since
            self.positions.begin_recovery(since)
        return Request(
            message,
            since_channels=tuple(since),
            new_channels=tuple(c for c in new if c not in since),
        )

    def subscribe(self, channels: Iterable[str]) -> Optional[Request]:
        """Adds channels; the request to send when connected (None when nothing is new)."""
        added = []
        for channel in channels:
            validate_channel_name(channel, "channels")
            if channel not in self.channels and channel not in added:
                added.append(channel)
        if not added:
            return None
        self.channels.extend(added)
        return self._subscribe(added, new=added)

    def unsubscribe(self, channels: Iterable[str]) -> Optional[Request]:
        removed = [channel for channel in dict.fromkeys(channels) if channel in self.channels]
        if not removed:
            return None
        self.channels = [channel for channel in self.channels if channel not in removed]
        self.positions.forget(removed)
        return Request({"type": "unsubscribe", "channels": removed})

    def receive(self, message: Dict[str, Any], request: Optional[Request] = None) -> Outcome:
        """A message from the hub; `request` is the request it replies to, if it is a reply."""
        message_type = message.get("type")
        if message_type == "subscribed":
            notices = self.positions.subscribed(
                message,
                since_channels=request.since_channels if request else (),
                new_channels=request.new_channels if request else (),
            )
            return Outcome(deliver=[message, *notices])
        if message_type == "messages_dropped":
            return Outcome(deliver=[message], send=self._recover())
        if message_type in CONTROL_TYPES:
            return Outcome(deliver=[message])
        deliver, notice = self.positions.accept(message)
        out = Outcome()
        if notice is not None:
            out.deliver.append(notice)
        if deliver:
            out.deliver.append(message)
        return out

    def dropped(self, count: int) -> Outcome:
        """A poll reply said `count` messages were lost to a full queue."""
        return Outcome(deliver=[{"type": "messages_dropped", "dropped": count}], send=self._recover())

    def _recover(self) -> List[Request]:
        """After a drop: ask again for every channel that has a position (without history
        there are none, and nothing can be recovered)."""
        if not self.positions.since(self.channels):
            return []
        return [self._subscribe(self.channels, new=())]


def reconnect_delay(attempt: int, base: float, cap: float, rng: Optional[random.Random] = None) -> float:
    """Jittered exponential backoff: attempt 0 waits about `base`, each further attempt about
    twice as long, up to `cap`; the jitter (50-100 %) keeps many clients that lost the same
    hub from coming back in lockstep."""
    ceiling = min(cap, base * 2.0 ** min(attempt, 30))
    jitter = rng.uniform(0.5, 1.0) if rng is not None else random.uniform(0.5, 1.0)
    return ceiling * jitter
