//! The event catalogue: the 22 typed application events of the seeds, their fields and the
//! channel each one is published on.
//!
//! Decoding is strict so that a typo in a publisher is caught at the hub, not in every
//! client: a missing required field, a field of the wrong type and an unknown field are each
//! an error that names the field. `type` selects the event; a `timestamp` sent by a publisher
//! is ignored, because the hub stamps every event when it publishes it.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::fmt;

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

/// Why an event could not be decoded: the field at fault and what is wrong with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    /// The event type, e.g. `job_progress`.
    pub event: String,
    /// Path of the offending field (`progress`, `status.cpu`); empty for the whole event.
    pub field: String,
    /// What is wrong.
    pub problem: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            write!(f, "{}: {}", self.event, self.problem)
        } else {
            write!(f, "{}.{}: {}", self.event, self.field, self.problem)
        }
    }
}

macro_rules! event_struct {
    ($(#[$doc:meta])* $name:ident { $($(#[$fdoc:meta])* $field:ident : $ty:ty),* $(,)? }) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
        #[serde(deny_unknown_fields)]
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
        /// Computed by the hub; a publisher may not set it.
        #[serde(skip_deserializing, default)]
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
        /// One event of the catalogue.
        #[derive(Clone, Debug, PartialEq)]
        pub enum Event {
            $(
                #[doc = concat!("`", $name, "` on channel `", $channel, "`.")]
                $variant($variant),
            )*
        }

        /// Every event type with its channel, in catalogue order.
        pub const CATALOGUE: &[(&str, &str)] = &[$(($name, $channel)),*];

        impl Event {
            /// The event's `type`.
            pub fn name(&self) -> &'static str {
                match self { $(Event::$variant(_) => $name,)* }
            }

            /// The channel the event is published on.
            pub fn channel(&self) -> &'static str {
                match self { $(Event::$variant(_) => $channel,)* }
            }

            /// The event's own fields as a JSON object.
            fn fields_json(&self) -> String {
                let encoded = match self {
                    $(Event::$variant(fields) => serde_json::to_string(fields),)*
                };
                encoded.expect("catalogue structs always serialise")
            }

            fn decode_fields(name: &str, fields: Value) -> Option<Result<Event, FieldError>> {
                match name {
                    $($name => Some(decode_as(name, fields).map(Event::$variant)),)*
                    _ => None,
                }
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

/// The channel of a catalogue event type, or `None` when `name` is not in the catalogue.
pub fn channel_of(name: &str) -> Option<&'static str> {
    CATALOGUE
        .iter()
        .find(|(event, _)| *event == name)
        .map(|(_, channel)| *channel)
}

fn decode_as<T: serde::de::DeserializeOwned>(name: &str, fields: Value) -> Result<T, FieldError> {
    serde_path_to_error::deserialize(fields).map_err(|err| {
        let path = err.path().to_string();
        FieldError {
            event: name.to_string(),
            field: if path == "." { String::new() } else { path },
            problem: err.into_inner().to_string(),
        }
    })
}

impl Event {
    /// Decodes a message object. `Ok(None)` when its `type` is not a catalogue event;
    /// an error naming the field when it is one but a field is missing, mistyped, out of
    /// range or unknown.
    pub fn decode(message: &Map<String, Value>) -> Result<Option<Event>, FieldError> {
        let Some(name) = message.get("type").and_then(Value::as_str) else {
            return Ok(None);
        };
        if channel_of(name).is_none() {
            return Ok(None);
        }
        let mut fields = message.clone();
        fields.remove("type");
        fields.remove("timestamp");
        let event = Event::decode_fields(name, Value::Object(fields))
            .expect("name was found in the catalogue")?;
        event.checked()
    }

    /// Applies the rules serde types cannot express, and fills computed fields.
    fn checked(mut self) -> Result<Option<Event>, FieldError> {
        let name = self.name();
        let out_of_range = |field: &str, problem: &str| FieldError {
            event: name.to_string(),
            field: field.to_string(),
            problem: problem.to_string(),
        };
        match &mut self {
            Event::JobProgress(progress) if !(0.0..=100.0).contains(&progress.progress) => {
                return Err(out_of_range("progress", "must be between 0 and 100"));
            }
            Event::SessionUpdated(update) => {
                if update.processed_photos > update.total_photos {
                    return Err(out_of_range(
                        "processed_photos",
                        "must not exceed total_photos",
                    ));
                }
                update.progress_percent = percent(update.processed_photos, update.total_photos);
            }
            _ => {}
        }
        Ok(Some(self))
    }

    /// The event as delivered: `type`, then `timestamp`, then its fields.
    pub fn to_json(&self, timestamp: &str) -> String {
        let fields = self.fields_json();
        let rest = &fields[1..];
        let mut out = String::with_capacity(fields.len() + timestamp.len() + 40);
        out.push_str("{\"type\":\"");
        out.push_str(self.name());
        out.push_str("\",\"timestamp\":\"");
        out.push_str(timestamp);
        out.push('"');
        if rest != "}" {
            out.push(',');
        }
        out.push_str(rest);
        out
    }
}

fn percent(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        return 0.0;
    }
    (part as f64 * 10_000.0 / whole as f64).round() / 100.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn object(value: Value) -> Map<String, Value> {
        value.as_object().unwrap().clone()
    }

    #[test]
    fn catalogue_has_22_events_on_7_channels() {
        assert_eq!(CATALOGUE.len(), 22);
        let mut channels: Vec<_> = CATALOGUE.iter().map(|(_, c)| *c).collect();
        channels.sort();
        channels.dedup();
        assert_eq!(
            channels,
            [
                "approval", "export", "jobs", "photos", "queue", "sessions", "system"
            ]
        );
    }

    #[test]
    fn decodes_and_stamps_job_progress() {
        let message = object(json!({
            "type": "job_progress", "job_id": "abc123", "stage": "analyzing",
            "progress": 45.5, "message": "Analyzing image quality"
        }));
        let event = Event::decode(&message).unwrap().unwrap();
        assert_eq!(event.channel(), "jobs");
        assert_eq!(
            event.to_json("2026-11-25T15:08:21.123Z"),
            r#"{"type":"job_progress","timestamp":"2026-11-25T15:08:21.123Z","job_id":"abc123","stage":"analyzing","progress":45.5,"message":"Analyzing image quality"}"#
        );
    }

    #[test]
    fn session_updated_gets_progress_percent() {
        let message = object(json!({
            "type": "session_updated", "session_id": 12, "total_photos": 3,
            "processed_photos": 1, "status": "processing"
        }));
        let event = Event::decode(&message).unwrap().unwrap();
        let json: Value = serde_json::from_str(&event.to_json("t")).unwrap();
        assert_eq!(json["progress_percent"], json!(33.33));
        let empty = object(json!({
            "type": "session_updated", "session_id": 1, "total_photos": 0,
            "processed_photos": 0, "status": "new"
        }));
        let json: Value =
            serde_json::from_str(&Event::decode(&empty).unwrap().unwrap().to_json("t")).unwrap();
        assert_eq!(json["progress_percent"], json!(0.0));
    }

    #[test]
    fn errors_name_the_field() {
        let missing = object(json!({"type": "job_progress", "stage": "x", "progress": 1}));
        let err = Event::decode(&missing).unwrap_err();
        assert!(err.to_string().contains("job_id"), "{err}");

        let mistyped = object(json!({
            "type": "job_progress", "job_id": "j", "stage": "x", "progress": "half"
        }));
        let err = Event::decode(&mistyped).unwrap_err();
        assert_eq!(err.field, "progress");
        assert!(
            err.to_string()
                .starts_with("job_progress.progress: invalid type"),
            "{err}"
        );

        let unknown = object(json!({"type": "job_started", "job_id": 1, "photo_id": 2, "phot": 3}));
        let err = Event::decode(&unknown).unwrap_err();
        assert!(err.to_string().contains("phot"), "{err}");

        let range =
            object(json!({"type": "job_progress", "job_id": 1, "stage": "s", "progress": 101}));
        assert_eq!(Event::decode(&range).unwrap_err().field, "progress");

        let computed = object(json!({
            "type": "session_updated", "session_id": 1, "total_photos": 1,
            "processed_photos": 0, "status": "s", "progress_percent": 5
        }));
        assert!(
            Event::decode(&computed)
                .unwrap_err()
                .to_string()
                .contains("progress_percent")
        );
    }

    #[test]
    fn non_catalogue_types_are_not_events() {
        assert_eq!(
            Event::decode(&object(json!({"type": "ping"}))).unwrap(),
            None
        );
        assert_eq!(Event::decode(&object(json!({"no_type": 1}))).unwrap(), None);
    }

    #[test]
    fn publisher_timestamp_is_replaced() {
        let message = object(json!({
            "type": "queue_status", "timestamp": "1999-01-01T00:00:00Z", "pending_count": 1,
            "processing_count": 2, "completed_count": 3, "failed_count": 0
        }));
        let json = Event::decode(&message).unwrap().unwrap().to_json("now");
        assert!(json.contains(r#""timestamp":"now""#) && !json.contains("1999"));
    }
}
