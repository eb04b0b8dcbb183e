"""The subscriber's protocol logic without a hub (livebridge.session and livebridge.positions):
what a session sends when it opens, duplicates dropped, replays after a drop over each
transport's message order, failed recoveries, and the reconnect backoff. The same rules run
against a hub with history in test_recovery.py."""

from __future__ import annotations

import random
from typing import Any, Dict, List

from livebridge.session import Request, SessionCore, is_application_message, reconnect_delay

EPOCH = "e1"


def event(offset: int, channel: str = "jobs", epoch: str = EPOCH) -> Dict[str, Any]:
    return {"type": "job_started", "job_id": offset, "photo_id": 1, "channel": channel, "offset": offset, "epoch": epoch}


def delivered(core: SessionCore, messages: List[Dict[str, Any]]) -> List[Any]:
    """Feeds messages to the core; returns the offsets (or notice types) it delivers."""
    out: List[Any] = []
    for message in messages:
        for item in core.receive(message).deliver:
            if item["type"] == "job_started":
                out.append(item["offset"])
            elif item["type"] == "recovery_failed":
                out.append(("recovery_failed", item["channel"]))
    return out


def subscribed_reply(request: Request, latest: int, recovered: bool = True, epoch: str = EPOCH) -> Dict[str, Any]:
    since = request.message.get("since", {})
    return {
        "type": "subscribed",
        "channels": request.message["channels"],
        "subscriptions": request.message["channels"],
        "recovered": {channel: recovered for channel in since},
        "positions": {channel: {"offset": latest, "epoch": epoch} for channel in request.message["channels"]},
    }


def core_at(offset: int) -> SessionCore:
    """A core on a fresh session that has seen events 1..offset of "jobs"."""
    core = SessionCore("gui", "GUI", ["jobs"])
    core.opened("id-1", resumed=False)
    assert delivered(core, [event(n) for n in range(1, offset + 1)]) == list(range(1, offset + 1))
    return core


def test_a_new_session_registers_and_subscribes_a_resumed_one_only_subscribes() -> None:
    core = SessionCore("gui", "Desktop GUI", ["jobs", "photos", "jobs"])
    first = core.opened("id-1", resumed=False)
    assert [r.message for r in first] == [
        {"type": "register", "client_type": "gui", "client_name": "Desktop GUI"},
        {"type": "subscribe", "channels": ["jobs", "photos"]},
    ]
    assert [r.message for r in core.opened("id-1", resumed=True)] == [{"type": "subscribe", "channels": ["jobs", "photos"]}]


def test_without_history_everything_is_delivered_and_nothing_is_recovered() -> None:
    core = SessionCore("gui", None, ["jobs"])
    core.opened("id-1", resumed=False)
    plain = {"type": "job_started", "job_id": 1, "photo_id": 1}
    assert core.receive(plain).deliver == [plain]
    assert core.receive(plain).deliver == [plain]  # no offsets: no way (and no need) to dedup
    assert core.receive({"type": "messages_dropped", "dropped": 3}).send == []
    assert core.dropped(3).send == []
    assert [r.message for r in core.opened("id-2", resumed=False)][1] == {"type": "subscribe", "channels": ["jobs"]}
    reply = {"type": "subscribed", "channels": ["jobs"], "subscriptions": ["jobs"]}
    assert core.receive(reply).deliver == [reply]


def test_duplicates_never_reach_the_application() -> None:
    core = core_at(3)
    assert delivered(core, [event(2), event(3), event(4), event(4), event(1), event(5)]) == [4, 5]


def test_a_reconnect_subscribes_with_the_positions_seen() -> None:
    core = core_at(41)
    core.subscribe(["photos"])
    requests = core.opened("id-1", resumed=True)
    assert requests[0].message == {
        "type": "subscribe",
        "channels": ["jobs", "photos"],
        "since": {"jobs": {"offset": 41, "epoch": EPOCH}},
    }


def test_websocket_order_a_drop_then_survivors_then_the_reply_and_the_replay() -> None:
    # Over a WebSocket: messages_dropped, the messages that survived the overflow (50..57),
    # then the reply to our subscribe, the replay (42..57) and live events.
    core = core_at(41)
    outcome = core.receive({"type": "messages_dropped", "dropped": 8})
    assert [m["type"] for m in outcome.deliver] == ["messages_dropped"]
    (request,) = outcome.send
    assert request.message["since"] == {"jobs": {"offset": 41, "epoch": EPOCH}}
    assert delivered(core, [event(n) for n in range(50, 58)]) == []
    assert core.receive(subscribed_reply(request, latest=57), request).deliver[1:] == []
    assert delivered(core, [event(n) for n in range(42, 58)] + [event(58)]) == list(range(42, 59))


def test_polling_order_the_reply_first_then_queued_events_then_the_replay() -> None:
    # Over long polling the reply comes with /ws/send; then the next polls return what was
    # queued before the subscribe (58..60, published between the two requests), the replay
    # (42..60) and live events.
    core = core_at(41)
    (request,) = core.dropped(8).send
    core.receive(subscribed_reply(request, latest=60), request)
    survivors = [event(n) for n in range(50, 58)]  # came with the poll that reported the drop
    queued_meanwhile = [event(n) for n in range(58, 61)]
    replay = [event(n) for n in range(42, 61)]
    assert delivered(core, survivors + queued_meanwhile + replay + [event(61)]) == list(range(42, 62))


def test_a_replay_ends_when_an_event_beyond_it_arrives() -> None:
    core = core_at(10)
    (request,) = core.dropped(1).send
    core.receive(subscribed_reply(request, latest=12), request)
    # 11 and 12 never come (events this client published itself are not sent back to it):
    # the next live event ends the recovery instead of being held back forever.
    assert delivered(core, [event(13), event(14)]) == [13, 14]
    assert not core.positions.recovering("jobs")


def test_a_failed_recovery_is_reported_and_the_new_position_adopted() -> None:
    core = core_at(41)
    (request,) = core.opened("id-2", resumed=False)[1:]
    outcome = core.receive(subscribed_reply(request, latest=7, recovered=False, epoch="e2"), request)
    notices = [m for m in outcome.deliver if m["type"] == "recovery_failed"]
    assert notices == [{"type": "recovery_failed", "channel": "jobs", "positions": {"jobs": {"offset": 7, "epoch": "e2"}}}]
    assert is_application_message(notices[0])
    assert delivered(core, [event(7, epoch="e2"), event(8, epoch="e2")]) == [8]


def test_history_lost_under_a_live_subscription_is_reported_before_the_event() -> None:
    core = core_at(5)
    assert delivered(core, [event(1, epoch="e2"), event(2, epoch="e2")]) == [("recovery_failed", "jobs"), 1, 2]


def test_a_plain_subscription_on_a_new_session_starts_at_the_hubs_position() -> None:
    # So that an event missed before the first one arrives can be recovered later.
    core = SessionCore("gui", None, ["jobs"])
    request = core.opened("id-1", resumed=False)[1]
    core.receive(subscribed_reply(request, latest=9), request)
    assert core.positions.since(["jobs"]) == {"jobs": {"offset": 9, "epoch": EPOCH}}


def test_a_hub_that_does_not_answer_recovered_does_not_leave_the_channel_waiting() -> None:
    core = core_at(3)
    (request,) = core.dropped(1).send
    reply = {"type": "subscribed", "channels": ["jobs"], "subscriptions": ["jobs"]}
    core.receive(reply, request)
    assert delivered(core, [event(6)]) == [6]


def test_unsubscribing_forgets_the_position() -> None:
    core = core_at(3)
    request = core.unsubscribe(["jobs"])
    assert request is not None and request.message == {"type": "unsubscribe", "channels": ["jobs"]}
    assert core.positions.since(["jobs"]) == {}
    assert core.opened("id-1", resumed=True) == []


def test_application_messages_are_told_from_protocol_messages() -> None:
    assert is_application_message({"type": "job_progress"})
    assert is_application_message({"type": "my_own_broadcast"})
    for control in ("subscribed", "pong", "connection_established", "messages_dropped", "state", "error"):
        assert not is_application_message({"type": control})


def test_reconnect_delays_grow_exponentially_with_jitter_up_to_the_cap() -> None:
    rng = random.Random(7)
    for attempt in range(12):
        ceiling = min(10.0, 0.5 * 2**attempt)
        delays = [reconnect_delay(attempt, 0.5, 10.0, rng) for _ in range(50)]
        assert all(ceiling / 2 <= d <= ceiling for d in delays)
        assert len(set(delays)) > 1  # jittered

