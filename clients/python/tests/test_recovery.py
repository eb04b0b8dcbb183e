"""Recovery of missed events against a hub with channel history (docs/protocol.md: channel
events carry `channel`, `offset`, `epoch`; `subscribe` takes `since`; the reply says
`recovered` and is followed by the replay). The client side is in livebridge.positions and
livebridge.session (unit-tested in test_session.py).
"""

from __future__ import annotations

from typing import Callable, Iterator, List

import pytest

import livebridge
from livebridge import events
from support import Hub, Sink, wait_for

TRANSPORTS = ["websocket", "polling"]


@pytest.fixture
def clients() -> Iterator[List[livebridge.Client]]:
    made: List[livebridge.Client] = []
    yield made
    for client in made:
        client.stop()


def started_client(hub: Hub, clients: List[livebridge.Client], transport: str, sink: Sink) -> livebridge.Client:
    client = livebridge.Client(
        hub.url, channels=["jobs"], transport=transport, reconnect_delay=0.05, max_reconnect_delay=0.5, poll_wait=5
    )
    clients.append(client)
    # "*" has the events and recovery_failed; the others are protocol messages.
    for message_type in ("*", "subscribed", "state", "messages_dropped"):
        client.on(message_type, sink)
    client.start()
    sink.wait(lambda ms: any(m["type"] == "subscribed" for m in ms), what="subscribed")
    return client


def offsets(sink: Sink) -> List[int]:
    return [m["offset"] for m in sink.of_type("job_started")]


def drop_and_hold(client: livebridge.Client, sink: Sink, hub: Hub) -> None:
    before = len([m for m in sink.of_type("state") if m["state"] == "reconnecting"])
    client._drop_connection(hold=True)
    sink.wait(lambda ms: len([m for m in ms if m.get("state") == "reconnecting"]) > before, what="the drop")
    wait_for(lambda: not (hub.client(client.client_id or "") or {"attached": False})["attached"], what="the hub to see it")


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_events_lost_to_a_full_queue_are_replayed_once_in_order(
    start_hub: Callable[..., Hub], clients: List[livebridge.Client], transport: str
) -> None:
    hub = start_hub("--queue-limit", "3")
    livebridge.configure(url=hub.url)
    sink = Sink()
    client = started_client(hub, clients, transport, sink)
    assert events.broadcast_job_started("first", 1)
    first = sink.wait(lambda ms: offsets(sink), what="the first event")[0]
    drop_and_hold(client, sink, hub)
    for step in range(8):
        assert events.broadcast_job_started(f"missed{step}", 1)
    client._allow_reconnect()
    sink.wait(lambda ms: len(offsets(sink)) >= 9, what="every event")
    assert events.broadcast_job_started("live", 1)
    sink.wait(lambda ms: len(offsets(sink)) >= 10, what="a live event")
    assert offsets(sink) == list(range(first, first + 10))
    assert sink.of_type("recovery_failed") == []


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_events_published_while_the_session_was_evicted_are_replayed(
    start_hub: Callable[..., Hub], clients: List[livebridge.Client], transport: str
) -> None:
    hub = start_hub("--stale-after", "1s")
    livebridge.configure(url=hub.url)
    sink = Sink()
    client = started_client(hub, clients, transport, sink)
    first_id = client.client_id
    assert events.broadcast_job_started("first", 1)
    first = sink.wait(lambda ms: offsets(sink), what="the first event")[0]
    drop_and_hold(client, sink, hub)
    for step in range(3):
        assert events.broadcast_job_started(f"missed{step}", 1)
    wait_for(lambda: hub.client(first_id or "") is None, timeout=5, what="the session to be evicted")
    client._allow_reconnect()
    sink.wait(lambda ms: len(offsets(sink)) >= 4, what="the replay")
    assert client.client_id != first_id
    assert offsets(sink) == list(range(first, first + 4))
    assert [m["job_id"] for m in sink.of_type("job_started")] == ["first", "missed0", "missed1", "missed2"]


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_restart_that_lost_the_history_calls_recovery_failed(
    hub: Hub, clients: List[livebridge.Client], transport: str
) -> None:
    livebridge.configure(url=hub.url)
    sink = Sink()
    client = started_client(hub, clients, transport, sink)
    assert events.broadcast_job_started("before", 1)
    sink.wait(lambda ms: offsets(sink), what="an event")
    hub.restart()
    (notice,) = sink.wait(lambda ms: sink.of_type("recovery_failed"), timeout=10, what="recovery_failed")
    assert notice["channel"] == "jobs" and "jobs" in notice["positions"]
    assert events.broadcast_job_started("after", 1)
    sink.wait(lambda ms: "after" in [m["job_id"] for m in sink.of_type("job_started")], what="a live event")
    assert client.state in ("open", "polling")


def test_history_reads_a_channel(publish_to: Hub) -> None:
    for step in range(5):
        assert events.broadcast_job_started(f"h{step}", 1)
    answer = livebridge.history("jobs", since=0, limit=100)
    latest = answer["offset"]
    recent = livebridge.history("jobs", since=latest - 2)
    assert [e["job_id"] for e in recent["events"]] == ["h3", "h4"]
    assert recent["channel"] == "jobs" and recent["epoch"] == answer["epoch"]
