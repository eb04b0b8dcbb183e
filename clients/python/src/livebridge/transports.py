"""The connections a subscriber runs over: a WebSocket (the `websockets` package's sync
client) and the hub's HTTP long poll (standard library), each with what the client needs from
it: send a client message, match replies to requests, end the session, or cut the connection
abruptly (a network failure, for tests). `livebridge.client` decides which to use and when.
"""

from __future__ import annotations

import json
import socket
import threading
from collections import deque
from concurrent.futures import Future
from typing import Any, Deque, Dict, Optional, Tuple
from urllib.parse import quote, urlsplit, urlunsplit

from .errors import PublishError
from .httpjson import HubConnection, HubUnreachable, Response
from .session import Request

TRANSPORTS = ("auto", "websocket", "polling")

# Upgrade refusals that long polling would meet too (authentication, rate limits, a full or
# stopping hub): they are failures to retry, not a reason to fall back.
NOT_A_TRANSPORT_PROBLEM = {401, 403, 429, 503}


def websocket_url(base_url: str, client_id: Optional[str], token: Optional[str]) -> str:
    parts = urlsplit(base_url)
    scheme = "wss" if parts.scheme == "https" else "ws"
    query = []
    if client_id:
        query.append("client_id=" + quote(client_id, safe=""))
    if token:
        query.append("token=" + quote(token, safe=""))
    return urlunsplit((scheme, parts.netloc, parts.path.rstrip("/") + "/ws", "&".join(query), ""))


class WebSocketLink:
    """An open WebSocket and the requests waiting for their replies (the hub answers each
    client message with exactly one reply, in order)."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self._lock = threading.Lock()
        self._pending: Deque[Tuple[Request, Optional["Future[Dict[str, Any]]"]]] = deque()

    def send(self, request: Request, waiter: Optional["Future[Dict[str, Any]]"] = None) -> None:
        with self._lock:
            self._pending.append((request, waiter))
            self.ws.send(json.dumps(request.message))

    def reply_arrived(self) -> Tuple[Optional[Request], Optional["Future[Dict[str, Any]]"]]:
        with self._lock:
            return self._pending.popleft() if self._pending else (None, None)

    def fail_waiters(self, reason: str) -> None:
        with self._lock:
            pending, self._pending = self._pending, deque()
        for _, waiter in pending:
            if waiter is not None and not waiter.done():
                waiter.set_exception(PublishError(reason))

    def end_session(self) -> None:
        # 1000 ends the session at the hub at once (docs/protocol.md, close codes).
        self.ws.close(1000)

    def abort(self) -> None:
        try:
            self.ws.socket.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


class PollingLink:
    """A long-polling session: one connection held by the poll, one for sends."""

    def __init__(self, base_url: str, timeout: float, poll_wait: float, headers: Dict[str, str]) -> None:
        self.client_id: Optional[str] = None
        self.poll_wait = poll_wait
        self.poller = HubConnection(base_url, poll_wait + timeout, headers)
        self.sender = HubConnection(base_url, timeout, headers)
        self._send_lock = threading.Lock()
        self.aborted = False

    def post(self, path: str, body: Dict[str, Any]) -> Response:
        with self._send_lock:
            return self.sender.request("POST", path, body)

    def send(self, message: Dict[str, Any]) -> Response:
        return self.post("/ws/send", {"client_id": self.client_id, "message": message})

    def poll(self) -> Response:
        if self.aborted:  # abort() came between two polls
            raise HubUnreachable("the connection was cut")
        path = f"/ws/poll?client_id={quote(self.client_id or '', safe='')}&wait={self.poll_wait:g}"
        return self.poller.request("GET", path)

    def end_session(self) -> None:
        try:
            self.post("/ws/disconnect", {"client_id": self.client_id})
        except HubUnreachable:
            pass
        self.poller.abort()

    def abort(self) -> None:
        self.aborted = True
        self.poller.abort()
        self.sender.abort()

    def close(self) -> None:
        self.poller.close()
        with self._send_lock:  # stop() may be ending the session from another thread
            self.sender.close()
