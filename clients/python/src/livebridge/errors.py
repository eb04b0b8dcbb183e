"""The exceptions of the livebridge package.

Two kinds of failure are kept apart on purpose: a wrong argument is a programming error and is
always raised (`EventError`), while a hub that cannot be reached is an outage that a job
runner must survive, so it is only raised when the publisher is strict (`PublishError`).
"""

from __future__ import annotations

from typing import Optional


class LivebridgeError(Exception):
    """Base class of every error raised by this package."""


class EventError(LivebridgeError, TypeError, ValueError):
    """An event or message that the hub would refuse: a missing or mistyped field, a value out
    of range, an unknown event type, a bad channel name, or the hub's own 400 answer.

    It is both a `TypeError` and a `ValueError` so that code written against either keeps
    working. `field` names the offending field when it is known (`"progress"`).
    """

    def __init__(self, message: str, field: Optional[str] = None) -> None:
        super().__init__(message)
        self.field = field


class PublishError(LivebridgeError):
    """The hub could not be reached or did not accept the request (timeout, refused
    connection, 5xx, 401, ...). `status` is the HTTP status when there was an answer and
    `server_error` the hub's `error` text."""

    def __init__(
        self,
        message: str,
        status: Optional[int] = None,
        server_error: Optional[str] = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.server_error = server_error
