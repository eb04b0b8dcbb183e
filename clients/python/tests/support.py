"""Test support: real `livebridge` servers on free loopback ports, a raw WebSocket subscriber
that does not use the package under test, the hub's metrics, and waiting on conditions.
"""

from __future__ import annotations

import json
import os
import re
import select
import signal
import subprocess
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional, TypeVar

REPO_ROOT = Path(__file__).resolve().parents[3]

T = TypeVar("T")


def hub_binary() -> Path:
    """The server binary: `LIVEBRIDGE_BIN`, else the release build of this repository."""
    configured = os.environ.get("LIVEBRIDGE_BIN")
    path = Path(configured) if configured else REPO_ROOT / "target" / "release" / "livebridge"
    if not path.is_file():
        raise RuntimeError(
            f"no livebridge binary at {path}: run scripts/test-python.sh, or build it with "
            "`cargo build --release -p livebridge-smol` and/or set LIVEBRIDGE_BIN"
        )
    return path


def wait_for(condition: Callable[[], T], timeout: float = 5.0, what: str = "condition") -> T:
    """Polls `condition` until it returns something truthy; fails the test after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.01)


class Hub:
    """One `livebridge serve` process. `start()` binds a free port the first time and the same
    port after `stop()` (a restart)."""

    def __init__(self, *args: str) -> None:
        self.args = list(args)
        self.port = 0
        self.process: Optional[subprocess.Popen[bytes]] = None
        self._log = tempfile.NamedTemporaryFile(prefix="livebridge-", suffix=".log", delete=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    def start(self) -> "Hub":
        env = {k: v for k, v in os.environ.items() if not k.startswith("LIVEBRIDGE_")}
        command = [str(hub_binary()), "serve", "--bind", f"127.0.0.1:{self.port}", "--log", "warn", *self.args]
        deadline = time.monotonic() + 10
        while True:
            self.process = subprocess.Popen(
                command, stdout=subprocess.PIPE, stderr=self._log, env=env, stdin=subprocess.DEVNULL
            )
            line = self._first_line(deadline)
            if line is not None:
                break
            # The port of a restart may still be held for a moment: try again. (Still running
            # at the deadline, without a line: it will not print one.)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
                raise RuntimeError(f"livebridge printed no address within 10 s: {self.log_text()}") from None
            if time.monotonic() > deadline:
                raise RuntimeError(f"livebridge did not start: {self.log_text()}")
            time.sleep(0.05)
        match = re.search(r"http://127\.0\.0\.1:(\d+)", line)
        assert match, line
        self.port = int(match.group(1))
        threading.Thread(target=self._drain, args=(self.process,), daemon=True).start()
        return self

    def _first_line(self, deadline: float) -> Optional[str]:
        assert self.process is not None and self.process.stdout is not None
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.process.stdout], [], [], 0.05)
            if ready:
                line = self.process.stdout.readline().decode()
                return line if line else None
            if self.process.poll() is not None:
                return None
        return None

    @staticmethod
    def _drain(process: "subprocess.Popen[bytes]") -> None:
        assert process.stdout is not None
        for _ in process.stdout:
            pass

    def stop(self) -> None:
        """SIGTERM (graceful: WebSockets closed with 1001), SIGKILL after 5 s."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def restart(self) -> None:
        self.stop()
        self.start()

    def close(self) -> None:
        self.stop()
        self._log.close()
        os.unlink(self._log.name)

    def log_text(self) -> str:
        return Path(self._log.name).read_text(errors="replace")

    # HTTP helpers (urllib, independent of the package under test)

    def get(self, path: str) -> Any:
        with urllib.request.urlopen(self.url + path, timeout=5) as answer:
            body = answer.read().decode()
        return json.loads(body) if body.startswith("{") else body

    def post(self, path: str, body: Any) -> Any:
        request = urllib.request.Request(
            self.url + path,
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=5) as answer:
            return json.loads(answer.read().decode())

    def request_count(self, route: str) -> int:
        """Requests the hub answered on `route`, whatever their status (from /metrics)."""
        text = self.get("/metrics")
        total = 0
        for line in text.splitlines():
            match = re.match(r'^livebridge_http_requests_total\{route="([^"]*)",status="\d+"\} (\d+)$', line)
            if match and match.group(1) == route:
                total += int(match.group(2))
        return total

    def client(self, client_id: str) -> Optional[Dict[str, Any]]:
        """The hub's view of one session (from /ws/clients), or None."""
        for client in self.get("/ws/clients")["clients"]:
            if client["id"] == client_id:
                return client
        return None


CONTROL_TYPES = {
    "connection_established",
    "registered",
    "subscribed",
    "unsubscribed",
    "pong",
    "published",
    "error",
    "messages_dropped",
}


class RawSubscriber:
    """A plain WebSocket client (the `websockets` package, nothing of livebridge's) that
    subscribes to channels and reads what the hub delivers."""

    def __init__(self, hub: Hub, channels: Iterable[str], client_type: str = "test") -> None:
        from websockets.sync.client import connect

        self._connection = connect(hub.ws_url, proxy=None, open_timeout=5)
        self.ws = self._connection.__enter__()
        established = self.next_message()
        assert established["type"] == "connection_established", established
        self.client_id: str = established["client_id"]
        self.ws.send(json.dumps({"type": "register", "client_type": client_type}))
        assert self.next_message()["type"] == "registered"
        self.ws.send(json.dumps({"type": "subscribe", "channels": list(channels)}))
        assert self.next_message()["type"] == "subscribed"

    def next_message(self, timeout: float = 5.0) -> Dict[str, Any]:
        return json.loads(self.ws.recv(timeout=timeout))

    def next_event(self, timeout: float = 5.0) -> Dict[str, Any]:
        """The next message that is not a protocol reply or notice."""
        deadline = time.monotonic() + timeout
        while True:
            message = self.next_message(max(0.01, deadline - time.monotonic()))
            if message["type"] not in CONTROL_TYPES:
                return message

    def events(self, count: int, timeout: float = 10.0) -> List[Dict[str, Any]]:
        deadline = time.monotonic() + timeout
        return [self.next_event(max(0.01, deadline - time.monotonic())) for _ in range(count)]

    def assert_silent(self, within: float = 0.2) -> None:
        """Nothing more arrives (used after refused publishes; the wait bounds the check, it
        is not a timing assertion)."""
        try:
            message = self.ws.recv(timeout=within)
        except TimeoutError:
            return
        raise AssertionError(f"unexpected message {message}")

    def close(self) -> None:
        self._connection.__exit__(None, None, None)


class Sink:
    """A callback that records what it is given, and waits on what it has recorded."""

    def __init__(self) -> None:
        self.messages: List[Dict[str, Any]] = []
        self._cond = threading.Condition()

    def __call__(self, message: Dict[str, Any]) -> None:
        with self._cond:
            self.messages.append(message)
            self._cond.notify_all()

    def of_type(self, *types: str) -> List[Dict[str, Any]]:
        with self._cond:
            return [m for m in self.messages if m.get("type") in types]

    def wait(self, condition: Callable[[List[Dict[str, Any]]], Any], timeout: float = 5.0, what: str = "messages") -> Any:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                value = condition(list(self.messages))
                if value:
                    return value
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"timed out waiting for {what}; got {self.messages}")
                self._cond.wait(remaining)

    def wait_count(self, message_type: str, count: int, timeout: float = 5.0) -> List[Dict[str, Any]]:
        return self.wait(
            lambda ms: [m for m in ms if m.get("type") == message_type][:count]
            if len([m for m in ms if m.get("type") == message_type]) >= count
            else None,
            timeout,
            f"{count} {message_type!r}",
        )


class RefusingProxy:
    """Forwards HTTP to a hub but refuses WebSocket upgrades (as some proxies do), to show
    the client's fallback to long polling."""

    def __init__(self, hub: Hub) -> None:
        import socket

        self._hub = hub
        self._listener = socket.socket()
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self.refused_upgrades = 0
        self._sockets: List[Any] = []
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._listener.getsockname()[1]}"

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            self._sockets.append(client)
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: Any) -> None:
        import socket

        head = b""
        while b"\r\n\r\n" not in head:
            chunk = client.recv(4096)
            if not chunk:
                client.close()
                return
            head += chunk
        if b"upgrade: websocket" in head.lower():
            self.refused_upgrades += 1
            client.sendall(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
            client.close()
            return
        try:
            upstream = socket.create_connection(("127.0.0.1", self._hub.port))
        except OSError:  # the hub is gone (the test is ending)
            client.close()
            return
        self._sockets.append(upstream)
        upstream.sendall(head)

        def pipe(source: Any, target: Any) -> None:
            try:
                while True:
                    data = source.recv(65536)
                    if not data:
                        break
                    target.sendall(data)
            except OSError:
                pass
            for end in (source, target):
                try:
                    end.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

        threading.Thread(target=pipe, args=(upstream, client), daemon=True).start()
        pipe(client, upstream)

    def close(self) -> None:
        self._listener.close()
        for sock in self._sockets:
            try:
                sock.close()
            except OSError:
                pass
