"""The publisher's rules against a scripted hub: what accumulates while a request is in flight
goes out as one batch, a refused event is told apart from the rest of its batch, a batch that
is too large is split, an outage is not retried within retry_interval, and a keep-alive
connection the hub closed is reopened without sending anything twice."""

from __future__ import annotations

import json
import threading
from typing import Any, Iterator, List

import pytest

import livebridge
from livebridge import Publisher, Settings
from stub_hub import StubHub, failing, ok_events
from support import wait_for


@pytest.fixture
def stub() -> Iterator[StubHub]:
    hub = StubHub()
    hub.answer = ok_events
    yield hub
    hub.close()


def publisher_for(stub: StubHub, **settings: Any) -> Publisher:
    options = {"timeout": 2.0, "retry_interval": 0.0, **settings}
    return Publisher(Settings(url=stub.url, **options))


def progress(publisher: Publisher, job: Any, step: int) -> bool:
    return publisher.publish("job_progress", {"job_id": job, "stage": "s", "progress": step})


def test_a_single_publish_is_one_request_with_its_result(stub: StubHub) -> None:
    publisher = publisher_for(stub)
    assert progress(publisher, "one", 1) is True
    assert stub.requests == [("/api/events", [{"type": "job_progress", "job_id": "one", "stage": "s", "progress": 1}])]


def test_publishes_made_while_a_request_is_in_flight_go_out_together(stub: StubHub) -> None:
    publisher = publisher_for(stub)
    stub.hold_first.clear()
    results: List[bool] = []
    first = threading.Thread(target=lambda: results.append(progress(publisher, "first", 0)))
    first.start()
    assert stub.first_arrived.wait(5)
    waiting = [threading.Thread(target=lambda i=i: results.append(progress(publisher, "burst", i))) for i in range(20)]
    for thread in waiting:
        thread.start()
    wait_for(lambda: publisher.queued == 20, what="20 queued publishes")
    stub.hold_first.set()
    for thread in [first, *waiting]:
        thread.join(5)
    assert results == [True] * 21
    assert stub.events_per_request() == [1, 20]
    assert sorted(event["progress"] for event in stub.requests[1][1]) == list(range(20))


def hold_until_queued(stub: StubHub, publisher: Publisher, count: int) -> List[threading.Thread]:
    """Holds a first publish in flight until `count` more are queued behind it, so they make
    one batch; returns the threads (results in `thread.result`)."""
    stub.hold_first.clear()
    threads: List[threading.Thread] = []

    def run(job: str, step: int) -> None:
        current = threading.current_thread()
        try:
            current.result = progress(publisher, job, step)  # type: ignore[attr-defined]
        except Exception as err:  # noqa: BLE001 (the test inspects it)
            current.result = err  # type: ignore[attr-defined]

    opener = threading.Thread(target=run, args=("opener", 0))
    opener.start()
    assert stub.first_arrived.wait(5)
    for i in range(count):
        thread = threading.Thread(target=run, args=(f"job{i}", i))
        thread.start()
        wait_for(lambda i=i: publisher.queued == i + 1, what="the publish to queue")
        threads.append(thread)
    stub.hold_first.set()
    opener.join(5)
    for thread in threads:
        thread.join(5)
    return threads


def test_an_event_the_hub_refuses_fails_alone_and_the_rest_of_its_batch_is_sent(stub: StubHub) -> None:
    publisher = publisher_for(stub)
    stub.answer = failing(400, "events[1]: job_progress.stage: bad stage", when=lambda body: len(body) == 3)
    threads = hold_until_queued(stub, publisher, 3)
    assert threads[0].result is True  # type: ignore[attr-defined]
    refused = threads[1].result  # type: ignore[attr-defined]
    assert isinstance(refused, livebridge.EventError) and refused.field == "stage"
    assert "bad stage" in str(refused)
    assert threads[2].result is True  # type: ignore[attr-defined]
    assert [[e["job_id"] for e in body] for _, body in stub.requests[1:]] == [["job0", "job1", "job2"], ["job0", "job2"]]


def test_when_the_hub_does_not_say_which_event_is_wrong_each_is_sent_alone(stub: StubHub) -> None:
    publisher = publisher_for(stub)
    stub.answer = failing(400, "JSON nested too deeply", when=lambda body: any(e["job_id"] == "job1" for e in body))
    threads = hold_until_queued(stub, publisher, 3)
    assert [type(t.result).__name__ for t in threads] == ["bool", "EventError", "bool"]  # type: ignore[attr-defined]
    assert stub.events_per_request() == [1, 3, 1, 1, 1]


def test_a_batch_that_is_too_large_is_split(stub: StubHub) -> None:
    publisher = publisher_for(stub)
    stub.answer = failing(413, "body too large", when=lambda body: len(body) > 2)
    threads = hold_until_queued(stub, publisher, 4)
    assert all(t.result is True for t in threads)  # type: ignore[attr-defined]
    assert stub.events_per_request() == [1, 4, 2, 2]
    sent = [e["job_id"] for _, body in stub.requests[2:] for e in body]
    assert sent == ["job0", "job1", "job2", "job3"]


def test_batches_stay_under_the_byte_limit(stub: StubHub) -> None:
    publisher = Publisher(Settings(url=stub.url), max_batch_bytes=400)
    threads = hold_until_queued(stub, publisher, 10)
    assert all(t.result is True for t in threads)  # type: ignore[attr-defined]
    assert sum(stub.events_per_request()[1:]) == 10
    sizes = [len(json.dumps(body, separators=(",", ":"))) for _, body in stub.requests[1:]]
    assert len(sizes) >= 2 and max(sizes) <= 400, sizes


def test_after_a_failure_the_hub_is_not_retried_within_retry_interval(stub: StubHub) -> None:
    publisher = publisher_for(stub, retry_interval=60.0)
    stub.answer = failing(503, "shutting down")
    assert progress(publisher, "a", 1) is False
    assert progress(publisher, "b", 2) is False
    assert len(stub.requests) == 1


def test_strict_raises_with_the_hub_message(stub: StubHub) -> None:
    publisher = publisher_for(stub, strict=True)
    stub.answer = failing(503, "the server is shutting down")
    with pytest.raises(livebridge.PublishError) as raised:
        progress(publisher, "a", 1)
    assert raised.value.status == 503
    assert raised.value.server_error == "the server is shutting down"
    assert "the server is shutting down" in str(raised.value)


def test_a_connection_the_hub_closed_while_idle_is_reopened_without_duplicates(stub: StubHub) -> None:
    publisher = publisher_for(stub)
    stub.close_after_each = True
    assert [progress(publisher, "k", step) for step in range(5)] == [True] * 5
    assert [body[0]["progress"] for _, body in stub.requests] == [0, 1, 2, 3, 4]
    assert stub.connections == 5


def test_keep_alive_reuses_one_connection(stub: StubHub) -> None:
    publisher = publisher_for(stub)
    assert [progress(publisher, "k", step) for step in range(5)] == [True] * 5
    assert stub.connections == 1


def test_a_forked_child_gets_its_own_flusher(stub: StubHub) -> None:
    import os

    publisher = publisher_for(stub)
    assert progress(publisher, "parent", 1) is True
    pid = os.fork()
    if pid == 0:  # the child: publish through the inherited publisher and report by exit code
        code = 0 if progress(publisher, "child", 2) is True else 1
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.WEXITSTATUS(status) == 0
    assert [body[0]["job_id"] for _, body in stub.requests] == ["parent", "child"]
