"""`livebridge.qt`: the subscriber for PyQt6 applications, replacing the seeds' `QThread` +
`QWebSocket` example.

    from livebridge.qt import LivebridgeQtClient
    hub = LivebridgeQtClient("http://127.0.0.1:5100", channels=["jobs", "photos", "sessions"])
    hub.message_received.connect(window.handle_message)   # runs on the Qt (GUI) thread
    hub.start()

It wraps `livebridge.Client` (its own thread, WebSocket or long polling, reconnection,
resume, recovery) and re-emits what the client receives as signals of a `QObject` that
lives on the thread that made it, so slots may touch widgets. The crossing from the client's
thread is a queued signal to this object's own slot; from there the public signals are
emitted on the Qt thread, whatever connection type their slots use.
"""

from __future__ import annotations

from typing import Any, Dict, Iterable, Optional

try:
    from PyQt6.QtCore import QObject, pyqtSignal, pyqtSlot
except ImportError as err:  # pragma: no cover - exercised by a test that hides PyQt6
    raise ImportError(
        "livebridge.qt needs PyQt6, which is not installed: pip install 'livebridge-hub[qt]' "
        f"(or pip install PyQt6). The import failed with: {err}"
    ) from err

from .catalogue import CHANNELS
from .client import Client


class LivebridgeQtClient(QObject):
    """A `QObject` with the signals of a hub subscription:

    - `message_received(dict)`: each application message (events, broadcasts, direct
      messages) and `recovery_failed` notices, in order;
    - `state_changed(str)`: `connecting`, `open`, `polling`, `reconnecting`, `closed`;
    - `recovery_failed(dict)`: missed events of a channel could not be replayed.

    Keyword options are those of `livebridge.Client` (`transport`, `timeout`, ...).
    """

    message_received = pyqtSignal(dict)
    state_changed = pyqtSignal(str)
    recovery_failed = pyqtSignal(dict)
    _from_client_thread = pyqtSignal(dict)

    def __init__(
        self,
        url: Optional[str] = None,
        client_type: str = "gui",
        client_name: Optional[str] = "Desktop GUI",
        channels: Iterable[str] = CHANNELS,
        parent: Optional[QObject] = None,
        **options: Any,
    ) -> None:
        super().__init__(parent)
        self.client = Client(url, client_type, client_name, channels, **options)
        # Emitted on the client's thread; the receiver lives here, so Qt queues the call.
        self._from_client_thread.connect(self._on_qt_thread)
        self.client.on("*", self._from_client_thread.emit)
        self.client.on("state", self._from_client_thread.emit)

    @pyqtSlot(dict)
    def _on_qt_thread(self, message: Dict[str, Any]) -> None:
        if message.get("type") == "state":
            self.state_changed.emit(str(message.get("state")))
            return
        if message.get("type") == "recovery_failed":
            self.recovery_failed.emit(message)
        self.message_received.emit(message)

    @property
    def client_id(self) -> Optional[str]:
        return self.client.client_id

    def start(self) -> None:
        """Connects in the background; signals start arriving once the event loop runs."""
        self.client.start()

    def stop(self) -> None:
        """Ends the session and the client's thread (call it when the window closes)."""
        self.client.stop()

    def send(self, message: Dict[str, Any]) -> Optional[Dict[str, Any]]:
        """Sends a client message (see `livebridge.Client.send`); blocks until the reply."""
        return self.client.send(message)

    def subscribe(self, channels: Iterable[str]) -> None:
        self.client.subscribe(channels)

    def unsubscribe(self, channels: Iterable[str]) -> None:
        self.client.unsubscribe(channels)
