"""The event catalogue of docs/protocol.md: the 22 event types, the channel each is published
on, their fields, and the local checks that refuse a bad event before anything is sent.

The checks mirror the hub's strict decoding (an unknown field, a missing required field and a
mistyped field are errors that name the field), so a programming error surfaces in the
process that made it, with a Python traceback, instead of as a 400 from the hub.
"""

from __future__ import annotations

import enum
import json
import math
import re
from dataclasses import dataclass
from typing import Any, Dict, Mapping, Optional, Tuple

from .errors import EventError

I64_MIN = -(2**63)
I64_MAX = 2**63 - 1
U64_MAX = 2**64 - 1

_CHANNEL_NAME = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")


class Kind(enum.Enum):
    """What a field may hold, as the hub decodes it."""

    ID = "an int or a str"  # job, photo and session ids, priorities: i64 or text
    TEXT = "a str"
    NUMBER = "a number"  # f64: int or float, finite
    PERCENT = "a number from 0 to 100"
    COUNT = "a non-negative int"  # u64
    JSON = "any JSON value"
    STATUS = "a str or a dict"


@dataclass(frozen=True)
class Field:
    name: str
    kind: Kind
    required: bool = True


@dataclass(frozen=True)
class EventSpec:
    type: str
    channel: str
    fields: Tuple[Field, ...]

    def field(self, name: str) -> Optional[Field]:
        for field in self.fields:
            if field.name == name:
                return field
        return None


def _spec(event_type: str, channel: str, *fields: Field) -> EventSpec:
    return EventSpec(event_type, channel, fields)


def _req(name: str, kind: Kind) -> Field:
    return Field(name, kind, True)


def _opt(name: str, kind: Kind) -> Field:
    return Field(name, kind, False)


ID, TEXT, NUMBER, PERCENT, COUNT, JSON, STATUS = (
    Kind.ID,
    Kind.TEXT,
    Kind.NUMBER,
    Kind.PERCENT,
    Kind.COUNT,
    Kind.JSON,
    Kind.STATUS,
)

CATALOGUE: Dict[str, EventSpec] = {
    spec.type: spec
    for spec in (
        _spec("job_created", "jobs", _req("job_id", ID), _req("photo_id", ID), _opt("priority", ID)),
        _spec("job_started", "jobs", _req("job_id", ID), _req("photo_id", ID)),
        _spec(
            "job_progress",
            "jobs",
            _req("job_id", ID),
            _req("stage", TEXT),
            _req("progress", PERCENT),
            _opt("message", TEXT),
        ),
        _spec("job_completed", "jobs", _req("job_id", ID), _opt("photo_id", ID), _opt("result", JSON)),
        _spec(
            "job_failed",
            "jobs",
            _req("job_id", ID),
            _opt("photo_id", ID),
            _req("error_message", TEXT),
            _opt("error_details", JSON),
        ),
        _spec(
            "photo_imported",
            "photos",
            _req("photo_id", ID),
            _req("session_id", ID),
            _req("file_name", TEXT),
            _req("file_path", TEXT),
        ),
        _spec(
            "photo_analyzed",
            "photos",
            _req("photo_id", ID),
            _req("ai_score", NUMBER),
            _opt("analysis_results", JSON),
        ),
        _spec(
            "photo_selected",
            "photos",
            _req("photo_id", ID),
            _opt("context_tag", TEXT),
            _opt("selected_preset", TEXT),
        ),
        _spec("photo_approved", "photos", _req("photo_id", ID), _opt("session_id", ID)),
        _spec(
            "photo_rejected",
            "photos",
            _req("photo_id", ID),
            _opt("session_id", ID),
            _opt("reason", TEXT),
        ),
        _spec(
            "session_created",
            "sessions",
            _req("session_id", ID),
            _req("session_name", TEXT),
            _opt("import_folder", TEXT),
        ),
        _spec(
            "session_updated",
            "sessions",
            _req("session_id", ID),
            _req("total_photos", COUNT),
            _req("processed_photos", COUNT),
            _req("status", TEXT),
        ),
        _spec(
            "session_completed",
            "sessions",
            _req("session_id", ID),
            _opt("session_name", TEXT),
            _req("total_photos", COUNT),
            _req("approved_photos", COUNT),
        ),
        _spec("system_status", "system", _req("status", STATUS), _opt("details", JSON)),
        _spec(
            "resource_warning",
            "system",
            _req("resource_type", TEXT),
            _req("current_value", NUMBER),
            _req("threshold", NUMBER),
            _opt("message", TEXT),
        ),
        _spec(
            "error_occurred",
            "system",
            _req("error_type", TEXT),
            _req("error_message", TEXT),
            _opt("error_details", JSON),
            _opt("job_id", ID),
            _opt("photo_id", ID),
        ),
        _spec(
            "queue_status",
            "queue",
            _req("pending_count", COUNT),
            _req("processing_count", COUNT),
            _req("completed_count", COUNT),
            _req("failed_count", COUNT),
        ),
        _spec(
            "priority_changed",
            "queue",
            _req("job_id", ID),
            _req("old_priority", ID),
            _req("new_priority", ID),
            _opt("reason", TEXT),
        ),
        _spec("approval_queue_updated", "approval", _req("queue_count", COUNT), _opt("session_id", ID)),
        _spec(
            "export_started",
            "export",
            _req("photo_id", ID),
            _req("preset_name", TEXT),
            _opt("destination", TEXT),
        ),
        _spec(
            "export_completed",
            "export",
            _req("photo_id", ID),
            _req("preset_name", TEXT),
            _req("output_path", TEXT),
            _opt("file_size", COUNT),
        ),
        _spec(
            "export_failed",
            "export",
            _req("photo_id", ID),
            _req("preset_name", TEXT),
            _req("error_message", TEXT),
        ),
    )
}

CHANNELS: Tuple[str, ...] = tuple(dict.fromkeys(spec.channel for spec in CATALOGUE.values()))


class _Missing:
    """Default of a required parameter that follows an optional one in a seed signature
    (`broadcast_job_failed(job_id, photo_id=None, error_message=REQUIRED, ...)`)."""

    def __repr__(self) -> str:
        return "<required>"


REQUIRED: Any = _Missing()


def channel_of(event_type: str) -> Optional[str]:
    """The channel of a catalogue event type, or None when it is not in the catalogue."""
    spec = CATALOGUE.get(event_type)
    return spec.channel if spec else None


def _problem(value: Any, kind: Kind) -> Optional[str]:
    """What is wrong with `value` for a field of `kind`, or None when it is fine."""
    if kind is Kind.ID:
        if isinstance(value, str):
            return None
        if isinstance(value, int) and not isinstance(value, bool):
            return None if I64_MIN <= value <= I64_MAX else "is out of the 64-bit integer range"
        return f"must be {kind.value}, not {type(value).__name__}"
    if kind is Kind.TEXT:
        return None if isinstance(value, str) else f"must be a str, not {type(value).__name__}"
    if kind in (Kind.NUMBER, Kind.PERCENT):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return f"must be a number, not {type(value).__name__}"
        if not math.isfinite(value):
            return "must be a finite number"
        if kind is Kind.PERCENT and not 0 <= value <= 100:
            return f"must be between 0 and 100, not {value!r}"
        return None
    if kind is Kind.COUNT:
        if isinstance(value, bool) or not isinstance(value, int):
            return f"must be a non-negative int, not {type(value).__name__}"
        if value < 0:
            return f"must not be negative, not {value!r}"
        return None if value <= U64_MAX else "is out of the 64-bit integer range"
    if kind is Kind.STATUS and not isinstance(value, (str, dict)):
        return f"must be a str or a dict, not {type(value).__name__}"
    # JSON, and the dict of STATUS: anything that encodes as strict JSON.
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as err:
        return f"must be JSON-serialisable ({err})"
    return None


def validate_event(event_type: Any, fields: Mapping[str, Any]) -> Dict[str, Any]:
    """Checks a catalogue event and returns it as sent to the hub: `type` first, optional
    fields that are None left out. Raises `EventError` naming the field at fault."""
    if not isinstance(event_type, str):
        raise EventError(f"event type must be a str, not {type(event_type).__name__}", "type")
    spec = CATALOGUE.get(event_type)
    if spec is None:
        raise EventError(
            f"unknown event type {event_type!r}; the catalogue has {', '.join(CATALOGUE)} "
            "(use broadcast() for messages of your own)",
            "type",
        )
    if not isinstance(fields, Mapping):
        raise EventError(f"{event_type}: event data must be a dict, not {type(fields).__name__}")
    event: Dict[str, Any] = {"type": event_type}
    for name in fields:
        if name in ("type", "timestamp"):
            continue
        if not isinstance(name, str) or spec.field(name) is None:
            known = ", ".join(field.name for field in spec.fields)
            raise EventError(f"{event_type}.{name}: unknown field (the fields are {known})", str(name))
    if "type" in fields and fields["type"] != event_type:
        raise EventError(f"{event_type}.type: does not match the event type ({fields['type']!r})", "type")
    for field in spec.fields:
        value = fields.get(field.name, None)
        if value is REQUIRED or value is None:
            if field.required:
                raise EventError(f"{event_type}.{field.name}: missing required field", field.name)
            continue
        problem = _problem(value, field.kind)
        if problem:
            raise EventError(f"{event_type}.{field.name}: {problem}", field.name)
        event[field.name] = value
    if event_type == "session_updated" and event["processed_photos"] > event["total_photos"]:
        raise EventError(
            "session_updated.processed_photos: must not exceed total_photos", "processed_photos"
        )
    return event


def validate_channel_name(channel: Any, field: str = "channel") -> str:
    """Checks a channel name: 1-64 ASCII letters, digits and `_ - . :`."""
    if not isinstance(channel, str):
        raise EventError(f"{field}: must be a str, not {type(channel).__name__}", field)
    if not _CHANNEL_NAME.match(channel):
        raise EventError(
            f"{field}: {channel!r} is not a channel name (1-64 ASCII letters, digits and _ - . :)",
            field,
        )
    return channel


def validate_message(message: Any, field: str = "message") -> Dict[str, Any]:
    """Checks a free-form message (broadcast, direct message, or a client message): a dict
    with a str `type` that encodes as JSON; a catalogue type is checked as its event."""
    if not isinstance(message, Mapping):
        raise EventError(f"{field}: must be a dict, not {type(message).__name__}", field)
    message_type = message.get("type")
    if not isinstance(message_type, str) or not message_type:
        raise EventError(f"{field}.type: a message needs a non-empty str field 'type'", "type")
    if message_type in CATALOGUE:
        return validate_event(message_type, message)
    problem = _problem(dict(message), Kind.JSON)
    if problem:
        raise EventError(f"{field}: {problem}", field)
    return dict(message)
