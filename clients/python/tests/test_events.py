"""livebridge.events against a real hub: each of the seeds' 22 functions delivers its event
with the right type, fields and channel; bad arguments are refused before anything is sent;
broadcasts, direct messages and the admin token."""

from __future__ import annotations

import inspect
import logging
import urllib.error
from typing import Any, Dict, Iterator, Tuple

import pytest

import livebridge
from livebridge import catalogue, events
from support import Hub, RawSubscriber

# The seeds' signatures (seed 003, "Event Categories"), parameter names in order.
SEED_SIGNATURES = {
    "broadcast_job_created": ["job_id", "photo_id", "priority"],
    "broadcast_job_started": ["job_id", "photo_id"],
    "broadcast_job_progress": ["job_id", "stage", "progress", "message"],
    "broadcast_job_completed": ["job_id", "photo_id", "result"],
    "broadcast_job_failed": ["job_id", "photo_id", "error_message", "error_details"],
    "broadcast_photo_imported": ["photo_id", "session_id", "file_name", "file_path"],
    "broadcast_photo_analyzed": ["photo_id", "ai_score", "analysis_results"],
    "broadcast_photo_selected": ["photo_id", "context_tag", "selected_preset"],
    "broadcast_photo_approved": ["photo_id", "session_id"],
    "broadcast_photo_rejected": ["photo_id", "session_id", "reason"],
    "broadcast_session_created": ["session_id", "session_name", "import_folder"],
    "broadcast_session_updated": ["session_id", "total_photos", "processed_photos", "status"],
    "broadcast_session_completed": ["session_id", "session_name", "total_photos", "approved_photos"],
    "broadcast_system_status": ["status", "details"],
    "broadcast_resource_warning": ["resource_type", "current_value", "threshold", "message"],
    "broadcast_error_occurred": ["error_type", "error_message", "error_details", "job_id", "photo_id"],
    "broadcast_queue_status": ["pending_count", "processing_count", "completed_count", "failed_count"],
    "broadcast_priority_changed": ["job_id", "old_priority", "new_priority", "reason"],
    "broadcast_approval_queue_updated": ["queue_count", "session_id"],
    "broadcast_export_started": ["photo_id", "preset_name", "destination"],
    "broadcast_export_completed": ["photo_id", "preset_name", "output_path", "file_size"],
    "broadcast_export_failed": ["photo_id", "preset_name", "error_message"],
}

# (function, positional arguments as an application passes them, channel, delivered fields)
DELIVERIES = [
    ("broadcast_job_created", ("job1", 7, "high"), "jobs", {"job_id": "job1", "photo_id": 7, "priority": "high"}),
    ("broadcast_job_started", ("job1", 7), "jobs", {"job_id": "job1", "photo_id": 7}),
    (
        "broadcast_job_progress",
        ("abc123", "analyzing", 45.5, "Analyzing image quality"),
        "jobs",
        {"job_id": "abc123", "stage": "analyzing", "progress": 45.5, "message": "Analyzing image quality"},
    ),
    (
        "broadcast_job_completed",
        ("job1", 7, {"preset": "Portrait", "scores": [0.5, 1]}),
        "jobs",
        {"job_id": "job1", "photo_id": 7, "result": {"preset": "Portrait", "scores": [0.5, 1]}},
    ),
    (
        "broadcast_job_failed",
        ("job1", 7, "out of memory", {"stage": "export"}),
        "jobs",
        {"job_id": "job1", "photo_id": 7, "error_message": "out of memory", "error_details": {"stage": "export"}},
    ),
    (
        "broadcast_photo_imported",
        (789, 12, "IMG_0001.CR3", "/photos/IMG_0001.CR3"),
        "photos",
        {"photo_id": 789, "session_id": 12, "file_name": "IMG_0001.CR3", "file_path": "/photos/IMG_0001.CR3"},
    ),
    (
        "broadcast_photo_analyzed",
        (789, 4, {"faces": 2}),
        "photos",
        {"photo_id": 789, "ai_score": 4.0, "analysis_results": {"faces": 2}},
    ),
    (
        "broadcast_photo_selected",
        (789, "portrait", "Portrait Soft"),
        "photos",
        {"photo_id": 789, "context_tag": "portrait", "selected_preset": "Portrait Soft"},
    ),
    ("broadcast_photo_approved", (789, 12), "photos", {"photo_id": 789, "session_id": 12}),
    ("broadcast_photo_rejected", (789, 12, "blurry"), "photos", {"photo_id": 789, "session_id": 12, "reason": "blurry"}),
    (
        "broadcast_session_created",
        (12, "Wedding", "/import/wedding"),
        "sessions",
        {"session_id": 12, "session_name": "Wedding", "import_folder": "/import/wedding"},
    ),
    (
        "broadcast_session_updated",
        (12, 100, 45, "processing"),
        "sessions",
        {"session_id": 12, "total_photos": 100, "processed_photos": 45, "status": "processing", "progress_percent": 45.0},
    ),
    (
        "broadcast_session_completed",
        (12, "Wedding", 100, 80),
        "sessions",
        {"session_id": 12, "session_name": "Wedding", "total_photos": 100, "approved_photos": 80},
    ),
    (
        "broadcast_system_status",
        ({"cpu_usage": 45.2, "state": "busy"}, {"batch_id": "b1"}),
        "system",
        {"status": {"cpu_usage": 45.2, "state": "busy"}, "details": {"batch_id": "b1"}},
    ),
    (
        "broadcast_resource_warning",
        ("memory", 91.5, 90, "Memory usage high"),
        "system",
        {"resource_type": "memory", "current_value": 91.5, "threshold": 90.0, "message": "Memory usage high"},
    ),
    (
        "broadcast_error_occurred",
        ("processing_error", "Failed to apply settings", {"code": 3}, "job1", "photo123"),
        "system",
        {
            "error_type": "processing_error",
            "error_message": "Failed to apply settings",
            "error_details": {"code": 3},
            "job_id": "job1",
            "photo_id": "photo123",
        },
    ),
    (
        "broadcast_queue_status",
        (5, 2, 40, 1),
        "queue",
        {"pending_count": 5, "processing_count": 2, "completed_count": 40, "failed_count": 1},
    ),
    (
        "broadcast_priority_changed",
        ("job1", 1, "high", "user request"),
        "queue",
        {"job_id": "job1", "old_priority": 1, "new_priority": "high", "reason": "user request"},
    ),
    ("broadcast_approval_queue_updated", (3, 12), "approval", {"queue_count": 3, "session_id": 12}),
    (
        "broadcast_export_started",
        (789, "Web JPEG", "/exports"),
        "export",
        {"photo_id": 789, "preset_name": "Web JPEG", "destination": "/exports"},
    ),
    (
        "broadcast_export_completed",
        (789, "Web JPEG", "/exports/IMG_0001.jpg", 123456),
        "export",
        {"photo_id": 789, "preset_name": "Web JPEG", "output_path": "/exports/IMG_0001.jpg", "file_size": 123456},
    ),
    (
        "broadcast_export_failed",
        (789, "Web JPEG", "disk full"),
        "export",
        {"photo_id": 789, "preset_name": "Web JPEG", "error_message": "disk full"},
    ),
]

CHANNELS = ["jobs", "photos", "sessions", "system", "queue", "approval", "export"]


@pytest.fixture(scope="module")
def shared_hub() -> Iterator[Hub]:
    hub = Hub().start()
    yield hub
    hub.close()


@pytest.fixture(scope="module")
def channel_subscribers(shared_hub: Hub) -> Iterator[Dict[str, RawSubscriber]]:
    """One subscriber per channel: receiving an event proves the channel it was published on."""
    subscribers = {channel: RawSubscriber(shared_hub, [channel]) for channel in CHANNELS}
    yield subscribers
    for subscriber in subscribers.values():
        subscriber.close()


def without_timestamp(event: Dict[str, Any]) -> Dict[str, Any]:
    """The event's own fields: what the hub adds (its time and, on a channel, its place there:
    channel, offset, epoch) is checked and taken out."""
    assert isinstance(event.pop("timestamp"), str)
    if "offset" in event:
        assert isinstance(event.pop("channel"), str)
        offset = event.pop("offset")
        assert isinstance(offset, int) and offset > 0
        assert isinstance(event.pop("epoch"), str)
    return event


def test_the_module_has_the_seed_functions_with_their_parameters() -> None:
    for name, parameters in SEED_SIGNATURES.items():
        function = getattr(events, name)
        assert list(inspect.signature(function).parameters) == parameters, name
    assert len(SEED_SIGNATURES) == 22
    assert {name for name in events.__all__ if name.startswith("broadcast_") and name != "broadcast_event"} == set(
        SEED_SIGNATURES
    )


@pytest.mark.parametrize("function, args, channel, fields", DELIVERIES, ids=[case[0] for case in DELIVERIES])
def test_each_function_delivers_its_event_on_its_channel(
    shared_hub: Hub,
    channel_subscribers: Dict[str, RawSubscriber],
    function: str,
    args: Tuple[Any, ...],
    channel: str,
    fields: Dict[str, Any],
) -> None:
    livebridge.configure(url=shared_hub.url)
    assert getattr(events, function)(*args) is True
    event = without_timestamp(channel_subscribers[channel].next_event())
    event_type = function[len("broadcast_") :]
    assert event == {"type": event_type, **fields}


def test_optional_fields_left_out_are_not_sent(shared_hub: Hub, channel_subscribers: Dict[str, RawSubscriber]) -> None:
    livebridge.configure(url=shared_hub.url)
    jobs = channel_subscribers["jobs"]
    assert events.broadcast_job_progress(job_id="j1", stage="queued", progress=0) is True
    assert without_timestamp(jobs.next_event()) == {"type": "job_progress", "job_id": "j1", "stage": "queued", "progress": 0.0}
    assert events.broadcast_job_failed("j1", error_message="boom") is True
    assert without_timestamp(jobs.next_event()) == {"type": "job_failed", "job_id": "j1", "error_message": "boom"}
    assert events.broadcast_session_completed(5, total_photos=3, approved_photos=3) is True
    assert without_timestamp(channel_subscribers["sessions"].next_event()) == {
        "type": "session_completed",
        "session_id": 5,
        "total_photos": 3,
        "approved_photos": 3,
    }


def test_broadcast_event_publishes_a_catalogue_event(shared_hub: Hub, channel_subscribers: Dict[str, RawSubscriber]) -> None:
    livebridge.configure(url=shared_hub.url)
    assert events.broadcast_event("photo_approved", {"photo_id": 1, "session_id": None}, channel="photos") is True
    assert without_timestamp(channel_subscribers["photos"].next_event()) == {"type": "photo_approved", "photo_id": 1}


BAD_CALLS = [
    ("progress", lambda: events.broadcast_job_progress("j", "s", "fifty")),
    ("progress", lambda: events.broadcast_job_progress("j", "s", 100.5)),
    ("progress", lambda: events.broadcast_job_progress("j", "s", True)),
    ("job_id", lambda: events.broadcast_job_progress(None, "s", 1)),
    ("job_id", lambda: events.broadcast_job_created(1.5, 2)),
    ("job_id", lambda: events.broadcast_job_created(2**63, 2)),
    ("stage", lambda: events.broadcast_job_progress("j", 3, 1)),
    ("pending_count", lambda: events.broadcast_queue_status(-1, 0, 0, 0)),
    ("failed_count", lambda: events.broadcast_queue_status(1, 0, 0, 2.0)),
    ("processed_photos", lambda: events.broadcast_session_updated(1, 10, 11, "x")),
    ("status", lambda: events.broadcast_system_status(42)),
    ("error_message", lambda: events.broadcast_job_failed("j")),
    ("total_photos", lambda: events.broadcast_session_completed(1, "name")),
    ("result", lambda: events.broadcast_job_completed("j", result=object())),
    ("ai_score", lambda: events.broadcast_photo_analyzed(1, float("nan"))),
    ("file_size", lambda: events.broadcast_export_completed(1, "p", "/o", -5)),
    ("progress", lambda: events.broadcast_event("job_progress", {"job_id": "j", "stage": "s"})),
    ("type", lambda: events.broadcast_event("job_progres", {"job_id": "j"})),
    ("phot", lambda: events.broadcast_event("job_started", {"job_id": 1, "photo_id": 2, "phot": 3})),
    ("channel", lambda: events.broadcast_event("job_started", {"job_id": 1, "photo_id": 2}, channel="photos")),
    ("type", lambda: events.broadcast({"no_type": 1})),
    ("channel", lambda: events.broadcast({"type": "note"}, channel="not a channel!")),
    ("progress", lambda: events.broadcast({"type": "job_progress", "job_id": 1, "stage": "s", "progress": -1})),
    ("client_id", lambda: events.send_to_client("", {"type": "note"})),
    ("message", lambda: events.send_to_client("abc", "not a dict")),
    ("client_type", lambda: events.send_to_client_type(None, {"type": "note"})),
]


@pytest.mark.parametrize("field, call", BAD_CALLS, ids=[f"{i}-{case[0]}" for i, case in enumerate(BAD_CALLS)])
def test_a_bad_argument_is_refused_naming_the_field_and_nothing_is_sent(
    shared_hub: Hub, channel_subscribers: Dict[str, RawSubscriber], field: str, call: Any
) -> None:
    livebridge.configure(url=shared_hub.url)
    routes = ["/api/events", "/ws/broadcast", "/ws/send/{client_id}"]
    before = {route: shared_hub.request_count(route) for route in routes}
    with pytest.raises(livebridge.EventError) as raised:
        call()
    assert raised.value.field == field
    assert field in str(raised.value)
    assert isinstance(raised.value, TypeError) and isinstance(raised.value, ValueError)
    assert {route: shared_hub.request_count(route) for route in routes} == before


def test_a_missing_positional_argument_is_a_type_error_naming_it() -> None:
    with pytest.raises(TypeError, match="stage"):
        events.broadcast_job_progress("j")  # type: ignore[call-arg]


def test_a_refusal_from_the_hub_is_raised_even_when_not_strict(publish_to: Hub) -> None:
    nested: Any = "leaf"
    for _ in range(40):
        nested = [nested]
    with pytest.raises(livebridge.EventError, match="deep|depth|nest"):
        events.broadcast({"type": "deep", "value": nested}, channel="mine")


def test_broadcast_and_direct_messages(publish_to: Hub) -> None:
    hub = publish_to
    gui = RawSubscriber(hub, ["mine"], client_type="gui")
    web = RawSubscriber(hub, [], client_type="web")
    try:
        assert events.broadcast({"type": "note", "text": "to the channel"}, channel="mine") is True
        assert gui.next_event()["text"] == "to the channel"
        assert events.broadcast({"type": "note", "text": "to everyone"}) is True
        assert gui.next_event()["text"] == "to everyone"
        assert web.next_event()["text"] == "to everyone"
        assert events.send_to_client(web.client_id, {"type": "note", "text": "to web"}) is True
        assert web.next_event()["text"] == "to web"
        assert events.send_to_client_type("gui", {"type": "note", "text": "to guis"}) is True
        assert without_timestamp(gui.next_event()) == {"type": "note", "text": "to guis"}
        web.assert_silent()
    finally:
        gui.close()
        web.close()


def test_a_direct_message_to_an_unknown_client_is_false_or_raises_when_strict(publish_to: Hub) -> None:
    unknown = "0b7c2f4e-8a55-4d7e-9a44-0f3e1f2d3c4b"
    assert events.send_to_client(unknown, {"type": "note"}) is False
    livebridge.configure(strict=True)
    with pytest.raises(livebridge.PublishError) as raised:
        events.send_to_client(unknown, {"type": "note"})
    assert raised.value.status == 404


def test_the_admin_token_from_the_environment_and_from_configure(
    start_hub: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    hub = start_hub("--admin-token", "s3cret")
    subscriber = RawSubscriber(hub, ["jobs"])
    try:
        monkeypatch.setenv("LIVEBRIDGE_URL", hub.url)
        monkeypatch.setenv("LIVEBRIDGE_ADMIN_TOKEN", "s3cret")
        livebridge.settings.reset()
        assert events.broadcast_job_started("from-env", 1) is True
        assert subscriber.next_event()["job_id"] == "from-env"

        livebridge.configure(admin_token="wrong", retry_interval=0)
        with caplog.at_level(logging.WARNING, logger="livebridge"):
            assert events.broadcast_job_started("refused", 1) is False
        assert any("401" in record.getMessage() for record in caplog.records)

        livebridge.configure(admin_token="s3cret")
        assert events.broadcast_job_started("from-configure", 1) is True
        assert subscriber.next_event()["job_id"] == "from-configure"
    finally:
        subscriber.close()



HUB_FIELD_KINDS = {
    "id": catalogue.Kind.ID,
    "string": catalogue.Kind.TEXT,
    "number": catalogue.Kind.NUMBER,
    "count": catalogue.Kind.COUNT,
    "string_or_object": catalogue.Kind.STATUS,
    "any": catalogue.Kind.JSON,
}


def test_the_local_catalogue_matches_the_hubs(shared_hub: Hub) -> None:
    try:
        served = shared_hub.get("/api/catalogue")
    except urllib.error.HTTPError as err:
        if err.code != 404:
            raise
        pytest.skip("this hub does not serve /api/catalogue")
    hub_events = {event["type"]: event for event in served["events"]}
    assert set(hub_events) == set(catalogue.CATALOGUE)
    for event_type, spec in catalogue.CATALOGUE.items():
        served_event = hub_events[event_type]
        assert served_event["channel"] == spec.channel, event_type
        served_fields = [
            (
                f["name"],
                catalogue.Kind.PERCENT if (f.get("min"), f.get("max")) == (0.0, 100.0) else HUB_FIELD_KINDS[f["type"]],
                f["required"],
            )
            for f in served_event["fields"]
        ]
        assert served_fields == [(f.name, f.kind, f.required) for f in spec.fields], event_type
