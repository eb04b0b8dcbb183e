"""Batching against the real hub: a burst of publishes from several threads goes out in far
fewer `POST /api/events` requests (counted by the hub's /metrics), and every event arrives
exactly once, in each thread's order."""

from __future__ import annotations

import threading
from collections import defaultdict
from typing import Callable, Dict, List

import livebridge
from livebridge import events
from support import Hub, RawSubscriber

THREADS = 10
PER_THREAD = 50


def test_a_single_publish_is_one_request(publish_to: Hub) -> None:
    before = publish_to.request_count("/api/events")
    assert events.broadcast_job_started("alone", 1) is True
    assert publish_to.request_count("/api/events") == before + 1


def test_a_burst_from_many_threads_is_batched_and_arrives_once_in_order(start_hub: Callable[..., Hub]) -> None:
    hub = start_hub("--queue-limit", "1000")
    livebridge.configure(url=hub.url, timeout=5.0)
    subscriber = RawSubscriber(hub, ["jobs"])
    results: Dict[int, List[bool]] = defaultdict(list)
    start = threading.Barrier(THREADS, timeout=30)  # a thread that never comes fails the others

    def publish_all(thread: int) -> None:
        start.wait()
        for step in range(PER_THREAD):
            results[thread].append(events.broadcast_job_progress(f"thread-{thread}", "burst", step, str(step)))

    workers = [threading.Thread(target=publish_all, args=(t,)) for t in range(THREADS)]
    before = hub.request_count("/api/events")
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(30)
    requests = hub.request_count("/api/events") - before

    assert all(results[t] == [True] * PER_THREAD for t in range(THREADS))
    received = subscriber.events(THREADS * PER_THREAD)
    subscriber.assert_silent()
    per_thread: Dict[str, List[float]] = defaultdict(list)
    for event in received:
        per_thread[event["job_id"]].append(event["progress"])
    assert per_thread == {f"thread-{t}": [float(step) for step in range(PER_THREAD)] for t in range(THREADS)}
    # Each thread waits for its own result, so at most THREADS events can wait together:
    # 500 events need at least 50 requests; unbatched they would need 500.
    assert requests <= THREADS * PER_THREAD // 3, f"{requests} requests for {THREADS * PER_THREAD} events"
    subscriber.close()
