"""livebridge.qt offscreen: signals arrive on the Qt thread, in order; and a clear
ImportError when PyQt6 is missing."""

from __future__ import annotations

import importlib
import os
import sys
import threading
import time
from typing import Any, Callable, Iterator, List

import pytest

from livebridge import events
from support import REPO_ROOT, Hub


def pyqt6_missing_reason() -> str:
    note = REPO_ROOT / ".venv-python" / "pyqt6-unavailable.txt"
    return note.read_text().strip() if note.is_file() else "PyQt6 is not installed in this environment"


@pytest.fixture(scope="module")
def qt_app() -> Iterator[Any]:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    try:
        from PyQt6.QtWidgets import QApplication
    except ImportError as err:
        pytest.skip(f"{pyqt6_missing_reason()} ({err})")
    app = QApplication.instance() or QApplication(["livebridge-tests"])
    yield app


def process_events_until(app: Any, condition: Callable[[], Any], timeout: float = 5.0, what: str = "signals") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        app.processEvents()
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.005)


def test_signals_are_delivered_on_the_qt_thread(qt_app: Any, publish_to: Hub) -> None:
    from livebridge.qt import LivebridgeQtClient

    hub = LivebridgeQtClient(publish_to.url, channels=["jobs", "photos"], reconnect_delay=0.05, timeout=3)
    received: List[Any] = []
    states: List[str] = []
    hub.message_received.connect(lambda message: received.append((threading.current_thread(), message)))
    hub.state_changed.connect(states.append)
    try:
        hub.start()
        assert hub.client.wait_subscribed(5)
        assert events.broadcast_job_progress("qt", "analyzing", 45.5, "Analyzing image quality")
        assert events.broadcast_photo_approved(789, 12)
        process_events_until(qt_app, lambda: len(received) >= 2, what="two messages")
        assert all(thread is threading.main_thread() for thread, _ in received)
        assert [m["type"] for _, m in received] == ["job_progress", "photo_approved"]
        assert received[0][1]["progress"] == 45.5
        assert states[:2] == ["connecting", "open"]
        assert hub.client_id
    finally:
        hub.stop()
    process_events_until(qt_app, lambda: states[-1:] == ["closed"], what="the closed state")


def test_a_clear_import_error_without_pyqt6(monkeypatch: pytest.MonkeyPatch) -> None:
    for module in [name for name in sys.modules if name == "PyQt6" or name.startswith("PyQt6.") or name == "livebridge.qt"]:
        monkeypatch.delitem(sys.modules, module)
    monkeypatch.setitem(sys.modules, "PyQt6", None)
    with pytest.raises(ImportError, match=r"livebridge\.qt needs PyQt6.*pip install 'livebridge-hub\[qt\]'"):
        importlib.import_module("livebridge.qt")
