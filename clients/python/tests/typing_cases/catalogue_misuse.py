"""Checked, not run, by test_catalogue_types.py: each line marked `# error: CODE` misuses the
generated catalogue types, and mypy --strict must refuse exactly those lines, with that code."""

from __future__ import annotations

from livebridge.catalogue_types import CatalogueEvent, JobProgressEvent

no_stage: JobProgressEvent = {"type": "job_progress", "timestamp": "t", "job_id": 1, "progress": 1.0}  # error: typeddict-item
text_progress: JobProgressEvent = {"type": "job_progress", "timestamp": "t", "job_id": 1, "stage": "s", "progress": "50"}  # error: typeddict-item
wrong_type: JobProgressEvent = {"type": "job_started", "timestamp": "t", "job_id": 1, "stage": "s", "progress": 1.0}  # error: typeddict-item


def use(event: JobProgressEvent, any_event: CatalogueEvent) -> None:
    stage: int = event["stage"]  # error: assignment
    job: int = event["job_id"]  # error: assignment
    print(event["progres"])  # error: typeddict-item
    print(any_event["progress"])  # error: typeddict-item
    print(stage, job)
