"""`livebridge.Client`: a subscriber in a background thread, for desktop applications and
scripts.

    client = livebridge.Client("http://127.0.0.1:5100", channels=["jobs", "system"])
    client.on("job_progress", lambda event: print(event["job_id"], event["progress"]))
    client.start()

Transport: a WebSocket through the `websockets` package's sync client when it is installed
and the hub accepts the upgrade, otherwise the hub's HTTP long poll (standard library). The
choice is made once: after falling back, the client stays on long polling.

Reconnecting: after a failure the client waits a jittered, exponentially growing delay and
reconnects, resuming its session by `client_id` (`/ws?client_id=` or a handshake with it), so
the events queued meanwhile are delivered. When the hub no longer knows the session (it was
restarted, or the session went stale) the new session is registered and subscribed again.
Every (re)subscription carries the last channel positions seen, so a hub with channel history
replays what was missed; duplicates never reach the callbacks (see `livebridge.positions`).

Callbacks run on the client's thread, one at a time, in the order the hub sent the messages.
`on(type)` receives messages of that type, including the protocol's (`subscribed`,
`messages_dropped`, `connection_established` ...) and the client's own notices: `state`
(`{"type": "state", "state": "connecting" | "open" | "polling" | "reconnecting" | "closed"}`)
and `recovery_failed` (`{"channel", "positions"}`: missed events could not be replayed;
reload that channel's state). `on("*")` receives every application message (events, your own
broadcasts and direct messages) and `recovery_failed`.
"""

from __future__ import annotations

import atexit
import functools
import inspect
import json
import logging
import threading
import weakref
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any, Callable, Dict, Iterable, List, Optional

from .catalogue import CHANNELS, validate_message
from .errors import EventError, PublishError
from .httpjson import HubUnreachable
from .session import PROTOCOL_VERSION, REPLY_TYPES, Outcome, Request, SessionCore, is_application_message, reconnect_delay
from .settings import check_url, current
from .transports import NOT_A_TRANSPORT_PROBLEM, TRANSPORTS, PollingLink, WebSocketLink, websocket_url

logger = logging.getLogger("livebridge")

Callback = Callable[[Dict[str, Any]], Any]


class _FallBack(Exception):
    """The WebSocket cannot be used here; long polling may work."""


class _SessionEnded(Exception):
    """The hub ended the session or handed it to another connection: make a new one now."""


class _Refused(Exception):
    """The hub answered, but not as the protocol says (a 5xx, a non-JSON answer...)."""


_running_clients: "weakref.WeakSet[Client]" = weakref.WeakSet()


@atexit.register
def _stop_running_clients() -> None:
    # An application that exits without stop() should not leave its session at the hub
    # until it goes stale; the threads are daemons, so nothing else would stop them.
    for client in list(_running_clients):
        client.stop(timeout=1.0)


class Client:
    """A livebridge subscriber running in a daemon thread.

    - `url`: the hub (default: `LIVEBRIDGE_URL` or `livebridge.configure()`).
    - `client_type`, `client_name`: how the hub lists this client (`gui`, `web`, ...).
    - `channels`: subscribed on every session (default: the catalogue's seven channels).
    - `transport`: `"auto"` (WebSocket, falling back to long polling), `"websocket"` or
      `"polling"`.
    - `token`: a client token, when the hub requires them.
    - `timeout`: seconds for connecting and for each request; `poll_wait`: how long a long
      poll may be held by the hub; `reconnect_delay` / `max_reconnect_delay`: the backoff.
    """

    def __init__(
        self,
        url: Optional[str] = None,
        client_type: str = "gui",
        client_name: Optional[str] = None,
        channels: Iterable[str] = CHANNELS,
        *,
        transport: str = "auto",
        token: Optional[str] = None,
        timeout: float = 10.0,
        poll_wait: float = 25.0,
        reconnect_delay: float = 0.5,
        max_reconnect_delay: float = 30.0,
    ) -> None:
        if transport not in TRANSPORTS:
            raise ValueError(f"transport must be one of {TRANSPORTS}, not {transport!r}")
        if isinstance(channels, str):
            raise ValueError("channels must be a list of channel names, not a str")
        self.url = check_url(url) if url is not None else current().url
        self.transport = transport
        self._token = token
        self._timeout = timeout
        self._poll_wait = poll_wait
        self._reconnect_delay = reconnect_delay
        self._max_reconnect_delay = max_reconnect_delay
        self._core = SessionCore(client_type, client_name, channels)
        self._core_lock = threading.RLock()
        self._callbacks: Dict[str, List[Callback]] = {}
        self._callbacks_lock = threading.Lock()
        self._state = "idle"
        self._link: Any = None
        self._thread: Optional[threading.Thread] = None
        self._stopping = threading.Event()
        self._reconnect_allowed = threading.Event()
        self._reconnect_allowed.set()
        self._websocket_usable = transport != "polling"
        self._failures = 0  # consecutive failed connection attempts, for the log
        self._opened = False  # whether the current attempt got a session
        self._subscribed = threading.Event()  # the current session's subscription is confirmed
        # Sees every dispatched message first (livebridge.aio forwards them to its loop).
        self._tap: Optional[Callback] = None

    # ----------------------------------------------------------------------------------
    # Public API

    @property
    def client_id(self) -> Optional[str]:
        """The session's id at the hub (None before the first connection)."""
        return self._core.client_id

    @property
    def state(self) -> str:
        """`idle`, `connecting`, `open` (WebSocket), `polling`, `reconnecting` or `closed`."""
        return self._state

    @property
    def channels(self) -> List[str]:
        return list(self._core.channels)

    @property
    def transport_in_use(self) -> Optional[str]:
        """`"websocket"` or `"polling"` while connected, else None."""
        link = self._link
        if isinstance(link, WebSocketLink):
            return "websocket"
        if isinstance(link, PollingLink):
            return "polling"
        return None

    def on(self, message_type: str, callback: Callback) -> Callback:
        """Calls `callback(message)` for each message of `message_type` (`"*"`: every
        application message). Returns the callback."""
        with self._callbacks_lock:
            self._callbacks[message_type] = [*self._callbacks.get(message_type, []), callback]
        return callback

    def off(self, message_type: str, callback: Callback) -> None:
        with self._callbacks_lock:
            self._callbacks[message_type] = [c for c in self._callbacks.get(message_type, []) if c is not callback]

    def wait_subscribed(self, timeout: Optional[float] = None) -> bool:
        """Waits until the current session's subscriptions are confirmed by the hub (events
        published from then on are delivered); False after `timeout` seconds."""
        return self._subscribed.wait(timeout)

    def start(self) -> "Client":
        """Connects in a background (daemon) thread and returns at once."""
        if self._thread is not None and self._thread.is_alive():
            return self
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name="livebridge-client", daemon=True)
        self._thread.start()
        _running_clients.add(self)
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Ends the session at the hub and stops the thread (waiting up to `timeout`)."""
        _running_clients.discard(self)
        self._stopping.set()
        self._reconnect_allowed.set()
        link = self._link
        if link is not None:
            try:
                link.end_session()
            except Exception as err:  # noqa: BLE001 (a dead link is fine when stopping)
                logger.debug("livebridge: ending the session: %s", err)
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def __enter__(self) -> "Client":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def send(self, message: Dict[str, Any], timeout: Optional[float] = None) -> Optional[Dict[str, Any]]:
        """Sends a client message (a catalogue event is published to the other subscribers of
        its channel; `{"type": "ping"}` ...) and returns the hub's reply (`published`,
        `pong`). Raises `EventError` when the hub refuses it and `PublishError` when not
        connected. Called from a callback (the client's own thread) it cannot wait for the
        reply: it sends and returns None, and the reply arrives as a message."""
        checked = validate_message(message)
        if checked["type"] in ("register", "subscribe", "unsubscribe"):
            raise EventError(f"message.type: use client.subscribe()/unsubscribe() rather than {checked['type']!r}", "type")
        wait = self._timeout if timeout is None else timeout
        link = self._link
        if link is None:
            raise PublishError(f"not connected to {self.url} (state {self._state})")
        if isinstance(link, PollingLink):
            try:
                answer = link.send(checked)
            except HubUnreachable as err:
                raise PublishError(str(err)) from None
            if answer.status == 200 and isinstance(answer.body, dict):
                reply = answer.body.get("response")
                if isinstance(reply, dict):
                    return _reply_or_raise(reply)
            if answer.status == 400:
                raise EventError(answer.error)
            raise PublishError(f"/ws/send: HTTP {answer.status}: {answer.error}", answer.status, answer.error)
        if threading.current_thread() is self._thread:
            link.send(Request(checked))
            return None
        waiter: "Future[Dict[str, Any]]" = Future()
        try:
            link.send(Request(checked), waiter)
        except Exception as err:  # noqa: BLE001 (the socket's own errors vary by version)
            raise PublishError(f"not connected: {err}") from None
        try:
            return _reply_or_raise(waiter.result(wait))
        except FutureTimeout:
            raise PublishError(f"no reply from the hub within {wait:g} s") from None

    def subscribe(self, channels: Iterable[str]) -> None:
        """Adds channels to this client's subscriptions (now, and on every new session)."""
        with self._core_lock:
            request = self._core.subscribe(list(channels))
        if request is not None:
            self._send_internal(request)

    def unsubscribe(self, channels: Iterable[str]) -> None:
        with self._core_lock:
            request = self._core.unsubscribe(list(channels))
        if request is not None:
            self._send_internal(request)

    # ----------------------------------------------------------------------------------
    # Test hooks: lose the network without telling the hub, and hold the reconnection

    def _drop_connection(self, hold: bool = False) -> None:
        """Cuts the connection abruptly (no close frame, no disconnect): the hub keeps the
        session, as after a network failure. With `hold`, the client does not reconnect
        until `_allow_reconnect()`."""
        if hold:
            self._reconnect_allowed.clear()
        link = self._link
        if link is not None:
            link.abort()

    def _allow_reconnect(self) -> None:
        self._reconnect_allowed.set()

    # ----------------------------------------------------------------------------------
    # The client thread

    def _run(self) -> None:
        attempt = 0
        try:
            while not self._stopping.is_set():
                self._reconnect_allowed.wait()
                if self._stopping.is_set():
                    break
                self._opened = False
                try:
                    if self._websocket_usable:
                        reason = self._run_websocket()
                    else:
                        reason = self._run_polling()
                except _FallBack as why:
                    if self.transport == "websocket":
                        reason = str(why)
                    else:
                        logger.info("livebridge: WebSocket unavailable (%s); using long polling", why)
                        self._websocket_usable = False
                        continue
                except _SessionEnded as why:
                    if self._stopping.is_set():
                        break
                    logger.info("livebridge: %s; opening a new session", why)
                    continue
                except Exception as err:  # noqa: BLE001 (any failure means: reconnect)
                    reason = _describe(err)
                if self._stopping.is_set():
                    break
                if self._opened:
                    attempt = 0
                    logger.info("livebridge: connection to %s lost (%s); reconnecting", self.url, reason)
                else:
                    self._failures += 1
                    level = logging.WARNING if self._failures == 1 else logging.DEBUG
                    logger.log(level, "livebridge: cannot connect to %s: %s", self.url, reason)
                delay = reconnect_delay(attempt, self._reconnect_delay, self._max_reconnect_delay)
                attempt += 1
                self._set_state("reconnecting", delay=round(delay, 3), reason=reason)
                self._stopping.wait(delay)
        finally:
            self._set_state("closed")

    def _connected(self, state: str) -> None:
        self._opened = True
        if self._failures:
            logger.info("livebridge: connected to %s again", self.url)
        self._failures = 0
        if not self._core.channels:
            self._subscribed.set()  # nothing to subscribe to: ready as soon as connected
        self._set_state(state, client_id=self._core.client_id)

    def _run_websocket(self) -> str:
        """One WebSocket connection, until it ends; returns why it ended."""
        try:
            from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus
            from websockets.sync.client import connect
        except ImportError as err:
            raise _FallBack(f"the websockets package is not installed ({err})") from None
        options: Dict[str, Any] = {"open_timeout": self._timeout, "close_timeout": 2, "max_size": None}
        if self._token:
            options["additional_headers"] = {"Authorization": f"Bearer {self._token}"}
        if "proxy" in inspect.signature(connect).parameters:
            options["proxy"] = None  # like http.client (publishing, polling): no proxy
        self._set_state("connecting")
        url = websocket_url(self.url, self._core.client_id, None)
        try:
            connection = connect(url, **options)
        except InvalidStatus as err:
            status = err.response.status_code
            if status in NOT_A_TRANSPORT_PROBLEM:
                raise _Refused(f"WebSocket upgrade refused with HTTP {status}") from None
            raise _FallBack(f"WebSocket upgrade refused with HTTP {status}") from None
        except InvalidHandshake as err:
            raise _FallBack(f"WebSocket handshake failed: {err}") from None
        with connection as ws:
            link = WebSocketLink(ws)
            try:
                first = json.loads(ws.recv(timeout=self._timeout))
                if not isinstance(first, dict) or first.get("type") != "connection_established":
                    raise _Refused(f"unexpected first message {first!r}")
                with self._core_lock:
                    requests = self._core.opened(str(first["client_id"]), first.get("resumed") is True)
                    self._link = link
                self._connected("open")
                self._dispatch_all([first])
                for request in requests:
                    link.send(request)
                try:
                    for raw in ws:
                        if isinstance(raw, str):
                            self._websocket_message(link, json.loads(raw))
                except ConnectionClosed:
                    pass
                return self._after_close(ws.close_code)
            finally:
                self._detach(link, "the WebSocket closed")

    def _after_close(self, code: Optional[int]) -> str:
        if code == 4001:
            # Another connection resumed this session; resuming it back would start a
            # tug of war, so this client takes a new session (its positions still recover).
            self._core.client_id = None
            raise _SessionEnded("another connection took over the session (4001)")
        if code is None or code == 1006:  # 1006: no close frame, the connection was cut
            return "the WebSocket was cut"
        return f"the WebSocket closed with {code}"

    def _websocket_message(self, link: WebSocketLink, message: Any) -> None:
        if not isinstance(message, dict):
            return
        request: Optional[Request] = None
        waiter: Optional["Future[Dict[str, Any]]"] = None
        if message.get("type") in REPLY_TYPES:
            request, waiter = link.reply_arrived()
        with self._core_lock:
            outcome = self._core.receive(message, request)
        if waiter is not None and not waiter.done():
            waiter.set_result(message)
        for follow_up in outcome.send:
            link.send(follow_up)
        self._dispatch_all(outcome.deliver)

    def _run_polling(self) -> str:
        """One long-polling session, until it fails (raises) or the client stops."""
        headers = {"User-Agent": "livebridge-python"}
        link = PollingLink(self.url, self._timeout, self._poll_wait, headers)
        self._set_state("connecting")
        try:
            handshake: Dict[str, Any] = {
                "client_type": self._core.client_type,
                "protocol_version": PROTOCOL_VERSION,
            }
            if self._core.client_name is not None:
                handshake["client_name"] = self._core.client_name
            if self._core.client_id:
                handshake["client_id"] = self._core.client_id
            if self._token:
                handshake["token"] = self._token
            answer = link.post("/ws/handshake", handshake)
            body = answer.body
            if answer.status != 200 or not isinstance(body, dict) or not isinstance(body.get("client_id"), str):
                raise _Refused(f"handshake: HTTP {answer.status}: {answer.error}")
            link.client_id = body["client_id"]
            with self._core_lock:
                requests = self._core.opened(body["client_id"], body.get("resumed") is True)
                self._link = link
            self._connected("polling")
            for request in requests:
                self._send_polling(link, request)
            while not self._stopping.is_set():
                answer = link.poll()
                if answer.status in (404, 410):
                    raise _SessionEnded(f"the hub ended the session ({answer.error})")
                if answer.status == 409:
                    raise _SessionEnded("the session is attached to a WebSocket elsewhere")
                if answer.status != 200 or not isinstance(answer.body, dict):
                    raise _Refused(f"poll: HTTP {answer.status}: {answer.error}")
                if answer.body.get("superseded"):
                    self._core.client_id = None
                    raise _SessionEnded("another connection took over the session")
                dropped = answer.body.get("dropped")
                if isinstance(dropped, int) and dropped > 0:
                    self._polling_outcome(link, self._core_call(lambda: self._core.dropped(dropped)))
                for message in answer.body.get("messages") or []:
                    if isinstance(message, dict):
                        self._polling_outcome(link, self._core_call(functools.partial(self._core.receive, message)))
            return "stopped"
        finally:
            self._detach(link, "polling ended")
            link.close()

    def _core_call(self, call: Callable[[], Outcome]) -> Outcome:
        with self._core_lock:
            return call()

    def _polling_outcome(self, link: PollingLink, outcome: Outcome) -> None:
        # A recovery's subscribe is answered before the messages that came with the drop
        # are looked at, as over a WebSocket (where its reply precedes the replay).
        for request in outcome.send:
            self._send_polling(link, request)
        self._dispatch_all(outcome.deliver)

    def _send_polling(self, link: PollingLink, request: Request) -> None:
        answer = link.send(request.message)
        if answer.status == 404:
            raise _SessionEnded("the hub no longer knows the session")
        if answer.status == 200 and isinstance(answer.body, dict) and isinstance(answer.body.get("response"), dict):
            reply = answer.body["response"]
        elif answer.status == 400:
            reply = {"type": "error", "error": answer.error}
        else:
            raise _Refused(f"/ws/send: HTTP {answer.status}: {answer.error}")
        if reply.get("type") == "error":
            logger.warning("livebridge: the hub refused %s: %s", request.message.get("type"), reply.get("error"))
        self._polling_outcome(link, self._core_call(lambda: self._core.receive(reply, request)))

    def _send_internal(self, request: Request) -> None:
        """Sends a subscription change now when connected; otherwise the next session's
        subscribe carries it."""
        link = self._link
        try:
            if isinstance(link, WebSocketLink):
                link.send(request)
            elif isinstance(link, PollingLink):
                self._send_polling(link, request)
        except Exception as err:  # noqa: BLE001 (the next session subscribes anyway)
            logger.debug("livebridge: subscription change not sent now: %s", err)

    def _detach(self, link: Any, reason: str) -> None:
        self._subscribed.clear()
        with self._core_lock:
            if self._link is link:
                self._link = None
            self._core.lost()
        if isinstance(link, WebSocketLink):
            link.fail_waiters(reason)

    # ----------------------------------------------------------------------------------
    # Dispatching

    def _set_state(self, state: str, **details: Any) -> None:
        if state == self._state and state != "reconnecting":
            return
        self._state = state
        self._dispatch({"type": "state", "state": state, **details})

    def _dispatch_all(self, messages: List[Dict[str, Any]]) -> None:
        for message in messages:
            self._dispatch(message)

    def _dispatch(self, message: Dict[str, Any]) -> None:
        message_type = message.get("type")
        if message_type == "subscribed":
            self._subscribed.set()
        if self._tap is not None:
            self._tap(message)
        with self._callbacks_lock:
            callbacks = list(self._callbacks.get(str(message_type), []))
            if is_application_message(message):
                callbacks += self._callbacks.get("*", [])
        for callback in callbacks:
            try:
                callback(message)
            except Exception:  # noqa: BLE001 (one failing callback must not stop the client)
                logger.exception("livebridge: callback for %r failed", message_type)


def _reply_or_raise(reply: Dict[str, Any]) -> Dict[str, Any]:
    if reply.get("type") == "error":
        raise EventError(str(reply.get("error")))
    return reply


def _describe(err: BaseException) -> str:
    text = str(err)
    return f"{type(err).__name__}: {text}" if text else type(err).__name__
