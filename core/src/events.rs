//! The seeds' 22 events as Rust types, for Rust code that publishes or reads them (an
//! embedder's typed handle, a Rust subscriber). What the hub accepts on the wire is decided by
//! the data of [`crate::Catalogue`]; a test keeps these types and the built-in catalogue in
//! step.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// A job, photo or session identifier: the seeds use both numbers (`"photo_id": 789`) and
/// strings (`"job_id": "abc123"`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Id {
    /// A numeric id.
    Number(i64),
    /// A textual id.
    Text(String),
}

/// A job priority: a number or a name such as `"high"`.
pub type Priority = Id;

macro_rules! event_struct {
    ($(#[$doc:meta])* $name:ident { $($(#[$fdoc:meta])* $field:ident : $ty:ty),* $(,)? }) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
        pub struct $name {
            $($(#[$fdoc])* pub $field: $ty,)*
        }
    };
}

event_struct!(
    /// `job_created` on `jobs`: a job was queued.
    JobCreated {
        /// The job.
        job_id: Id,
        /// The photo the job processes.
        photo_id: Id,
        /// Scheduling priority, when the queue uses one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        priority: Option<Priority>,
    }
);
event_struct!(
    /// `job_started` on `jobs`: a worker began the job.
    JobStarted {
        /// The job.
        job_id: Id,
        /// The photo the job processes.
        photo_id: Id,
    }
);
event_struct!(
    /// `job_progress` on `jobs`: progress of a running job.
    JobProgress {
        /// The job.
        job_id: Id,
        /// Current stage, e.g. `analyzing`.
        stage: String,
        /// Percent done, 0 to 100.
        progress: f64,
        /// Human-readable detail.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message: Option<String>,
    }
);
event_struct!(
    /// `job_completed` on `jobs`: the job succeeded.
    JobCompleted {
        /// The job.
        job_id: Id,
        /// The photo the job processed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        photo_id: Option<Id>,
        /// Whatever the job produced.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        result: Option<Value>,
    }
);
event_struct!(
    /// `job_failed` on `jobs`: the job failed.
    JobFailed {
        /// The job.
        job_id: Id,
        /// The photo the job processed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        photo_id: Option<Id>,
        /// Why it failed.
        error_message: String,
        /// Structured detail.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error_details: Option<Value>,
    }
);
event_struct!(
    /// `photo_imported` on `photos`: a photo entered the library.
    PhotoImported {
        /// The photo.
        photo_id: Id,
        /// The import session.
        session_id: Id,
        /// File name.
        file_name: String,
        /// Full path.
        file_path: String,
    }
);
event_struct!(
    /// `photo_analyzed` on `photos`: AI analysis finished.
    PhotoAnalyzed {
        /// The photo.
        photo_id: Id,
        /// Overall score.
        ai_score: f64,
        /// Detailed results.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        analysis_results: Option<Value>,
    }
);
event_struct!(
    /// `photo_selected` on `photos`: a photo was picked for processing.
    PhotoSelected {
        /// The photo.
        photo_id: Id,
        /// Context tag that led to the choice.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        context_tag: Option<String>,
        /// Preset chosen for it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        selected_preset: Option<String>,
    }
);
event_struct!(
    /// `photo_approved` on `photos`: a reviewer approved the photo.
    PhotoApproved {
        /// The photo.
        photo_id: Id,
        /// Its session.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        session_id: Option<Id>,
    }
);
event_struct!(
    /// `photo_rejected` on `photos`: a reviewer rejected the photo.
    PhotoRejected {
        /// The photo.
        photo_id: Id,
        /// Its session.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        session_id: Option<Id>,
        /// Why.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    }
);
event_struct!(
    /// `session_created` on `sessions`: a new import session.
    SessionCreated {
        /// The session.
        session_id: Id,
        /// Its name.
        session_name: String,
        /// Folder it imports from.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        import_folder: Option<String>,
    }
);
event_struct!(
    /// `session_updated` on `sessions`: progress of a session; the hub adds
    /// `progress_percent` = processed / total × 100, rounded to two decimals (0 when total is 0).
    SessionUpdated {
        /// The session.
        session_id: Id,
        /// Photos in the session.
        total_photos: u64,
        /// Photos processed so far.
        processed_photos: u64,
        /// Session status, e.g. `processing`.
        status: String,
        /// Computed by the hub when it publishes the event (never sent by a publisher).
        #[serde(skip_serializing, default)]
        progress_percent: f64,
    }
);
event_struct!(
    /// `session_completed` on `sessions`: every photo of the session is done.
    SessionCompleted {
        /// The session.
        session_id: Id,
        /// Its name.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        session_name: Option<String>,
        /// Photos in the session.
        total_photos: u64,
        /// Photos approved.
        approved_photos: u64,
    }
);
event_struct!(
    /// `system_status` on `system`: a status string or an object of readings.
    SystemStatus {
        /// `"healthy"`, or readings such as `{"cpu_usage": 45.2}`.
        status: Value,
        /// Extra detail.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        details: Option<Value>,
    }
);
event_struct!(
    /// `resource_warning` on `system`: a resource crossed its threshold.
    ResourceWarning {
        /// `cpu`, `memory`, `gpu_temp`, `disk`...
        resource_type: String,
        /// Current reading.
        current_value: f64,
        /// The threshold crossed.
        threshold: f64,
        /// Human-readable detail.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message: Option<String>,
    }
);
event_struct!(
    /// `error_occurred` on `system`: an error worth showing to the user.
    ErrorOccurred {
        /// Error class.
        error_type: String,
        /// What went wrong.
        error_message: String,
        /// Structured detail.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error_details: Option<Value>,
        /// Job concerned.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        job_id: Option<Id>,
        /// Photo concerned.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        photo_id: Option<Id>,
    }
);
event_struct!(
    /// `queue_status` on `queue`: counts of the job queue.
    QueueStatus {
        /// Waiting jobs.
        pending_count: u64,
        /// Running jobs.
        processing_count: u64,
        /// Finished jobs.
        completed_count: u64,
        /// Failed jobs.
        failed_count: u64,
    }
);
event_struct!(
    /// `priority_changed` on `queue`: a job was re-prioritised.
    PriorityChanged {
        /// The job.
        job_id: Id,
        /// Before.
        old_priority: Priority,
        /// After.
        new_priority: Priority,
        /// Why.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    }
);
event_struct!(
    /// `approval_queue_updated` on `approval`: the approval queue changed size.
    ApprovalQueueUpdated {
        /// Photos awaiting approval.
        queue_count: u64,
        /// Session concerned.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        session_id: Option<Id>,
    }
);
event_struct!(
    /// `export_started` on `export`.
    ExportStarted {
        /// The photo.
        photo_id: Id,
        /// Export preset.
        preset_name: String,
        /// Destination folder or service.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        destination: Option<String>,
    }
);
event_struct!(
    /// `export_completed` on `export`.
    ExportCompleted {
        /// The photo.
        photo_id: Id,
        /// Export preset.
        preset_name: String,
        /// Written file.
        output_path: String,
        /// Size in bytes.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        file_size: Option<u64>,
    }
);
event_struct!(
    /// `export_failed` on `export`.
    ExportFailed {
        /// The photo.
        photo_id: Id,
        /// Export preset.
        preset_name: String,
        /// Why.
        error_message: String,
    }
);

macro_rules! catalogue {
    ($($variant:ident = $name:literal on $channel:literal),* $(,)?) => {
        /// One event of the built-in catalogue. Serialises as the message a publisher sends
        /// (`{"type": "job_progress", ...fields}`); deserialises from a delivered frame (the
        /// extra `timestamp`, `channel`, `offset` and `epoch` are ignored).
        #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
        #[serde(tag = "type", rename_all = "snake_case")]
        pub enum Event {
            $(
                #[doc = concat!("`", $name, "` on channel `", $channel, "`.")]
                $variant($variant),
            )*
        }

        impl Event {
            /// The event's `type`.
            pub fn name(&self) -> &'static str {
                match self { $(Event::$variant(_) => $name,)* }
            }

            /// The channel the built-in catalogue publishes it on.
            pub fn channel(&self) -> &'static str {
                match self { $(Event::$variant(_) => $channel,)* }
            }
        }
    };
}

catalogue! {
    JobCreated = "job_created" on "jobs",
    JobStarted = "job_started" on "jobs",
    JobProgress = "job_progress" on "jobs",
    JobCompleted = "job_completed" on "jobs",
    JobFailed = "job_failed" on "jobs",
    PhotoImported = "photo_imported" on "photos",
    PhotoAnalyzed = "photo_analyzed" on "photos",
    PhotoSelected = "photo_selected" on "photos",
    PhotoApproved = "photo_approved" on "photos",
    PhotoRejected = "photo_rejected" on "photos",
    SessionCreated = "session_created" on "sessions",
    SessionUpdated = "session_updated" on "sessions",
    SessionCompleted = "session_completed" on "sessions",
    SystemStatus = "system_status" on "system",
    ResourceWarning = "resource_warning" on "system",
    ErrorOccurred = "error_occurred" on "system",
    QueueStatus = "queue_status" on "queue",
    PriorityChanged = "priority_changed" on "queue",
    ApprovalQueueUpdated = "approval_queue_updated" on "approval",
    ExportStarted = "export_started" on "export",
    ExportCompleted = "export_completed" on "export",
    ExportFailed = "export_failed" on "export",
}

impl Event {
    /// The message a publisher sends for this event: `{"type": …, fields…}`.
    pub fn to_message(&self) -> Map<String, Value> {
        match serde_json::to_value(self) {
            Ok(Value::Object(map)) => map,
            _ => unreachable!("events serialise to objects"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Catalogue;

    fn examples() -> Vec<Event> {
        let id = |n: i64| Id::Number(n);
        vec![
            Event::JobProgress(JobProgress {
                job_id: Id::Text("j1".into()),
                stage: "analyzing".into(),
                progress: 45.5,
                message: None,
            }),
            Event::SessionUpdated(SessionUpdated {
                session_id: id(12),
                total_photos: 4,
                processed_photos: 1,
                status: "processing".into(),
                progress_percent: 0.0,
            }),
            Event::SystemStatus(SystemStatus {
                status: Value::from("healthy"),
                details: None,
            }),
            Event::ExportFailed(ExportFailed {
                photo_id: id(7),
                preset_name: "Web".into(),
                error_message: "no space".into(),
            }),
        ]
    }

    #[test]
    fn typed_events_are_accepted_by_the_builtin_catalogue_on_the_same_channel() {
        let catalogue = Catalogue::builtin();
        for event in examples() {
            let encoded = catalogue.encode(&event.to_message(), "t").unwrap().unwrap();
            assert_eq!(encoded.name, event.name());
            assert_eq!(encoded.channel, event.channel());
        }
    }

    #[test]
    fn a_delivered_frame_decodes_into_its_typed_event() {
        let catalogue = Catalogue::builtin();
        for event in examples() {
            let encoded = catalogue
                .encode(&event.to_message(), "2026-11-25T12:00:00.000Z")
                .unwrap()
                .unwrap();
            let mut frame: Value = serde_json::from_str(&encoded.json).unwrap();
            frame["offset"] = Value::from(3);
            let decoded: Event = serde_json::from_value(frame).unwrap();
            assert_eq!(decoded.name(), event.name());
        }
    }

    #[test]
    fn every_builtin_event_type_has_a_typed_event() {
        for spec in Catalogue::builtin().events() {
            let probe = serde_json::json!({"type": spec.name});
            let error = serde_json::from_value::<Event>(probe)
                .unwrap_err()
                .to_string();
            assert!(!error.contains("unknown variant"), "{}: {error}", spec.name);
        }
    }
}
