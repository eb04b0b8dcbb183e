"""Fixtures: hubs started per test, and the package's module-level settings pointed at them
(and reset afterwards, so no test talks to a hub on the default port 5100)."""

from __future__ import annotations

from typing import Callable, Iterator, List

import pytest

import livebridge
from livebridge import publisher, settings
from support import Hub


@pytest.fixture(autouse=True)
def isolated_settings(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # Port 9 (discard) is closed on loopback: a test that forgets to configure fails fast.
    monkeypatch.setenv("LIVEBRIDGE_URL", "http://127.0.0.1:9")
    monkeypatch.delenv("LIVEBRIDGE_ADMIN_TOKEN", raising=False)
    settings.reset()
    yield
    settings.reset()
    publisher.default_publisher().close()


@pytest.fixture
def start_hub() -> Iterator[Callable[..., Hub]]:
    """Starts a hub with extra `livebridge serve` flags; every hub is stopped at the end."""
    hubs: List[Hub] = []

    def start(*args: str) -> Hub:
        hub = Hub(*args).start()
        hubs.append(hub)
        return hub

    yield start
    for hub in hubs:
        hub.close()


@pytest.fixture
def hub(start_hub: Callable[..., Hub]) -> Hub:
    return start_hub()


@pytest.fixture
def publish_to(hub: Hub) -> Hub:
    """The module-level publisher pointed at `hub`, with short timeouts."""
    livebridge.configure(url=hub.url, timeout=2.0, retry_interval=0)
    return hub
