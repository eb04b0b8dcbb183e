"""livebridge: publish events to a livebridge hub and subscribe to them.

- `livebridge.events`: the seeds' `broadcast_*` functions (standard library only).
- `livebridge.Client`: a subscriber in a background thread (WebSocket, or long polling).
- `livebridge.aio`: the same for asyncio.
- `livebridge.qt`: a PyQt6 `QObject` with a `message_received(dict)` signal.
- `livebridge.hub`: the hub binary started by the application (`with livebridge.hub.running():`).
- `livebridge.pytest_plugin`: the `livebridge_hub` fixture for the application's tests.
"""

from . import hub
from .client import Client
from .errors import EventError, LivebridgeError, PublishError
from .history import history
from .publisher import Publisher
from .settings import Settings, configure

__version__ = "0.1.0"

__all__ = [
    "Client",
    "EventError",
    "LivebridgeError",
    "PublishError",
    "Publisher",
    "Settings",
    "configure",
    "history",
    "hub",
]
