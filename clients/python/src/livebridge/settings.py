"""Where the hub is and how to talk to it: the settings of the module-level publisher, read
from the environment (`LIVEBRIDGE_URL`, `LIVEBRIDGE_ADMIN_TOKEN`) the first time they are
needed, or set with `livebridge.configure()`.
"""

from __future__ import annotations

import dataclasses
import os
import threading
from dataclasses import dataclass
from typing import Any, Dict, Optional
from urllib.parse import urlsplit

DEFAULT_URL = "http://127.0.0.1:5100"


@dataclass(frozen=True)
class Settings:
    """How a publisher reaches the hub.

    - `url`: the hub's base URL (`http://host:port`, optionally with a path prefix).
    - `admin_token`: sent as `Authorization: Bearer <token>` when the hub requires one.
    - `timeout`: seconds a request may take (connect, and each read), so a hung hub cannot
      stall the publisher for longer.
    - `strict`: raise `PublishError` when the hub cannot be reached instead of logging and
      returning False.
    - `retry_interval`: after a failed attempt, publishes fail at once (no network) for this
      many seconds, so a job runner does not wait a timeout per event while the hub is down.
    """

    url: str = DEFAULT_URL
    admin_token: Optional[str] = None
    timeout: float = 5.0
    strict: bool = False
    retry_interval: float = 1.0

    def __post_init__(self) -> None:
        check_url(self.url)
        if not isinstance(self.timeout, (int, float)) or isinstance(self.timeout, bool) or self.timeout <= 0:
            raise ValueError(f"timeout must be a positive number of seconds, not {self.timeout!r}")
        if not isinstance(self.retry_interval, (int, float)) or self.retry_interval < 0:
            raise ValueError(f"retry_interval must be >= 0 seconds, not {self.retry_interval!r}")
        if self.admin_token is not None and not isinstance(self.admin_token, str):
            raise ValueError("admin_token must be a str or None")


def check_url(url: Any) -> str:
    """Refuses anything but an http(s) URL with a host, so a typo fails at configuration."""
    if not isinstance(url, str):
        raise ValueError(f"url must be a str, not {type(url).__name__}")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"url must look like http://host:port, not {url!r}")
    return url


def from_environment() -> Settings:
    """Settings from `LIVEBRIDGE_URL` and `LIVEBRIDGE_ADMIN_TOKEN` (empty means unset)."""
    return Settings(
        url=os.environ.get("LIVEBRIDGE_URL") or DEFAULT_URL,
        admin_token=os.environ.get("LIVEBRIDGE_ADMIN_TOKEN") or None,
    )


_lock = threading.Lock()
_current: Optional[Settings] = None


def current() -> Settings:
    """The settings of the module-level publisher."""
    global _current
    with _lock:
        if _current is None:
            _current = from_environment()
        return _current


_UNSET: Any = object()


def configure(
    url: Optional[str] = _UNSET,
    admin_token: Optional[str] = _UNSET,
    timeout: float = _UNSET,
    strict: bool = _UNSET,
    retry_interval: float = _UNSET,
) -> Settings:
    """Changes the settings of the module-level publisher (`livebridge.events`); the ones not
    given keep their value (from the environment, or an earlier call). `url=None` and
    `admin_token=None` go back to the environment's value. Returns the new settings."""
    global _current
    base = current()
    environment = from_environment()
    changes: Dict[str, Any] = {}
    if url is not _UNSET:
        changes["url"] = environment.url if url is None else url
    if admin_token is not _UNSET:
        changes["admin_token"] = environment.admin_token if admin_token is None else admin_token
    if timeout is not _UNSET:
        changes["timeout"] = timeout
    if strict is not _UNSET:
        changes["strict"] = strict
    if retry_interval is not _UNSET:
        changes["retry_interval"] = retry_interval
    updated = dataclasses.replace(base, **changes)
    with _lock:
        _current = updated
    return updated


def reset() -> None:
    """Forgets `configure()`; the environment is read again on next use (for tests)."""
    global _current
    with _lock:
        _current = None
