"""Checked, not run, by test_catalogue_types.py: the generated catalogue types used as an
application would, which mypy --strict must accept."""

from __future__ import annotations

import json
from typing import Optional, cast

from livebridge.catalogue_types import CatalogueEvent, JobProgressEvent


def describe(event: CatalogueEvent) -> str:
    # Narrowing on "type" gives one event's fields.
    if event["type"] == "job_progress":
        progress: float = event["progress"]
        message: str = event.get("message", "")
        return f"{event['job_id']} {event['stage']}: {progress:.1f} {message}"
    if event["type"] == "session_updated":
        percent: float = event["progress_percent"]
        return f"session {event['session_id']}: {percent}%"
    if event["type"] == "system_status":
        status = event["status"]
        return status if isinstance(status, str) else json.dumps(status)
    if event["type"] == "queue_status":
        waiting: int = event["pending_count"] + event["processing_count"]
        return str(waiting)
    return event["type"]


def received(text: str) -> str:
    return describe(cast(CatalogueEvent, json.loads(text)))


progressed: JobProgressEvent = {
    "type": "job_progress",
    "timestamp": "2026-11-25T15:08:21.123Z",
    "job_id": "abc123",
    "stage": "analyzing",
    "progress": 45.5,
}
offset: Optional[int] = progressed.get("offset")
epoch: Optional[str] = progressed.get("epoch")
print(describe(progressed), offset, epoch)
