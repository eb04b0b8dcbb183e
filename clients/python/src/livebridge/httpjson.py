"""JSON over one keep-alive HTTP/1.1 connection to the hub (standard library only).

A `HubConnection` is used by one thread at a time: the publisher's flusher, the subscriber's
poll loop, or a caller holding a lock. It reopens its socket when the hub closed it, and it
retries a request once when a *reused* idle connection turns out to be closed by the hub:
that failure happens before the hub has read the request, so nothing is sent twice.
"""

from __future__ import annotations

import http.client
import json
import socket
from dataclasses import dataclass
from typing import Any, Dict, Optional, Union
from urllib.parse import urlsplit


class HubUnreachable(Exception):
    """No answer from the hub: refused, reset, timed out, or not HTTP."""


@dataclass
class Response:
    status: int
    body: Any  # the decoded JSON answer, or None when it was empty or not JSON
    text: str

    @property
    def error(self) -> str:
        """The hub's `error` text, or a short description of the answer."""
        if isinstance(self.body, dict) and isinstance(self.body.get("error"), str):
            return str(self.body["error"])
        return self.text[:200] or f"HTTP {self.status}"


# Failures of a reused connection that mean "the hub closed it while it was idle".
_STALE_CONNECTION = (
    http.client.RemoteDisconnected,
    ConnectionResetError,
    BrokenPipeError,
    ConnectionAbortedError,
)


class HubConnection:
    def __init__(
        self,
        base_url: str,
        timeout: float,
        headers: Optional[Dict[str, str]] = None,
    ) -> None:
        parts = urlsplit(base_url)
        self._https = parts.scheme == "https"
        self._host = parts.hostname or "127.0.0.1"
        self._port = parts.port
        self._prefix = parts.path.rstrip("/")
        self._timeout = timeout
        self._headers = {"Accept": "application/json", **(headers or {})}
        self._conn: Optional[http.client.HTTPConnection] = None
        self._aborted = False  # set by abort(): the failure it causes is not retried

    def _open(self, timeout: float) -> http.client.HTTPConnection:
        if self._https:
            return http.client.HTTPSConnection(self._host, self._port, timeout=timeout)
        return http.client.HTTPConnection(self._host, self._port, timeout=timeout)

    def request(
        self,
        method: str,
        path: str,
        body: Union[bytes, Any, None] = None,
        timeout: Optional[float] = None,
    ) -> Response:
        """Sends one request and reads the whole answer. `body` is bytes of JSON or a value
        to encode. Raises `HubUnreachable` when there is no HTTP answer."""
        if body is not None and not isinstance(body, bytes):
            body = json.dumps(body, separators=(",", ":")).encode()
        headers = dict(self._headers)
        if body is not None:
            headers["Content-Type"] = "application/json"
        wait = self._timeout if timeout is None else timeout
        reused = self._conn is not None and self._conn.sock is not None
        self._aborted = False
        try:
            return self._exchange(method, path, body, headers, wait)
        except _STALE_CONNECTION as err:
            self.close()
            if not reused or self._aborted:
                raise HubUnreachable(f"{method} {path}: {err or type(err).__name__}") from err
        except (OSError, http.client.HTTPException) as err:
            self.close()
            raise HubUnreachable(f"{method} {path}: {_describe(err)}") from err
        try:
            return self._exchange(method, path, body, headers, wait)
        except (OSError, http.client.HTTPException) as err:
            self.close()
            raise HubUnreachable(f"{method} {path}: {_describe(err)}") from err

    def _exchange(
        self, method: str, path: str, body: Optional[bytes], headers: Dict[str, str], wait: float
    ) -> Response:
        if self._conn is None:
            self._conn = self._open(wait)
        conn = self._conn
        conn.timeout = wait
        if conn.sock is not None:
            conn.sock.settimeout(wait)
        conn.request(method, self._prefix + path, body=body, headers=headers)
        answer = conn.getresponse()
        raw = answer.read()
        if answer.will_close:
            self.close()
        text = raw.decode("utf-8", errors="replace")
        try:
            decoded = json.loads(text) if text else None
        except ValueError:
            decoded = None
        return Response(answer.status, decoded, text)

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def abort(self) -> None:
        """Cuts the socket under a request in flight in another thread (that request then
        fails with `HubUnreachable`). Used to stop a long poll and to simulate a network
        failure in tests."""
        self._aborted = True
        conn = self._conn
        sock = conn.sock if conn is not None else None
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def _describe(err: BaseException) -> str:
    if isinstance(err, socket.timeout):
        return "timed out"
    text = str(err)
    return f"{type(err).__name__}: {text}" if text else type(err).__name__
