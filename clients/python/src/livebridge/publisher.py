"""The publisher: sends events and messages to the hub over one keep-alive HTTP connection,
batching bursts, and turns an outage into one warning and `False` instead of an exception.

Batching design. Every publish is put on one FIFO queue and its caller waits for the result
of the request that carried it, so a publish returns True only once the hub accepted it (and
an error is raised in the caller that made it). A single background thread (the flusher)
takes whatever is queued and sends it as one request, then takes what accumulated meanwhile:

- a lone publish from a script goes out at once (the flusher is idle), one request;
- a burst from many threads, or a fast loop in one thread that other threads join, queues up
  while the previous request is in flight and goes out as one `POST /api/events` with a JSON
  list (at most `max_batch_events` events and `max_batch_bytes` bytes, under the hub's 1000
  events and 64 KiB body limits).

There is no timer and no added latency: batching only happens because a request is in flight.
Broadcasts and direct messages go through the same queue (alone, as their own requests), so
everything one thread publishes reaches the hub in the order it was published.

Failures. A wrong argument is found before queueing (`livebridge.catalogue`) and raised. A
400 or 413 from the hub is an `EventError` for the event at fault (the others of its batch are
sent again without it). No answer, a timeout, a 5xx, a 401 ... are an outage: logged once as a
warning on the `livebridge` logger, then at DEBUG until a publish succeeds again; the call
returns False, or raises `PublishError` when the settings are strict. After a failure the
publisher does not touch the network for `retry_interval` seconds, so a job runner does not
wait a timeout for every event while the hub is down.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
import time
from collections import deque
from typing import Any, Deque, Dict, List, Mapping, Optional
from urllib.parse import quote

from .catalogue import validate_channel_name, validate_event, validate_message
from .errors import EventError, PublishError
from .httpjson import HubConnection, HubUnreachable, Response
from .settings import Settings

logger = logging.getLogger("livebridge")

MAX_BATCH_EVENTS = 1000
# The hub refuses bodies over 64 KiB (max_body_bytes); keep a margin for the list brackets.
MAX_BATCH_BYTES = 64_000

_BATCH_ERROR = re.compile(r"^events\[(\d+)\]: (.*)$", re.DOTALL)


class _Pending:
    """One publish waiting in the queue, and then its outcome."""

    __slots__ = ("path", "payload", "is_event", "solo", "direct", "done", "error", "abandoned")

    def __init__(self, path: str, payload: bytes, is_event: bool, direct: bool = False) -> None:
        self.path = path
        self.payload = payload
        self.is_event = is_event  # batchable into POST /api/events
        self.solo = False  # send alone (set when a batch failed and must be told apart)
        self.direct = direct  # a message to one client: 404 means "not connected"
        self.done = threading.Event()
        self.error: Optional[Exception] = None
        self.abandoned = False  # the caller stopped waiting


class _NotConnected(Exception):
    """The client a direct message was for is not connected (404)."""


class Publisher:
    """Publishes to one hub. Thread-safe; the module-level functions of `livebridge.events`
    share one instance (`default_publisher()`)."""

    def __init__(
        self,
        settings: Optional[Settings] = None,
        *,
        max_batch_events: int = MAX_BATCH_EVENTS,
        max_batch_bytes: int = MAX_BATCH_BYTES,
    ) -> None:
        self.settings = settings or Settings()
        self.max_batch_events = max_batch_events
        self.max_batch_bytes = max_batch_bytes
        self._init_state()

    def _init_state(self) -> None:
        self._pid = os.getpid()
        self._cond = threading.Condition()
        self._queue: Deque[_Pending] = deque()
        self._batch_cap: Optional[int] = None  # one-shot smaller batch after a 413
        self._thread: Optional[threading.Thread] = None
        self._closed = False
        self._connection: Optional[HubConnection] = None
        # Outage bookkeeping, touched by the flusher thread only.
        self._outage_since: Optional[float] = None
        self._failures_in_outage = 0
        self._retry_at = 0.0
        self._last_failure = ""

    # ----------------------------------------------------------------------------------
    # Public operations

    def publish(self, event_type: str, fields: Mapping[str, Any]) -> bool:
        """Publishes one catalogue event on its channel (`POST /api/events`)."""
        event = validate_event(event_type, fields)
        return self._submit(_Pending("/api/events", _encode(event), is_event=True))

    def broadcast(
        self,
        message: Mapping[str, Any],
        channel: Optional[str] = None,
        client_type: Optional[str] = None,
    ) -> bool:
        """Sends a message to everyone, a channel's subscribers, and/or the clients of one
        type (`POST /ws/broadcast`)."""
        body: Dict[str, Any] = {"message": validate_message(message)}
        if channel is not None:
            body["channel"] = validate_channel_name(channel)
        if client_type is not None:
            if not isinstance(client_type, str) or not client_type:
                raise EventError("client_type: must be a non-empty str", "client_type")
            body["client_type"] = client_type
        return self._submit(_Pending("/ws/broadcast", _encode(body), is_event=False))

    def send_to_client(self, client_id: str, message: Mapping[str, Any]) -> bool:
        """Sends a message to one client (`POST /ws/send/<client_id>`). False when that
        client is not connected."""
        if not isinstance(client_id, str) or not client_id:
            raise EventError("client_id: must be a non-empty str", "client_id")
        body = {"message": validate_message(message)}
        path = "/ws/send/" + quote(client_id, safe="")
        return self._submit(_Pending(path, _encode(body), is_event=False, direct=True))

    def request(self, method: str, path: str, body: Any = None) -> Response:
        """One request outside the publish queue (history, management). Raises
        `PublishError` when the hub cannot be reached."""
        connection = HubConnection(self.settings.url, self.settings.timeout, self._headers())
        try:
            return connection.request(method, path, body)
        except HubUnreachable as err:
            raise PublishError(f"livebridge hub at {self.settings.url} unreachable: {err}") from None
        finally:
            connection.close()

    @property
    def queued(self) -> int:
        """Publishes waiting for a request (not counting the request in flight)."""
        with self._cond:
            return len(self._queue)

    def close(self, wait: bool = True) -> None:
        """Stops the flusher once the queue is empty and closes its connection. A later
        publish starts them again."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        thread = self._thread
        if wait and thread is not None and thread is not threading.current_thread():
            thread.join(self.settings.timeout * 2 + 1)

    # ----------------------------------------------------------------------------------
    # The queue and its callers

    def _submit(self, item: _Pending) -> bool:
        if self._pid != os.getpid():
            # A forked child (multiprocessing job runners) has the parent's queue but not its
            # thread or socket: start afresh.
            self._init_state()
        with self._cond:
            self._closed = False  # a closed publisher that is used again starts afresh
            self._queue.append(item)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._flush_forever, name="livebridge-publisher", daemon=True
                )
                self._thread.start()
            self._cond.notify()
        # The flusher may first finish the request in flight, then sends ours; both are
        # bounded by the timeout (twice each: a stale keep-alive connection is retried once).
        if not item.done.wait(self.settings.timeout * 4 + 1):
            item.abandoned = True
            item.error = PublishError(
                f"livebridge hub at {self.settings.url} did not answer in time"
            )
        return self._outcome(item)

    def _outcome(self, item: _Pending) -> bool:
        error = item.error
        if error is None:
            return True
        if isinstance(error, EventError):
            raise EventError(str(error), error.field) from None
        if isinstance(error, _NotConnected):
            if self.settings.strict:
                raise PublishError(str(error), 404, str(error)) from None
            return False
        if self.settings.strict:
            assert isinstance(error, PublishError)
            raise PublishError(str(error), error.status, error.server_error) from None
        return False

    # ----------------------------------------------------------------------------------
    # The flusher thread

    def _flush_forever(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closed:
                    self._cond.wait()
                if not self._queue:
                    self._thread = None  # the next publish starts a new flusher
                    break
                batch = self._take_batch()
            if batch:
                self._send(batch)
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def _take_batch(self) -> List[_Pending]:
        """The next request's items: one non-event item, or a run of events that fits the
        limits. Called with the lock held."""
        while self._queue and self._queue[0].abandoned:
            self._queue.popleft()
        if not self._queue:
            return []
        first = self._queue.popleft()
        if not first.is_event or first.solo:
            return [first]
        cap = self._batch_cap or self.max_batch_events
        self._batch_cap = None
        batch = [first]
        size = len(first.payload) + 2
        while self._queue and len(batch) < cap:
            candidate = self._queue[0]
            if candidate.abandoned:
                self._queue.popleft()
                continue
            if not candidate.is_event or candidate.solo:
                break
            if size + len(candidate.payload) + 1 > self.max_batch_bytes:
                break
            batch.append(self._queue.popleft())
            size += len(candidate.payload) + 1
        return batch

    def _requeue_front(self, items: List[_Pending], cap: Optional[int] = None) -> None:
        with self._cond:
            self._queue.extendleft(reversed(items))
            self._batch_cap = cap

    def _send(self, batch: List[_Pending]) -> None:
        now = time.monotonic()
        if now < self._retry_at:
            self._failures_in_outage += len(batch)
            logger.debug("livebridge: publish not attempted: the hub failed %.2f s ago", now - (self._retry_at - self.settings.retry_interval))
            self._fail_all(batch, f"{self._last_failure} (not retried for {self.settings.retry_interval:g} s)")
            return
        first = batch[0]
        if first.is_event:
            payload = b"[" + b",".join(item.payload for item in batch) + b"]"
        else:
            payload = first.payload
        try:
            answer = self._connect().request("POST", first.path, payload)
        except HubUnreachable as err:
            self._outage(str(err))
            self._fail_all(batch, str(err))
            return
        if answer.status == 200 and isinstance(answer.body, dict) and answer.body.get("success") is True:
            self._recovered()
            self._finish(batch, None)
            return
        if answer.status in (400, 413):
            self._recovered()  # the hub answered: not an outage
            self._refused(batch, answer)
            return
        if answer.status == 404 and first.direct:
            self._recovered()
            self._finish(batch, _NotConnected(f"livebridge: {answer.error}"))
            return
        reason = f"HTTP {answer.status}: {answer.error}"
        self._outage(reason)
        self._fail_all(batch, reason, answer)

    def _refused(self, batch: List[_Pending], answer: Response) -> None:
        """A 400 or 413: find the event at fault, refuse it, send the others again."""
        message = answer.error
        if len(batch) == 1:
            if answer.status == 413:
                message = f"too large for the hub: {message}"
            self._finish(batch, EventError(message, _field_of(message)))
            return
        if answer.status == 413:
            self._requeue_front(batch, cap=max(1, len(batch) // 2))
            return
        match = _BATCH_ERROR.match(message)
        if match and int(match.group(1)) < len(batch):
            index = int(match.group(1))
            problem = match.group(2)
            self._finish([batch[index]], EventError(problem, _field_of(problem)))
            self._requeue_front(batch[:index] + batch[index + 1 :])
            return
        # The hub did not say which one: send them one by one to find out.
        for item in batch:
            item.solo = True
        self._requeue_front(batch)

    def _connect(self) -> HubConnection:
        if self._connection is None:
            self._connection = HubConnection(self.settings.url, self.settings.timeout, self._headers())
        return self._connection

    def _headers(self) -> Dict[str, str]:
        headers = {"User-Agent": "livebridge-python"}
        if self.settings.admin_token:
            headers["Authorization"] = f"Bearer {self.settings.admin_token}"
        return headers

    def _finish(self, batch: List[_Pending], error: Optional[Exception]) -> None:
        for item in batch:
            item.error = error
            item.done.set()

    def _fail_all(self, batch: List[_Pending], reason: str, answer: Optional[Response] = None) -> None:
        status = answer.status if answer is not None else None
        server_error = answer.error if answer is not None else None
        error = PublishError(
            f"livebridge hub at {self.settings.url}: {reason}", status, server_error
        )
        self._finish(batch, error)

    def _outage(self, reason: str) -> None:
        self._retry_at = time.monotonic() + self.settings.retry_interval
        self._last_failure = reason
        self._failures_in_outage += 1
        if self._outage_since is None:
            self._outage_since = time.monotonic()
            logger.warning(
                "livebridge: cannot publish to %s: %s; publishes fail until the hub answers "
                "again (further failures are logged at DEBUG)",
                self.settings.url,
                reason,
            )
        else:
            logger.debug("livebridge: publish failed: %s", reason)

    def _recovered(self) -> None:
        if self._outage_since is None:
            return
        logger.info(
            "livebridge: publishing to %s works again after %.1f s (%d failed attempt(s))",
            self.settings.url,
            time.monotonic() - self._outage_since,
            self._failures_in_outage,
        )
        self._outage_since = None
        self._failures_in_outage = 0
        self._retry_at = 0.0


def _encode(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), allow_nan=False).encode()


def _field_of(problem: str) -> Optional[str]:
    """The field named by a hub error such as `job_progress.progress: invalid type ...`."""
    match = re.match(r"^[a-z_]+\.([A-Za-z0-9_.\[\]]+): ", problem)
    return match.group(1) if match else None


_default_lock = threading.Lock()
_default: Optional[Publisher] = None


def default_publisher() -> Publisher:
    """The publisher of the module-level functions, for the current settings (a new one
    after `livebridge.configure()` changed them)."""
    from . import settings as settings_module

    global _default
    wanted = settings_module.current()
    old = None
    with _default_lock:
        if _default is None or _default.settings != wanted:
            old, _default = _default, Publisher(wanted)
        publisher = _default
    if old is not None:
        old.close(wait=False)  # its flusher finishes what is queued, then stops
    return publisher
