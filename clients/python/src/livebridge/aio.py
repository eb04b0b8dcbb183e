"""`livebridge.aio`: the subscriber for asyncio applications.

    async with livebridge.aio.connect("http://127.0.0.1:5100", channels=["jobs"]) as client:
        async for event in client:
            print(event["type"])

The WebSocket runs on the event loop (the `websockets` package's asyncio client), with the
same protocol logic as `livebridge.Client` (`livebridge.session`): resume by client_id,
jittered backoff, re-subscription with channel positions, duplicates dropped. When the
WebSocket cannot be used (`websockets` missing, upgrade refused) the client falls back to
long polling by running a `livebridge.Client(transport="polling")` in its thread and
forwarding what it receives to the loop.

Iterating yields application messages (events, broadcasts, direct messages) and the client's
`recovery_failed` notices, in order; `on(type, callback)` (a function or a coroutine
function, run on the loop) sees every message type, as with `livebridge.Client`.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
from collections import deque
from typing import Any, AsyncIterator, Awaitable, Callable, Deque, Dict, Generator, Iterable, List, Optional, Tuple, Union

from .catalogue import CHANNELS, validate_message
from .client import Client
from .transports import NOT_A_TRANSPORT_PROBLEM, TRANSPORTS, websocket_url
from .errors import EventError, PublishError
from .session import REPLY_TYPES, Request, SessionCore, is_application_message, reconnect_delay
from .settings import check_url, current

logger = logging.getLogger("livebridge")

AsyncCallback = Callable[[Dict[str, Any]], Union[None, Awaitable[None]]]

_CLOSED: Dict[str, Any] = {"type": "__closed__"}


class _FallBack(Exception):
    pass


class _SessionEnded(Exception):
    pass


class _AsyncWebSocketLink:
    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self._lock = asyncio.Lock()
        self._pending: Deque[Tuple[Request, Optional["asyncio.Future[Dict[str, Any]]"]]] = deque()

    async def send(self, request: Request, waiter: Optional["asyncio.Future[Dict[str, Any]]"] = None) -> None:
        # The lock keeps the order of `pending` that of the frames on the wire.
        async with self._lock:
            self._pending.append((request, waiter))
            await self.ws.send(json.dumps(request.message))

    def reply_arrived(self) -> Tuple[Optional[Request], Optional["asyncio.Future[Dict[str, Any]]"]]:
        return self._pending.popleft() if self._pending else (None, None)

    def fail_waiters(self, reason: str) -> None:
        pending, self._pending = self._pending, deque()
        for _, waiter in pending:
            if waiter is not None and not waiter.done():
                waiter.set_exception(PublishError(reason))

    def abort(self) -> None:
        self.ws.transport.abort()


class AsyncClient:
    """See the module docstring; made by `connect()`."""

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
        self._options: Dict[str, Any] = {
            "client_type": client_type,
            "client_name": client_name,
            "token": token,
            "timeout": timeout,
            "poll_wait": poll_wait,
            "reconnect_delay": reconnect_delay,
            "max_reconnect_delay": max_reconnect_delay,
        }
        self._timeout = timeout
        self._core = SessionCore(client_type, client_name, channels)
        self._callbacks: Dict[str, List[AsyncCallback]] = {}
        # Made in start(), on the running loop (Python 3.9's queues bind to a loop when made).
        self._queue: Optional["asyncio.Queue[Dict[str, Any]]"] = None
        self._state = "idle"
        self._link: Optional[_AsyncWebSocketLink] = None
        self._polling: Optional[Client] = None  # the fallback
        self._task: Optional["asyncio.Task[None]"] = None
        self._closing = False
        self._subscribed: Optional[asyncio.Event] = None
        self._reconnect_allowed: Optional[asyncio.Event] = None
        self._failures = 0
        self._opened = False

    # ----------------------------------------------------------------------------------
    # Public API

    @property
    def client_id(self) -> Optional[str]:
        return self._polling.client_id if self._polling is not None else self._core.client_id

    @property
    def state(self) -> str:
        return self._state

    @property
    def transport_in_use(self) -> Optional[str]:
        if self._polling is not None:
            return self._polling.transport_in_use
        return "websocket" if self._link is not None else None

    def on(self, message_type: str, callback: AsyncCallback) -> AsyncCallback:
        """Calls `callback(message)` (awaited when it is a coroutine function) for each message
        of `message_type`; `"*"`: every application message."""
        self._callbacks.setdefault(message_type, []).append(callback)
        return callback

    async def start(self) -> "AsyncClient":
        """Starts the connection task and waits (at most `timeout`) for the first
        subscription, so events published after it are delivered."""
        if self._task is None:
            self._queue = asyncio.Queue()
            self._subscribed = asyncio.Event()
            self._reconnect_allowed = asyncio.Event()
            self._reconnect_allowed.set()
            self._task = asyncio.get_running_loop().create_task(self._run(), name="livebridge-aio")
            await self.wait_subscribed(self._timeout)
        return self

    async def wait_subscribed(self, timeout: Optional[float] = None) -> bool:
        """Waits until the current session's subscriptions are confirmed; False on timeout."""
        assert self._subscribed is not None, "start the client first"
        try:
            await asyncio.wait_for(self._subscribed.wait(), timeout)
            return True
        except asyncio.TimeoutError:
            return False

    async def close(self) -> None:
        """Ends the session at the hub and stops; iteration then ends."""
        self._closing = True
        if self._reconnect_allowed is not None:
            self._reconnect_allowed.set()
        link = self._link
        if link is not None:
            try:
                await asyncio.wait_for(link.ws.close(1000), self._timeout)
            except Exception as err:  # noqa: BLE001 (a dead link is fine when closing)
                logger.debug("livebridge: ending the session: %s", err)
        if self._polling is not None:
            await asyncio.get_running_loop().run_in_executor(None, self._polling.stop)
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        await self._set_state_async("closed")
        if self._queue is not None:
            self._queue.put_nowait(_CLOSED)

    async def __aenter__(self) -> "AsyncClient":
        return await self.start()

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    def __await__(self) -> Generator[Any, None, "AsyncClient"]:
        return self.start().__await__()

    def __aiter__(self) -> AsyncIterator[Dict[str, Any]]:
        return self

    async def __anext__(self) -> Dict[str, Any]:
        if self._queue is None:
            raise RuntimeError("start the client first: async with livebridge.aio.connect(...) as client")
        message = await self._queue.get()
        if message is _CLOSED:
            self._queue.put_nowait(_CLOSED)  # other iterators end too
            raise StopAsyncIteration
        return message

    async def send(self, message: Dict[str, Any], timeout: Optional[float] = None) -> Dict[str, Any]:
        """Sends a client message and returns the hub's reply (see `Client.send`)."""
        if self._polling is not None:
            polling = self._polling
            reply = await asyncio.get_running_loop().run_in_executor(None, lambda: polling.send(message, timeout))
            assert reply is not None
            return reply
        checked = validate_message(message)
        if checked["type"] in ("register", "subscribe", "unsubscribe"):
            raise EventError(f"message.type: {checked['type']!r} is managed by the client", "type")
        link = self._link
        if link is None:
            raise PublishError(f"not connected to {self.url} (state {self._state})")
        waiter: "asyncio.Future[Dict[str, Any]]" = asyncio.get_running_loop().create_future()
        await link.send(Request(checked), waiter)
        wait = self._timeout if timeout is None else timeout
        try:
            reply = await asyncio.wait_for(waiter, wait)
        except asyncio.TimeoutError:
            raise PublishError(f"no reply from the hub within {wait:g} s") from None
        if reply.get("type") == "error":
            raise EventError(str(reply.get("error")))
        return reply

    # Test hooks, as on livebridge.Client

    def _drop_connection(self, hold: bool = False) -> None:
        if self._polling is not None:
            self._polling._drop_connection(hold)
            return
        if hold and self._reconnect_allowed is not None:
            self._reconnect_allowed.clear()
        if self._link is not None:
            self._link.abort()

    def _allow_reconnect(self) -> None:
        if self._polling is not None:
            self._polling._allow_reconnect()
        elif self._reconnect_allowed is not None:
            self._reconnect_allowed.set()

    # ----------------------------------------------------------------------------------
    # The connection task

    async def _run(self) -> None:
        attempt = 0
        websocket_usable = self.transport != "polling"
        assert self._reconnect_allowed is not None
        while not self._closing:
            await self._reconnect_allowed.wait()
            if self._closing:
                return
            if not websocket_usable:
                await self._run_polling()
                return
            self._opened = False
            try:
                reason = await self._run_websocket()
            except _FallBack as why:
                if self.transport == "websocket":
                    reason = str(why)
                else:
                    logger.info("livebridge: WebSocket unavailable (%s); using long polling", why)
                    websocket_usable = False
                    continue
            except _SessionEnded as why:
                logger.info("livebridge: %s; opening a new session", why)
                continue
            except asyncio.CancelledError:
                raise
            except Exception as err:  # noqa: BLE001 (any failure means: reconnect)
                reason = f"{type(err).__name__}: {err}"
            if self._closing:
                return
            if self._opened:
                attempt = 0
                logger.info("livebridge: connection to %s lost (%s); reconnecting", self.url, reason)
            else:
                self._failures += 1
                level = logging.WARNING if self._failures == 1 else logging.DEBUG
                logger.log(level, "livebridge: cannot connect to %s: %s", self.url, reason)
            delay = reconnect_delay(attempt, self._options["reconnect_delay"], self._options["max_reconnect_delay"])
            attempt += 1
            await self._set_state_async("reconnecting", delay=round(delay, 3), reason=reason)
            await asyncio.sleep(delay)

    async def _run_websocket(self) -> str:
        try:
            from websockets.asyncio.client import connect
            from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus
        except ImportError as err:
            raise _FallBack(f"the websockets package (>= 13) is not installed ({err})") from None
        options: Dict[str, Any] = {"open_timeout": self._timeout, "close_timeout": 2, "max_size": None}
        token = self._options["token"]
        if token:
            options["additional_headers"] = {"Authorization": f"Bearer {token}"}
        if "proxy" in inspect.signature(connect).parameters:
            options["proxy"] = None
        await self._set_state_async("connecting")
        try:
            ws = await connect(websocket_url(self.url, self._core.client_id, None), **options)
        except InvalidStatus as err:
            status = err.response.status_code
            if status in NOT_A_TRANSPORT_PROBLEM:
                raise ConnectionError(f"WebSocket upgrade refused with HTTP {status}") from None
            raise _FallBack(f"WebSocket upgrade refused with HTTP {status}") from None
        except InvalidHandshake as err:
            raise _FallBack(f"WebSocket handshake failed: {err}") from None
        link = _AsyncWebSocketLink(ws)
        try:
            first = json.loads(await asyncio.wait_for(ws.recv(), self._timeout))
            if not isinstance(first, dict) or first.get("type") != "connection_established":
                raise ConnectionError(f"unexpected first message {first!r}")
            requests = self._core.opened(str(first["client_id"]), first.get("resumed") is True)
            self._link = link
            self._opened = True
            self._failures = 0
            if not self._core.channels and self._subscribed is not None:
                self._subscribed.set()
            await self._set_state_async("open", client_id=self._core.client_id)
            await self._dispatch(first)
            for request in requests:
                await link.send(request)
            try:
                async for raw in ws:
                    if isinstance(raw, str):
                        await self._message(link, json.loads(raw))
            except ConnectionClosed:
                pass
            code = ws.close_code
            if code == 4001:
                self._core.client_id = None
                raise _SessionEnded("another connection took over the session (4001)")
            return "the WebSocket was cut" if code in (None, 1006) else f"the WebSocket closed with {code}"
        finally:
            self._link = None
            if self._subscribed is not None:
                self._subscribed.clear()
            self._core.lost()
            link.fail_waiters("the WebSocket closed")
            if not self._closing:
                ws.transport.abort()

    async def _message(self, link: _AsyncWebSocketLink, message: Any) -> None:
        if not isinstance(message, dict):
            return
        request = waiter = None
        if message.get("type") in REPLY_TYPES:
            request, waiter = link.reply_arrived()
        outcome = self._core.receive(message, request)
        if waiter is not None and not waiter.done():
            waiter.set_result(message)
        for follow_up in outcome.send:
            await link.send(follow_up)
        for item in outcome.deliver:
            await self._dispatch(item)

    async def _run_polling(self) -> None:
        """Long polling in a `livebridge.Client` thread, its messages forwarded here."""
        loop = asyncio.get_running_loop()
        polling = Client(
            self.url,
            self._options["client_type"],
            self._options["client_name"],
            list(self._core.channels),
            transport="polling",
            token=self._options["token"],
            timeout=self._options["timeout"],
            poll_wait=self._options["poll_wait"],
            reconnect_delay=self._options["reconnect_delay"],
            max_reconnect_delay=self._options["max_reconnect_delay"],
        )
        forwarded: "asyncio.Queue[Dict[str, Any]]" = asyncio.Queue()
        polling._tap = lambda message: loop.call_soon_threadsafe(forwarded.put_nowait, message)
        self._polling = polling
        polling.start()
        while True:
            message = await forwarded.get()
            if message.get("type") == "state":
                self._state = str(message.get("state"))
                if self._state == "polling" and not self._core.channels and self._subscribed is not None:
                    self._subscribed.set()
            await self._dispatch(message)

    # ----------------------------------------------------------------------------------
    # Dispatching

    async def _set_state_async(self, state: str, **details: Any) -> None:
        if state == self._state and state != "reconnecting":
            return
        self._state = state
        await self._dispatch({"type": "state", "state": state, **details})

    async def _dispatch(self, message: Dict[str, Any]) -> None:
        message_type = message.get("type")
        if message_type == "subscribed" and self._subscribed is not None:
            self._subscribed.set()
        elif message_type == "state" and message.get("state") in ("reconnecting", "connecting") and self._subscribed is not None:
            self._subscribed.clear()
        callbacks = list(self._callbacks.get(str(message_type), []))
        application = is_application_message(message)
        if application:
            callbacks += self._callbacks.get("*", [])
        for callback in callbacks:
            try:
                result = callback(message)
                if inspect.isawaitable(result):
                    await result
            except Exception:  # noqa: BLE001 (one failing callback must not stop the client)
                logger.exception("livebridge: callback for %r failed", message_type)
        if application and self._queue is not None:
            self._queue.put_nowait(message)


def connect(
    url: Optional[str] = None,
    *,
    channels: Iterable[str] = CHANNELS,
    client_type: str = "gui",
    client_name: Optional[str] = None,
    transport: str = "auto",
    token: Optional[str] = None,
    timeout: float = 10.0,
    poll_wait: float = 25.0,
    reconnect_delay: float = 0.5,
    max_reconnect_delay: float = 30.0,
) -> AsyncClient:
    """An asyncio subscriber: use it as `async with connect(...) as client` (or
    `client = await connect(...)` and `await client.close()`)."""
    return AsyncClient(
        url,
        client_type,
        client_name,
        channels,
        transport=transport,
        token=token,
        timeout=timeout,
        poll_wait=poll_wait,
        reconnect_delay=reconnect_delay,
        max_reconnect_delay=max_reconnect_delay,
    )
