"""A scripted stand-in for the hub's HTTP API, for the publisher's rules that a real hub
cannot be made to show on demand: a request held in flight, a chosen error, a connection
closed behind the client's back."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, List, Optional, Tuple

Answer = Tuple[int, Any]


class StubHub:
    def __init__(self) -> None:
        self.requests: List[Tuple[str, Any]] = []
        self.connections = 0
        self.answer: Callable[[str, Any], Answer] = lambda path, body: (200, {"success": True})
        self.hold_first = threading.Event()  # set: requests are answered at once
        self.hold_first.set()
        self.first_arrived = threading.Event()
        self.close_after_each = False  # close keep-alive connections without saying so
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                with lock:
                    stub.connections += 1

            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                length = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(length) or b"null")
                with lock:
                    stub.requests.append((self.path, body))
                    first = len(stub.requests) == 1
                if first:
                    stub.first_arrived.set()
                    stub.hold_first.wait(10)
                status, answer = stub.answer(self.path, body)
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                if stub.close_after_each:
                    self.close_connection = True

            def log_message(self, *args: Any) -> None:
                pass

        lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def events_per_request(self) -> List[int]:
        return [len(body) if isinstance(body, list) else 1 for _, body in self.requests]

    def close(self) -> None:
        self.hold_first.set()
        self._server.shutdown()
        self._server.server_close()


def ok_events(path: str, body: Any) -> Answer:
    events = body if isinstance(body, list) else [body]
    return 200, {"success": True, "events": [{"type": e["type"], "channel": "jobs", "recipients": 0} for e in events]}


def failing(status: int, error: str, when: Optional[Callable[[Any], bool]] = None) -> Callable[[str, Any], Answer]:
    def answer(path: str, body: Any) -> Answer:
        if when is None or when(body):
            return status, {"success": False, "error": error}
        return ok_events(path, body)

    return answer
