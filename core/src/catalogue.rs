//! The event catalogue as data: which application events exist, the channel each one is
//! published on, the fields it carries and the rules between them, and the strict encoding
//! of a published event into the frame subscribers receive.
//!
//! The seeds' 22 events are the built-in default ([`Catalogue::builtin`]); an embedder, or
//! `livebridge serve --catalogue FILE`, adds or replaces event types with the same data
//! ([`Catalogue::extended`]). `GET /api/catalogue` serves it as JSON.
//!
//! Encoding is strict so that a typo in a publisher is caught at the hub, not in every
//! client: a missing required field, a field of the wrong type and an unknown field are each
//! an error that names the field. `type` selects the event; a `timestamp` sent by a publisher
//! is ignored, because the hub stamps every event when it publishes it.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::fmt;

/// What a field holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FieldKind {
    /// A job, photo or session id: an integer or a string (the seeds use both).
    Id,
    /// A string.
    String,
    /// A number, delivered with a decimal point (`50` is delivered as `50.0`).
    Number,
    /// A non-negative integer.
    Count,
    /// A string or an object (a status word, or readings).
    StringOrObject,
    /// Any JSON value.
    Any,
}

impl FieldKind {
    fn expected(self) -> &'static str {
        match self {
            FieldKind::Id => "a number or a string",
            FieldKind::String => "a string",
            FieldKind::Number => "a number",
            FieldKind::Count => "a non-negative integer",
            FieldKind::StringOrObject => "a string or an object",
            FieldKind::Any => "any JSON value",
        }
    }

    /// Whether a value is of this kind.
    fn accepts(self, value: &Value) -> bool {
        match (self, value) {
            (FieldKind::Id, Value::Number(n)) => n.is_i64(),
            (FieldKind::Id | FieldKind::String | FieldKind::StringOrObject, Value::String(_))
            | (FieldKind::StringOrObject, Value::Object(_))
            | (FieldKind::Any, _) => true,
            (FieldKind::Number, Value::Number(n)) => n.as_f64().is_some_and(f64::is_finite),
            (FieldKind::Count, Value::Number(n)) => n.is_u64(),
            _ => false,
        }
    }
}

/// One field of an event.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldSpec {
    /// The field's name.
    pub name: String,
    /// What it holds.
    #[serde(rename = "type")]
    pub kind: FieldKind,
    /// Whether a publisher must give it. Optional fields that are absent (or `null`) are
    /// left out of the delivered event.
    #[serde(default)]
    pub required: bool,
    /// Smallest value allowed (numbers only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    /// Largest value allowed (numbers only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
}

/// A rule between fields, checked after each field on its own.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "rule", rename_all = "snake_case", deny_unknown_fields)]
pub enum Rule {
    /// `field` must not exceed `limit` (both numeric fields of the event).
    AtMost {
        /// The field checked.
        field: String,
        /// The field it may not exceed.
        limit: String,
    },
    /// The hub adds `field` = `part` / `whole` × 100, rounded to two decimals (0 when
    /// `whole` is 0). A publisher may not set it.
    Percent {
        /// The computed field.
        field: String,
        /// Numerator field.
        part: String,
        /// Denominator field.
        whole: String,
    },
}

/// One event type.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventSpec {
    /// The event's `type`, e.g. `job_progress`.
    #[serde(rename = "type")]
    pub name: String,
    /// The channel it is published on.
    pub channel: String,
    /// Its fields, in the order they are delivered.
    pub fields: Vec<FieldSpec>,
    /// Rules between fields.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<Rule>,
}

/// Why an event could not be encoded: the field at fault and what is wrong with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    /// The event type, e.g. `job_progress`.
    pub event: String,
    /// The offending field (`progress`); empty for the whole event.
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

impl std::error::Error for FieldError {}

/// Why a catalogue (from a file or an embedder) is not usable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CatalogueError {
    /// The event type at fault.
    pub event: String,
    /// What is wrong.
    pub problem: String,
}

impl fmt::Display for CatalogueError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "event type {:?}: {}", self.event, self.problem)
    }
}

impl std::error::Error for CatalogueError {}

/// An event encoded for delivery.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EncodedEvent<'c> {
    /// The event type.
    pub name: &'c str,
    /// Its channel.
    pub channel: &'c str,
    /// The delivered JSON: `type`, `timestamp`, then the fields in catalogue order.
    pub json: String,
}

/// The event types the hub accepts. `Catalogue::default()` is [`Catalogue::builtin`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "CatalogueFile", into = "CatalogueFile")]
pub struct Catalogue {
    events: Vec<EventSpec>,
    /// Position of each event type in `events`.
    index: BTreeMap<String, usize>,
}

/// The serialised form: `{"events": [...]}`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CatalogueFile {
    events: Vec<EventSpec>,
}

impl TryFrom<CatalogueFile> for Catalogue {
    type Error = CatalogueError;
    fn try_from(file: CatalogueFile) -> Result<Self, Self::Error> {
        Catalogue::new(file.events)
    }
}

impl From<Catalogue> for CatalogueFile {
    fn from(catalogue: Catalogue) -> Self {
        CatalogueFile {
            events: catalogue.events,
        }
    }
}

impl Default for Catalogue {
    fn default() -> Self {
        Catalogue::builtin()
    }
}

impl Catalogue {
    /// A catalogue of exactly these event types, checked: names are labels, channels valid
    /// channel names, field names unique, and rules refer to numeric fields of the event.
    pub fn new(events: Vec<EventSpec>) -> Result<Self, CatalogueError> {
        let mut index = BTreeMap::new();
        for (position, spec) in events.iter().enumerate() {
            check_spec(spec)?;
            if index.insert(spec.name.clone(), position).is_some() {
                return Err(CatalogueError {
                    event: spec.name.clone(),
                    problem: "defined twice".to_string(),
                });
            }
        }
        Ok(Catalogue { events, index })
    }

    /// This catalogue with `events` added; an event type that exists is replaced.
    pub fn extended(&self, events: Vec<EventSpec>) -> Result<Self, CatalogueError> {
        let mut all = self.events.clone();
        for spec in events {
            match all.iter_mut().find(|existing| existing.name == spec.name) {
                Some(existing) => *existing = spec,
                None => all.push(spec),
            }
        }
        Catalogue::new(all)
    }

    /// This catalogue extended with the event types of a catalogue file's text: JSON of the
    /// shape `{"events": [EventSpec...]}` (docs/protocol.md, "Event catalogue"), unknown keys
    /// refused. The error says what is wrong; the caller names the file.
    pub fn extended_by_file(&self, json: &str) -> Result<Self, String> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct File {
            events: Vec<EventSpec>,
        }
        let file: File = serde_json::from_str(json).map_err(|e| e.to_string())?;
        self.extended(file.events).map_err(|e| e.to_string())
    }

    /// Every event type, in catalogue order.
    pub fn events(&self) -> &[EventSpec] {
        &self.events
    }

    /// One event type.
    pub fn get(&self, name: &str) -> Option<&EventSpec> {
        self.index.get(name).map(|&position| &self.events[position])
    }

    /// Encodes a message object for delivery, stamped with `timestamp`. `Ok(None)` when its
    /// `type` is not an event of the catalogue; an error naming the field when it is one but
    /// a field is missing, mistyped, out of range or unknown.
    pub fn encode(
        &self,
        message: &Map<String, Value>,
        timestamp: &str,
    ) -> Result<Option<EncodedEvent<'_>>, FieldError> {
        let Some(spec) = message
            .get("type")
            .and_then(Value::as_str)
            .and_then(|name| self.get(name))
        else {
            return Ok(None);
        };
        let error = |field: &str, problem: String| FieldError {
            event: spec.name.clone(),
            field: field.to_string(),
            problem,
        };
        if let Some(unknown) = message.keys().find(|key| {
            !matches!(key.as_str(), "type" | "timestamp")
                && !spec.fields.iter().any(|f| f.name == **key)
        }) {
            let expected: Vec<String> = spec
                .fields
                .iter()
                .map(|f| format!("`{}`", f.name))
                .collect();
            return Err(error(
                "",
                format!(
                    "unknown field `{unknown}`, expected one of {}",
                    expected.join(", ")
                ),
            ));
        }
        // Written straight out as each field is checked: this runs once per publish.
        let mut json = Vec::with_capacity(96 + 32 * spec.fields.len());
        json.extend_from_slice(b"{\"type\":");
        write_json(&mut json, &spec.name);
        json.extend_from_slice(b",\"timestamp\":\"");
        json.extend_from_slice(timestamp.as_bytes());
        json.push(b'"');
        for field in &spec.fields {
            let given = message.get(&field.name).filter(|v| !v.is_null());
            let Some(given) = given else {
                if field.required {
                    return Err(error("", format!("missing field `{}`", field.name)));
                }
                continue;
            };
            if !field.kind.accepts(given) {
                return Err(error(
                    &field.name,
                    format!(
                        "invalid type: {}, expected {}",
                        describe(given),
                        field.kind.expected()
                    ),
                ));
            }
            json.push(b',');
            write_json(&mut json, &field.name);
            json.push(b':');
            match (field.kind, given.as_f64()) {
                (FieldKind::Number | FieldKind::Count, Some(number)) => {
                    if field.min.is_some_and(|min| number < min)
                        || field.max.is_some_and(|max| number > max)
                    {
                        return Err(error(&field.name, range_text(field)));
                    }
                    if field.kind == FieldKind::Number {
                        // Delivered with a decimal point, whatever the publisher wrote.
                        write_json(&mut json, &number);
                    } else {
                        write_json(&mut json, given);
                    }
                }
                _ => write_json(&mut json, given),
            }
        }
        let number = |name: &str| message.get(name).and_then(Value::as_f64);
        for rule in &spec.rules {
            match rule {
                Rule::AtMost { field, limit } => {
                    if let (Some(value), Some(bound)) = (number(field), number(limit))
                        && value > bound
                    {
                        return Err(error(field, format!("must not exceed {limit}")));
                    }
                }
                Rule::Percent { field, part, whole } => {
                    let part = number(part).unwrap_or(0.0);
                    let whole = number(whole).unwrap_or(0.0);
                    let percent = if whole == 0.0 {
                        0.0
                    } else {
                        (part * 10_000.0 / whole).round() / 100.0
                    };
                    json.push(b',');
                    write_json(&mut json, field);
                    json.push(b':');
                    write_json(&mut json, &percent);
                }
            }
        }
        json.push(b'}');
        let json = String::from_utf8(json).expect("serde_json writes UTF-8");
        Ok(Some(EncodedEvent {
            name: &spec.name,
            channel: &spec.channel,
            json,
        }))
    }
}

fn write_json(out: &mut Vec<u8>, value: &(impl Serialize + ?Sized)) {
    serde_json::to_writer(out, value).expect("JSON values and numbers serialise");
}

fn range_text(field: &FieldSpec) -> String {
    match (field.min, field.max) {
        (Some(min), Some(max)) => format!("must be between {min} and {max}"),
        (Some(min), None) => format!("must be at least {min}"),
        (None, Some(max)) => format!("must be at most {max}"),
        (None, None) => String::new(),
    }
}

/// How a value looks, for an "invalid type" error.
fn describe(value: &Value) -> String {
    match value {
        Value::Null => "null".to_string(),
        Value::Bool(b) => format!("boolean `{b}`"),
        Value::Number(n) if n.is_f64() => format!("floating point `{n}`"),
        Value::Number(n) => format!("integer `{n}`"),
        Value::String(s) => format!("string {s:?}"),
        Value::Array(_) => "a list".to_string(),
        Value::Object(_) => "an object".to_string(),
    }
}

fn check_spec(spec: &EventSpec) -> Result<(), CatalogueError> {
    let fail = |problem: String| CatalogueError {
        event: spec.name.clone(),
        problem,
    };
    let label = |text: &str| {
        !text.is_empty()
            && text.len() <= 64
            && text
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':'))
    };
    if !label(&spec.name) || matches!(spec.name.as_str(), "type" | "timestamp") {
        return Err(fail(
            "the type must be 1 to 64 ASCII letters, digits or _ - . :".to_string(),
        ));
    }
    if BUILT_IN_MESSAGES.contains(&spec.name.as_str()) {
        return Err(fail(format!(
            "{:?} is a protocol message and cannot be an event",
            spec.name
        )));
    }
    if !label(&spec.channel) {
        return Err(fail(format!("invalid channel name {:?}", spec.channel)));
    }
    let mut names: Vec<&str> = Vec::new();
    for field in &spec.fields {
        if !label(&field.name)
            || matches!(
                field.name.as_str(),
                "type" | "timestamp" | "channel" | "offset" | "epoch"
            )
        {
            return Err(fail(format!(
                "field name {:?} is reserved or not a valid name",
                field.name
            )));
        }
        if names.contains(&field.name.as_str()) {
            return Err(fail(format!("field {:?} is defined twice", field.name)));
        }
        if (field.min.is_some() || field.max.is_some())
            && !matches!(field.kind, FieldKind::Number | FieldKind::Count)
        {
            return Err(fail(format!(
                "field {:?}: min and max apply to numbers only",
                field.name
            )));
        }
        names.push(&field.name);
    }
    let numeric = |name: &str| {
        spec.fields
            .iter()
            .any(|f| f.name == name && matches!(f.kind, FieldKind::Number | FieldKind::Count))
    };
    for rule in &spec.rules {
        let (inputs, computed): (Vec<&String>, Option<&String>) = match rule {
            Rule::AtMost { field, limit } => (vec![field, limit], None),
            Rule::Percent { field, part, whole } => (vec![part, whole], Some(field)),
        };
        if let Some(bad) = inputs.iter().find(|name| !numeric(name)) {
            return Err(fail(format!(
                "rule refers to {bad:?}, which is not a numeric field"
            )));
        }
        if let Some(field) = computed
            && (names.contains(&field.as_str()) || !label(field))
        {
            return Err(fail(format!(
                "computed field {field:?} must be a new, valid name"
            )));
        }
    }
    Ok(())
}

/// Message types of the protocol itself, which no event may take.
const BUILT_IN_MESSAGES: &[&str] = &[
    "ping",
    "pong",
    "register",
    "registered",
    "subscribe",
    "subscribed",
    "unsubscribe",
    "unsubscribed",
    "published",
    "error",
    "connection_established",
    "messages_dropped",
];

impl Catalogue {
    /// The seeds' 22 events on seven channels.
    pub fn builtin() -> Self {
        use FieldKind::{Any, Count, Id, Number, String as Text, StringOrObject};
        let field = |name: &str, kind: FieldKind, required: bool| FieldSpec {
            name: name.to_string(),
            kind,
            required,
            min: None,
            max: None,
        };
        let req = |name: &str, kind| field(name, kind, true);
        let opt = |name: &str, kind| field(name, kind, false);
        let event = |name: &str, channel: &str, fields: Vec<FieldSpec>| EventSpec {
            name: name.to_string(),
            channel: channel.to_string(),
            fields,
            rules: Vec::new(),
        };
        let progress = FieldSpec {
            min: Some(0.0),
            max: Some(100.0),
            ..req("progress", Number)
        };
        let mut session_updated = event(
            "session_updated",
            "sessions",
            vec![
                req("session_id", Id),
                req("total_photos", Count),
                req("processed_photos", Count),
                req("status", Text),
            ],
        );
        session_updated.rules = vec![
            Rule::AtMost {
                field: "processed_photos".to_string(),
                limit: "total_photos".to_string(),
            },
            Rule::Percent {
                field: "progress_percent".to_string(),
                part: "processed_photos".to_string(),
                whole: "total_photos".to_string(),
            },
        ];
        let events = vec![
            event(
                "job_created",
                "jobs",
                vec![req("job_id", Id), req("photo_id", Id), opt("priority", Id)],
            ),
            event(
                "job_started",
                "jobs",
                vec![req("job_id", Id), req("photo_id", Id)],
            ),
            event(
                "job_progress",
                "jobs",
                vec![
                    req("job_id", Id),
                    req("stage", Text),
                    progress,
                    opt("message", Text),
                ],
            ),
            event(
                "job_completed",
                "jobs",
                vec![req("job_id", Id), opt("photo_id", Id), opt("result", Any)],
            ),
            event(
                "job_failed",
                "jobs",
                vec![
                    req("job_id", Id),
                    opt("photo_id", Id),
                    req("error_message", Text),
                    opt("error_details", Any),
                ],
            ),
            event(
                "photo_imported",
                "photos",
                vec![
                    req("photo_id", Id),
                    req("session_id", Id),
                    req("file_name", Text),
                    req("file_path", Text),
                ],
            ),
            event(
                "photo_analyzed",
                "photos",
                vec![
                    req("photo_id", Id),
                    req("ai_score", Number),
                    opt("analysis_results", Any),
                ],
            ),
            event(
                "photo_selected",
                "photos",
                vec![
                    req("photo_id", Id),
                    opt("context_tag", Text),
                    opt("selected_preset", Text),
                ],
            ),
            event(
                "photo_approved",
                "photos",
                vec![req("photo_id", Id), opt("session_id", Id)],
            ),
            event(
                "photo_rejected",
                "photos",
                vec![
                    req("photo_id", Id),
                    opt("session_id", Id),
                    opt("reason", Text),
                ],
            ),
            event(
                "session_created",
                "sessions",
                vec![
                    req("session_id", Id),
                    req("session_name", Text),
                    opt("import_folder", Text),
                ],
            ),
            session_updated,
            event(
                "session_completed",
                "sessions",
                vec![
                    req("session_id", Id),
                    opt("session_name", Text),
                    req("total_photos", Count),
                    req("approved_photos", Count),
                ],
            ),
            event(
                "system_status",
                "system",
                vec![req("status", StringOrObject), opt("details", Any)],
            ),
            event(
                "resource_warning",
                "system",
                vec![
                    req("resource_type", Text),
                    req("current_value", Number),
                    req("threshold", Number),
                    opt("message", Text),
                ],
            ),
            event(
                "error_occurred",
                "system",
                vec![
                    req("error_type", Text),
                    req("error_message", Text),
                    opt("error_details", Any),
                    opt("job_id", Id),
                    opt("photo_id", Id),
                ],
            ),
            event(
                "queue_status",
                "queue",
                vec![
                    req("pending_count", Count),
                    req("processing_count", Count),
                    req("completed_count", Count),
                    req("failed_count", Count),
                ],
            ),
            event(
                "priority_changed",
                "queue",
                vec![
                    req("job_id", Id),
                    req("old_priority", Id),
                    req("new_priority", Id),
                    opt("reason", Text),
                ],
            ),
            event(
                "approval_queue_updated",
                "approval",
                vec![req("queue_count", Count), opt("session_id", Id)],
            ),
            event(
                "export_started",
                "export",
                vec![
                    req("photo_id", Id),
                    req("preset_name", Text),
                    opt("destination", Text),
                ],
            ),
            event(
                "export_completed",
                "export",
                vec![
                    req("photo_id", Id),
                    req("preset_name", Text),
                    req("output_path", Text),
                    opt("file_size", Count),
                ],
            ),
            event(
                "export_failed",
                "export",
                vec![
                    req("photo_id", Id),
                    req("preset_name", Text),
                    req("error_message", Text),
                ],
            ),
        ];
        Catalogue::new(events).expect("the built-in catalogue is valid")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn encode(message: Value) -> Result<Option<String>, FieldError> {
        let catalogue = Catalogue::builtin();
        let map = message.as_object().unwrap().clone();
        catalogue
            .encode(&map, "2026-11-25T15:08:21.123Z")
            .map(|e| e.map(|e| e.json))
    }

    #[test]
    fn a_catalogue_file_adds_and_replaces_event_types_and_refuses_unknown_keys() {
        let file = r#"{"events": [
            {"type": "print_queued", "channel": "printing",
             "fields": [{"name": "photo_id", "type": "id", "required": true}]},
            {"type": "job_progress", "channel": "jobs", "fields": []}
        ]}"#;
        let catalogue = Catalogue::builtin().extended_by_file(file).unwrap();
        assert_eq!(catalogue.events().len(), 23);
        assert_eq!(catalogue.get("print_queued").unwrap().channel, "printing");
        assert!(catalogue.get("job_progress").unwrap().fields.is_empty());
        let unknown = Catalogue::builtin()
            .extended_by_file(r#"{"events": [], "version": 2}"#)
            .unwrap_err();
        assert!(unknown.contains("unknown field `version`"), "{unknown}");
        assert!(Catalogue::builtin().extended_by_file("{").is_err());
    }

    #[test]
    fn the_builtin_catalogue_has_22_events_on_7_channels() {
        let catalogue = Catalogue::builtin();
        assert_eq!(catalogue.events().len(), 22);
        let channels: std::collections::BTreeSet<&str> = catalogue
            .events()
            .iter()
            .map(|e| e.channel.as_str())
            .collect();
        assert_eq!(
            channels.into_iter().collect::<Vec<_>>(),
            [
                "approval", "export", "jobs", "photos", "queue", "sessions", "system"
            ]
        );
    }

    #[test]
    fn encodes_and_stamps_job_progress_with_fields_in_catalogue_order() {
        let json = encode(json!({
            "message": "Analyzing image quality", "progress": 45, "stage": "analyzing",
            "job_id": "abc123", "type": "job_progress"
        }))
        .unwrap()
        .unwrap();
        assert_eq!(
            json,
            r#"{"type":"job_progress","timestamp":"2026-11-25T15:08:21.123Z","job_id":"abc123","stage":"analyzing","progress":45.0,"message":"Analyzing image quality"}"#
        );
    }

    #[test]
    fn session_updated_gets_progress_percent_and_processed_may_not_exceed_total() {
        let json = encode(json!({"type": "session_updated", "session_id": 12,
            "total_photos": 3, "processed_photos": 1, "status": "processing"}))
        .unwrap()
        .unwrap();
        let value: Value = serde_json::from_str(&json).unwrap();
        assert_eq!(value["progress_percent"], json!(33.33));
        let empty = encode(json!({"type": "session_updated", "session_id": 1,
            "total_photos": 0, "processed_photos": 0, "status": "new"}))
        .unwrap()
        .unwrap();
        assert!(empty.ends_with(r#""progress_percent":0.0}"#), "{empty}");
        let over = encode(json!({"type": "session_updated", "session_id": 1,
            "total_photos": 1, "processed_photos": 2, "status": "s"}))
        .unwrap_err();
        assert_eq!(over.field, "processed_photos");
        let computed = encode(json!({"type": "session_updated", "session_id": 1,
            "total_photos": 1, "processed_photos": 0, "status": "s", "progress_percent": 5}))
        .unwrap_err();
        assert!(
            computed.to_string().contains("progress_percent"),
            "{computed}"
        );
    }

    #[test]
    fn errors_name_the_field_and_say_what_is_expected() {
        let missing = encode(json!({"type": "job_progress", "stage": "x", "progress": 1}));
        assert_eq!(
            missing.unwrap_err().to_string(),
            "job_progress: missing field `job_id`"
        );
        let mistyped = encode(json!({"type": "job_progress", "job_id": "j", "stage": "x",
            "progress": "half"}))
        .unwrap_err();
        assert_eq!(mistyped.field, "progress");
        assert_eq!(
            mistyped.to_string(),
            r#"job_progress.progress: invalid type: string "half", expected a number"#
        );
        let id = encode(json!({"type": "job_created", "job_id": [1], "photo_id": 2})).unwrap_err();
        assert_eq!(
            id.to_string(),
            "job_created.job_id: invalid type: a list, expected a number or a string"
        );
        let unknown = encode(json!({"type": "job_started", "job_id": 1, "photo_id": 2, "phot": 3}));
        assert!(unknown.unwrap_err().to_string().contains("`phot`"));
        let range = encode(json!({"type": "job_progress", "job_id": 1, "stage": "s",
            "progress": 101}))
        .unwrap_err();
        assert_eq!(range.field, "progress");
        assert!(range.problem.contains("between 0 and 100"));
        let negative = encode(json!({"type": "queue_status", "pending_count": -1,
            "processing_count": 0, "completed_count": 0, "failed_count": 0}))
        .unwrap_err();
        assert_eq!(negative.field, "pending_count");
    }

    #[test]
    fn system_status_takes_a_string_or_an_object_and_nothing_else() {
        assert!(encode(json!({"type": "system_status", "status": "healthy"})).is_ok());
        assert!(encode(json!({"type": "system_status", "status": {"cpu": 4.5}})).is_ok());
        for bad in [json!(null), json!(3), json!([1]), json!(true)] {
            let result = encode(json!({"type": "system_status", "status": bad}));
            assert!(result.is_err(), "{bad}");
        }
    }

    #[test]
    fn optional_fields_that_are_absent_or_null_are_left_out() {
        let json = encode(json!({"type": "job_created", "job_id": 1, "photo_id": 2,
            "priority": null}))
        .unwrap()
        .unwrap();
        assert!(!json.contains("priority"), "{json}");
    }

    #[test]
    fn non_catalogue_types_are_not_events_and_timestamps_are_replaced() {
        assert_eq!(encode(json!({"type": "ping"})), Ok(None));
        assert_eq!(encode(json!({"no_type": 1})), Ok(None));
        let json = encode(
            json!({"type": "queue_status", "timestamp": "1999-01-01T00:00:00Z",
            "pending_count": 1, "processing_count": 2, "completed_count": 3,
            "failed_count": 0}),
        )
        .unwrap()
        .unwrap();
        assert!(json.contains("2026-11-25T15:08:21.123Z") && !json.contains("1999"));
    }

    #[test]
    fn a_catalogue_round_trips_through_json_and_can_be_extended() {
        let builtin = Catalogue::builtin();
        let text = serde_json::to_string(&builtin).unwrap();
        let back: Catalogue = serde_json::from_str(&text).unwrap();
        assert_eq!(back, builtin);
        let extra: Vec<EventSpec> = serde_json::from_value(json!([
            {"type": "backup_done", "channel": "ops", "fields": [
                {"name": "bytes", "type": "count", "required": true}]},
            {"type": "job_started", "channel": "workers", "fields": [
                {"name": "job_id", "type": "id", "required": true}]}
        ]))
        .unwrap();
        let extended = builtin.extended(extra).unwrap();
        assert_eq!(extended.events().len(), 23);
        assert_eq!(extended.get("job_started").unwrap().channel, "workers");
        assert_eq!(extended.get("backup_done").unwrap().channel, "ops");
    }

    #[test]
    fn a_bad_catalogue_is_refused_with_the_reason() {
        let bad = |value: Value| {
            let events: Vec<EventSpec> = serde_json::from_value(value).unwrap();
            Catalogue::new(events).unwrap_err().to_string()
        };
        assert!(bad(json!([{"type": "ping", "channel": "x", "fields": []}])).contains("protocol"));
        assert!(
            bad(json!([{"type": "a", "channel": "bad name", "fields": []}])).contains("channel")
        );
        assert!(
            bad(json!([{"type": "a", "channel": "c", "fields": [
                {"name": "offset", "type": "string"}]}]))
            .contains("reserved")
        );
        assert!(
            bad(
                json!([{"type": "a", "channel": "c", "fields": [], "rules": [
                {"rule": "at_most", "field": "x", "limit": "y"}]}])
            )
            .contains("not a numeric field")
        );
        assert!(
            bad(json!([{"type": "a", "channel": "c", "fields": []},
                       {"type": "a", "channel": "c", "fields": []}]))
            .contains("twice")
        );
    }
}
