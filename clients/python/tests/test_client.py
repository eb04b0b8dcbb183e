"""livebridge.Client against the real hub, over a WebSocket and over long polling: receiving
events, falling back to polling, resuming after a short outage with the events published
meanwhile, re-subscribing after a restart, sending, and stopping."""

from __future__ import annotations

import sys
from typing import Callable, Iterator, List

import pytest

import livebridge
from livebridge import events
from support import Hub, RawSubscriber, RefusingProxy, Sink, wait_for

TRANSPORTS = ["websocket", "polling"]


@pytest.fixture
def clients() -> Iterator[List[livebridge.Client]]:
    made: List[livebridge.Client] = []
    yield made
    for client in made:
        client.stop()


@pytest.fixture
def make_client(clients: List[livebridge.Client]) -> Callable[..., livebridge.Client]:
    def make(url: str, **options: object) -> livebridge.Client:
        options.setdefault("channels", ["jobs", "photos"])
        options.setdefault("reconnect_delay", 0.05)
        options.setdefault("max_reconnect_delay", 0.5)
        options.setdefault("poll_wait", 5)
        options.setdefault("timeout", 3)
        client = livebridge.Client(url, client_name="test GUI", **options)  # type: ignore[arg-type]
        clients.append(client)
        return client

    return make


def start_and_subscribe(client: livebridge.Client, sink: Sink) -> None:
    """Starts the client and waits until its subscription is confirmed."""
    client.on("*", sink)
    client.on("subscribed", sink)
    client.on("state", sink)
    client.on("messages_dropped", sink)
    subscribed = len(sink.of_type("subscribed"))
    client.start()
    sink.wait(lambda ms: len([m for m in ms if m["type"] == "subscribed"]) > subscribed, what="subscribed")


def drop_and_hold(client: livebridge.Client, sink: Sink, hub: Hub) -> None:
    """Cuts the client's connection and keeps it from reconnecting, once both the client and
    the hub have seen the drop."""
    reconnecting = len([m for m in sink.of_type("state") if m["state"] == "reconnecting"])
    client._drop_connection(hold=True)
    sink.wait(
        lambda ms: len([m for m in ms if m["type"] == "state" and m["state"] == "reconnecting"]) > reconnecting,
        what="the client to see the drop",
    )
    wait_for(lambda: not hub.client(client.client_id or "")["attached"], what="the hub to see the drop")


def job_ids(sink: Sink) -> List[str]:
    return [m["job_id"] for m in sink.of_type("job_progress", "job_started")]


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_receives_events(publish_to: Hub, make_client: Callable[..., livebridge.Client], transport: str) -> None:
    hub = publish_to
    client = make_client(hub.url, transport=transport)
    sink = Sink()
    start_and_subscribe(client, sink)
    assert client.transport_in_use == transport
    listed = hub.client(client.client_id or "")
    assert listed and listed["client_type"] == "gui" and listed["client_name"] == "test GUI"
    assert sorted(listed["subscriptions"]) == ["jobs", "photos"]

    for step in range(3):
        assert events.broadcast_job_progress(f"job{step}", "s", step)
    assert events.broadcast_photo_approved(7)
    assert events.broadcast_queue_status(1, 2, 3, 4)  # not subscribed: never delivered
    sink.wait(lambda ms: any(m["type"] == "photo_approved" for m in ms), what="photo_approved")
    assert [m["type"] for m in sink.messages if livebridge.session.is_application_message(m)] == [
        "job_progress",
        "job_progress",
        "job_progress",
        "photo_approved",
    ]
    assert job_ids(sink) == ["job0", "job1", "job2"]
    assert [m["state"] for m in sink.of_type("state")][:2] == ["connecting", "open" if transport == "websocket" else "polling"]


def test_falls_back_to_polling_when_websockets_is_not_installed(
    publish_to: Hub, make_client: Callable[..., livebridge.Client], monkeypatch: pytest.MonkeyPatch
) -> None:
    for module in [name for name in sys.modules if name == "websockets" or name.startswith("websockets.")]:
        monkeypatch.delitem(sys.modules, module)
    monkeypatch.setitem(sys.modules, "websockets", None)  # makes `import websockets...` fail
    client = make_client(publish_to.url)
    sink = Sink()
    start_and_subscribe(client, sink)
    assert client.transport_in_use == "polling"
    assert events.broadcast_job_started("via-polling", 1)
    sink.wait(lambda ms: "via-polling" in job_ids(sink), what="the event")


def test_falls_back_to_polling_when_the_upgrade_is_refused(
    publish_to: Hub, make_client: Callable[..., livebridge.Client]
) -> None:
    proxy = RefusingProxy(publish_to)
    try:
        client = make_client(proxy.url)
        sink = Sink()
        start_and_subscribe(client, sink)
        assert proxy.refused_upgrades == 1
        assert client.transport_in_use == "polling"
        assert events.broadcast_job_started("through-the-proxy", 1)
        sink.wait(lambda ms: "through-the-proxy" in job_ids(sink), what="the event")
    finally:
        proxy.close()


def test_a_forced_websocket_does_not_fall_back(publish_to: Hub, make_client: Callable[..., livebridge.Client]) -> None:
    proxy = RefusingProxy(publish_to)
    try:
        client = make_client(proxy.url, transport="websocket")
        sink = Sink()
        client.on("state", sink)
        client.start()
        sink.wait(lambda ms: len([m for m in ms if m["state"] == "reconnecting"]) >= 2, what="retries")
        assert client.transport_in_use is None and proxy.refused_upgrades >= 2
    finally:
        proxy.close()


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_short_outage_resumes_the_session_with_what_was_published_meanwhile(
    publish_to: Hub, make_client: Callable[..., livebridge.Client], transport: str
) -> None:
    hub = publish_to
    client = make_client(hub.url, transport=transport)
    sink = Sink()
    start_and_subscribe(client, sink)
    client_id = client.client_id
    assert events.broadcast_job_started("before", 1)
    sink.wait(lambda ms: "before" in job_ids(sink), what="the first event")

    drop_and_hold(client, sink, hub)
    for step in range(3):
        assert events.broadcast_job_started(f"meanwhile{step}", 1)
    client._allow_reconnect()

    sink.wait(lambda ms: len(job_ids(sink)) >= 4, what="the queued events")
    assert client.client_id == client_id
    assert job_ids(sink) == ["before", "meanwhile0", "meanwhile1", "meanwhile2"]
    assert events.broadcast_job_started("after", 1)
    sink.wait(lambda ms: "after" in job_ids(sink), what="a live event")
    assert job_ids(sink) == ["before", "meanwhile0", "meanwhile1", "meanwhile2", "after"]


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_server_restart_gives_a_new_session_that_is_subscribed_again(
    publish_to: Hub, make_client: Callable[..., livebridge.Client], transport: str
) -> None:
    hub = publish_to
    client = make_client(hub.url, transport=transport)
    sink = Sink()
    start_and_subscribe(client, sink)
    first_id = client.client_id
    hub.restart()
    sink.wait(lambda ms: len([m for m in ms if m["type"] == "subscribed"]) >= 2, timeout=10, what="a new subscription")
    assert client.client_id != first_id
    listed = hub.client(client.client_id or "")
    assert listed and sorted(listed["subscriptions"]) == ["jobs", "photos"] and listed["client_type"] == "gui"
    assert events.broadcast_job_started("after-restart", 1)
    sink.wait(lambda ms: "after-restart" in job_ids(sink), what="an event after the restart")


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_queue_overflow_is_reported_and_what_it_dropped_recovered(
    start_hub: Callable[..., Hub], make_client: Callable[..., livebridge.Client], transport: str
) -> None:
    hub = start_hub("--queue-limit", "3")
    livebridge.configure(url=hub.url)
    client = make_client(hub.url, transport=transport)
    sink = Sink()
    start_and_subscribe(client, sink)
    drop_and_hold(client, sink, hub)
    for step in range(8):
        assert events.broadcast_job_started(f"e{step}", 1)
    client._allow_reconnect()
    # The hub reports the 5 it dropped, and the client recovers them from channel history.
    sink.wait(lambda ms: len(job_ids(sink)) >= 8, what="all 8 events")
    assert [m["dropped"] for m in sink.of_type("messages_dropped")] == [5]
    assert job_ids(sink) == [f"e{step}" for step in range(8)]


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_send_publishes_to_the_other_subscribers(
    publish_to: Hub, make_client: Callable[..., livebridge.Client], transport: str
) -> None:
    hub = publish_to
    watcher = RawSubscriber(hub, ["jobs"])
    try:
        client = make_client(hub.url, transport=transport)
        sink = Sink()
        start_and_subscribe(client, sink)
        reply = client.send({"type": "job_progress", "job_id": "lr1", "stage": "export", "progress": 50})
        assert reply is not None and reply["type"] == "published" and reply["recipients"] == 1
        assert watcher.next_event()["job_id"] == "lr1"
        assert client.send({"type": "ping"})["type"] == "pong"  # type: ignore[index]
        with pytest.raises(livebridge.EventError) as raised:
            client.send({"type": "job_progress", "job_id": "lr1", "stage": "export"})
        assert raised.value.field == "progress"
        with pytest.raises(livebridge.EventError):
            client.send({"type": "not_a_client_message"})  # refused by the hub
        assert "lr1" not in job_ids(sink)  # the hub does not echo a client's event to it
    finally:
        watcher.close()


def test_send_when_not_connected_raises(make_client: Callable[..., livebridge.Client]) -> None:
    client = make_client("http://127.0.0.1:9")
    with pytest.raises(livebridge.PublishError, match="not connected"):
        client.send({"type": "ping"})


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_stop_ends_the_session_and_the_thread(
    publish_to: Hub, make_client: Callable[..., livebridge.Client], transport: str
) -> None:
    hub = publish_to
    client = make_client(hub.url, transport=transport)
    sink = Sink()
    start_and_subscribe(client, sink)
    client_id = client.client_id or ""
    client.stop()
    assert client.state == "closed"
    assert client._thread is not None and not client._thread.is_alive()
    wait_for(lambda: hub.client(client_id) is None, what="the session to end")


def test_a_failing_callback_does_not_stop_the_client(publish_to: Hub, make_client: Callable[..., livebridge.Client]) -> None:
    client = make_client(publish_to.url)

    def broken(message: object) -> None:
        raise RuntimeError("application bug")

    client.on("job_started", broken)
    sink = Sink()
    start_and_subscribe(client, sink)
    assert events.broadcast_job_started("one", 1) and events.broadcast_job_started("two", 1)
    sink.wait(lambda ms: job_ids(sink) == ["one", "two"], what="both events")


def test_subscribe_and_unsubscribe_while_connected(publish_to: Hub, make_client: Callable[..., livebridge.Client]) -> None:
    client = make_client(publish_to.url, channels=["jobs"])
    sink = Sink()
    start_and_subscribe(client, sink)
    client.subscribe(["export"])
    wait_for(lambda: "export" in publish_to.client(client.client_id or "")["subscriptions"], what="the subscription")
    client.unsubscribe(["jobs"])
    wait_for(lambda: "jobs" not in publish_to.client(client.client_id or "")["subscriptions"], what="the unsubscription")
    assert events.broadcast_job_started("unsubscribed", 1)
    assert events.broadcast_export_failed(1, "p", "disk full")
    sink.wait(lambda ms: any(m["type"] == "export_failed" for m in ms), what="the export event")
    assert job_ids(sink) == []
    assert client.channels == ["export"]
