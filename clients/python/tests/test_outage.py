"""A job runner survives the hub being down: publishes return False within the timeout and
log one warning per outage; strict=True raises instead."""

from __future__ import annotations

import logging
import socket
import time
from typing import Callable, Iterator, List

import pytest

import livebridge
from livebridge import events
from support import Hub


def warnings_of(caplog: pytest.LogCaptureFixture) -> List[str]:
    return [r.getMessage() for r in caplog.records if r.name == "livebridge" and r.levelno == logging.WARNING]


@pytest.fixture
def black_hole() -> Iterator[str]:
    """A port that accepts connections and never answers (a hung hub)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    listener.close()


def test_a_hub_that_is_down_gives_false_and_one_warning_per_outage(
    publish_to: Hub, caplog: pytest.LogCaptureFixture
) -> None:
    hub = publish_to
    caplog.set_level(logging.DEBUG, logger="livebridge")
    assert events.broadcast_job_started("before", 1) is True
    hub.stop()

    started = time.monotonic()
    results = [events.broadcast_job_progress("during", "s", step) for step in range(5)]
    assert results == [False] * 5
    assert time.monotonic() - started < 2.0  # refused connections fail at once, not per timeout
    assert len(warnings_of(caplog)) == 1
    assert "cannot publish" in warnings_of(caplog)[0] and hub.url in warnings_of(caplog)[0]
    assert sum(r.levelno == logging.DEBUG for r in caplog.records) >= 4

    hub.start()
    assert events.broadcast_job_started("after", 1) is True
    assert any("works again" in r.getMessage() for r in caplog.records if r.levelno == logging.INFO)

    hub.stop()
    assert events.broadcast_job_started("second outage", 1) is False
    assert len(warnings_of(caplog)) == 2


def test_strict_raises_publish_error(publish_to: Hub) -> None:
    publish_to.stop()
    livebridge.configure(strict=True)
    with pytest.raises(livebridge.PublishError, match="unreachable|refused|Connection"):
        events.broadcast_job_started("j", 1)


def test_strict_raises_with_the_hubs_message(start_hub: Callable[..., Hub]) -> None:
    hub = start_hub("--admin-token", "right")
    livebridge.configure(url=hub.url, admin_token="wrong", strict=True)
    with pytest.raises(livebridge.PublishError) as raised:
        events.broadcast_job_started("j", 1)
    assert raised.value.status == 401
    assert raised.value.server_error and raised.value.server_error in str(raised.value)


def test_a_hung_hub_costs_one_bounded_timeout_then_fails_fast(
    black_hole: str, caplog: pytest.LogCaptureFixture
) -> None:
    livebridge.configure(url=black_hole, timeout=0.3, retry_interval=30)
    started = time.monotonic()
    assert events.broadcast_job_started("j", 1) is False
    assert time.monotonic() - started < 2.0
    started = time.monotonic()
    assert [events.broadcast_job_started("j", n) for n in range(20)] == [False] * 20
    assert time.monotonic() - started < 1.0  # 20 attempts would take 6 s: none was made
    assert len(warnings_of(caplog)) == 1
