"""Drop-in replacement of the application's `websocket_events` module: the seeds' 22
`broadcast_*` functions with their names and parameters, plus `broadcast_event`,
`broadcast`, `send_to_client` and `send_to_client_type`.

    from livebridge.events import broadcast_job_progress
    broadcast_job_progress(job_id="abc123", stage="analyzing", progress=45.5,
                           message="Analyzing image quality")

Each returns True once the hub accepted the event, False when the hub could not be reached
(one warning is logged per outage; see `livebridge.publisher`), and raises `EventError`
(a `TypeError` and a `ValueError`) for an argument the hub would refuse. Optional catalogue
fields default to None and are then left out of the event. Where the seeds put a required
parameter after an optional one (`broadcast_job_failed`, `broadcast_session_completed`), its
default is the `REQUIRED` marker: leaving it out is an `EventError` naming it.

The hub is `LIVEBRIDGE_URL` (default http://127.0.0.1:5100), with `LIVEBRIDGE_ADMIN_TOKEN`,
or whatever `livebridge.configure()` set.
"""

from __future__ import annotations

from typing import Any, Dict, Mapping, Optional, Union

from .catalogue import REQUIRED, channel_of, validate_event
from .errors import EventError
from .publisher import default_publisher

Id = Union[int, str]
"""A job, photo or session id (or a priority): an int or a str."""

JSON = Any
"""Any value that encodes as JSON (dicts, lists, str, numbers, bools, None)."""

__all__ = [
    "broadcast_job_created",
    "broadcast_job_started",
    "broadcast_job_progress",
    "broadcast_job_completed",
    "broadcast_job_failed",
    "broadcast_photo_imported",
    "broadcast_photo_analyzed",
    "broadcast_photo_selected",
    "broadcast_photo_approved",
    "broadcast_photo_rejected",
    "broadcast_session_created",
    "broadcast_session_updated",
    "broadcast_session_completed",
    "broadcast_system_status",
    "broadcast_resource_warning",
    "broadcast_error_occurred",
    "broadcast_queue_status",
    "broadcast_priority_changed",
    "broadcast_approval_queue_updated",
    "broadcast_export_started",
    "broadcast_export_completed",
    "broadcast_export_failed",
    "broadcast_event",
    "broadcast",
    "send_to_client",
    "send_to_client_type",
]


def _publish(event_type: str, **fields: Any) -> bool:
    return default_publisher().publish(event_type, fields)


# Job events (channel "jobs")


def broadcast_job_created(job_id: Id, photo_id: Id, priority: Optional[Id] = None) -> bool:
    """A job was queued."""
    return _publish("job_created", job_id=job_id, photo_id=photo_id, priority=priority)


def broadcast_job_started(job_id: Id, photo_id: Id) -> bool:
    """A worker began the job."""
    return _publish("job_started", job_id=job_id, photo_id=photo_id)


def broadcast_job_progress(
    job_id: Id, stage: str, progress: float, message: Optional[str] = None
) -> bool:
    """Progress of a running job; `progress` is a percentage from 0 to 100."""
    return _publish("job_progress", job_id=job_id, stage=stage, progress=progress, message=message)


def broadcast_job_completed(job_id: Id, photo_id: Optional[Id] = None, result: JSON = None) -> bool:
    """The job succeeded; `result` is any JSON value."""
    return _publish("job_completed", job_id=job_id, photo_id=photo_id, result=result)


def broadcast_job_failed(
    job_id: Id,
    photo_id: Optional[Id] = None,
    error_message: str = REQUIRED,
    error_details: JSON = None,
) -> bool:
    """The job failed. `error_message` is required."""
    return _publish(
        "job_failed",
        job_id=job_id,
        photo_id=photo_id,
        error_message=error_message,
        error_details=error_details,
    )


# Photo events (channel "photos")


def broadcast_photo_imported(photo_id: Id, session_id: Id, file_name: str, file_path: str) -> bool:
    """A photo entered the library."""
    return _publish(
        "photo_imported",
        photo_id=photo_id,
        session_id=session_id,
        file_name=file_name,
        file_path=file_path,
    )


def broadcast_photo_analyzed(photo_id: Id, ai_score: float, analysis_results: JSON = None) -> bool:
    """AI analysis of a photo finished."""
    return _publish(
        "photo_analyzed", photo_id=photo_id, ai_score=ai_score, analysis_results=analysis_results
    )


def broadcast_photo_selected(
    photo_id: Id, context_tag: Optional[str] = None, selected_preset: Optional[str] = None
) -> bool:
    """A photo was picked for processing."""
    return _publish(
        "photo_selected",
        photo_id=photo_id,
        context_tag=context_tag,
        selected_preset=selected_preset,
    )


def broadcast_photo_approved(photo_id: Id, session_id: Optional[Id] = None) -> bool:
    """A reviewer approved the photo."""
    return _publish("photo_approved", photo_id=photo_id, session_id=session_id)


def broadcast_photo_rejected(
    photo_id: Id, session_id: Optional[Id] = None, reason: Optional[str] = None
) -> bool:
    """A reviewer rejected the photo."""
    return _publish("photo_rejected", photo_id=photo_id, session_id=session_id, reason=reason)


# Session events (channel "sessions")


def broadcast_session_created(
    session_id: Id, session_name: str, import_folder: Optional[str] = None
) -> bool:
    """A new import session."""
    return _publish(
        "session_created",
        session_id=session_id,
        session_name=session_name,
        import_folder=import_folder,
    )


def broadcast_session_updated(
    session_id: Id, total_photos: int, processed_photos: int, status: str
) -> bool:
    """Progress of a session; the hub adds `progress_percent`."""
    return _publish(
        "session_updated",
        session_id=session_id,
        total_photos=total_photos,
        processed_photos=processed_photos,
        status=status,
    )


def broadcast_session_completed(
    session_id: Id,
    session_name: Optional[str] = None,
    total_photos: int = REQUIRED,
    approved_photos: int = REQUIRED,
) -> bool:
    """Every photo of the session is done. `total_photos` and `approved_photos` are
    required."""
    return _publish(
        "session_completed",
        session_id=session_id,
        session_name=session_name,
        total_photos=total_photos,
        approved_photos=approved_photos,
    )


# System events (channel "system")


def broadcast_system_status(status: Union[str, Dict[str, Any]], details: JSON = None) -> bool:
    """A status string (`"healthy"`) or a dict of readings."""
    return _publish("system_status", status=status, details=details)


def broadcast_resource_warning(
    resource_type: str, current_value: float, threshold: float, message: Optional[str] = None
) -> bool:
    """A resource crossed its threshold."""
    return _publish(
        "resource_warning",
        resource_type=resource_type,
        current_value=current_value,
        threshold=threshold,
        message=message,
    )


def broadcast_error_occurred(
    error_type: str,
    error_message: str,
    error_details: JSON = None,
    job_id: Optional[Id] = None,
    photo_id: Optional[Id] = None,
) -> bool:
    """An error worth showing to the user."""
    return _publish(
        "error_occurred",
        error_type=error_type,
        error_message=error_message,
        error_details=error_details,
        job_id=job_id,
        photo_id=photo_id,
    )


# Queue events (channel "queue")


def broadcast_queue_status(
    pending_count: int, processing_count: int, completed_count: int, failed_count: int
) -> bool:
    """Counts of the job queue."""
    return _publish(
        "queue_status",
        pending_count=pending_count,
        processing_count=processing_count,
        completed_count=completed_count,
        failed_count=failed_count,
    )


def broadcast_priority_changed(
    job_id: Id, old_priority: Id, new_priority: Id, reason: Optional[str] = None
) -> bool:
    """A job was re-prioritised."""
    return _publish(
        "priority_changed",
        job_id=job_id,
        old_priority=old_priority,
        new_priority=new_priority,
        reason=reason,
    )


# Approval events (channel "approval")


def broadcast_approval_queue_updated(queue_count: int, session_id: Optional[Id] = None) -> bool:
    """The approval queue changed size."""
    return _publish("approval_queue_updated", queue_count=queue_count, session_id=session_id)


# Export events (channel "export")


def broadcast_export_started(
    photo_id: Id, preset_name: str, destination: Optional[str] = None
) -> bool:
    """An export began."""
    return _publish(
        "export_started", photo_id=photo_id, preset_name=preset_name, destination=destination
    )


def broadcast_export_completed(
    photo_id: Id, preset_name: str, output_path: str, file_size: Optional[int] = None
) -> bool:
    """An export was written."""
    return _publish(
        "export_completed",
        photo_id=photo_id,
        preset_name=preset_name,
        output_path=output_path,
        file_size=file_size,
    )


def broadcast_export_failed(photo_id: Id, preset_name: str, error_message: str) -> bool:
    """An export failed."""
    return _publish(
        "export_failed", photo_id=photo_id, preset_name=preset_name, error_message=error_message
    )


# Generic publishing


def broadcast_event(event_type: str, data: Mapping[str, Any], channel: Optional[str] = None) -> bool:
    """Publishes a catalogue event given as a type and a dict of fields. `channel`, when
    given, must be the event's own channel (catalogue events cannot be moved); messages of
    your own go through `broadcast()`."""
    event = validate_event(event_type, data)
    own_channel = channel_of(event_type)
    if channel is not None and channel != own_channel:
        raise EventError(
            f"channel: {event_type} is published on {own_channel!r}, not {channel!r} "
            "(use broadcast() to send a message of your own on another channel)",
            "channel",
        )
    return default_publisher().publish(event_type, event)


def broadcast(message: Mapping[str, Any], channel: Optional[str] = None) -> bool:
    """Sends `message` (a dict with a str `type`) to the subscribers of `channel`, or to
    every client when `channel` is None."""
    return default_publisher().broadcast(message, channel=channel)


def send_to_client(client_id: str, message: Mapping[str, Any]) -> bool:
    """Sends `message` to one client. False when no session has that id."""
    return default_publisher().send_to_client(client_id, message)


def send_to_client_type(client_type: str, message: Mapping[str, Any]) -> bool:
    """Sends `message` to every client of one type (`gui`, `web`, `lightroom`, ...)."""
    if not isinstance(client_type, str) or not client_type:
        raise EventError("client_type: must be a non-empty str", "client_type")
    return default_publisher().broadcast(message, client_type=client_type)
