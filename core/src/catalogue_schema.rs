//! The event catalogue as a JSON Schema: one definition per event type, describing the event
//! exactly as a subscriber receives it — its fields as [`Catalogue::encode`] checks and writes
//! them, plus what the hub stamps on delivery (`timestamp` always; `channel`, `offset` and
//! `epoch` when it is delivered on a channel; fields computed by a `percent` rule).
//!
//! The schema is the one source of the client types (`client_types.rs` renders TypeScript,
//! Python and the Lua README's table from it), so the built-in catalogue and a user's
//! `--catalogue FILE` get the same generator. It is built with `serde_json` as data: the
//! catalogue is data too, so there is no Rust type per event for a derive (schemars) to read.
//!
//! JSON Schema draft 2020-12. Besides the standard keywords, each definition carries
//! `x-livebridge-channel`, the channel the event is published on (an annotation: validators
//! ignore unknown keywords).

use crate::catalogue::{Catalogue, EventSpec, FieldKind, FieldSpec, Rule};
use serde_json::{Map, Value, json};

/// The annotation naming an event's channel in its definition.
pub(crate) const CHANNEL_KEYWORD: &str = "x-livebridge-channel";

impl Catalogue {
    /// The JSON Schema of every event of this catalogue as delivered, in catalogue order:
    /// `$defs` holds one definition per event type (named by the type), and the schema itself
    /// is the `oneOf` of them. See docs/protocol.md, "Event catalogue".
    pub fn json_schema(&self) -> Value {
        let mut definitions = Map::new();
        let mut one_of = Vec::new();
        for spec in self.events() {
            one_of.push(json!({"$ref": format!("#/$defs/{}", spec.name)}));
            definitions.insert(spec.name.clone(), event_schema(spec));
        }
        json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "title": "livebridge catalogue events",
            "description": "Every event of the catalogue as a subscriber receives it.",
            "oneOf": one_of,
            "$defs": definitions,
        })
    }

    /// [`Catalogue::json_schema`] as the text of a file: pretty-printed, ending in a newline.
    pub fn json_schema_text(&self) -> String {
        let mut text =
            serde_json::to_string_pretty(&self.json_schema()).expect("a JSON value serialises");
        text.push('\n');
        text
    }
}

fn event_schema(spec: &EventSpec) -> Value {
    let mut properties = Map::new();
    // In the order of the delivered JSON: `type`, `timestamp`, the fields, computed fields,
    // then the channel position.
    properties.insert("type".into(), json!({"const": spec.name}));
    properties.insert(
        "timestamp".into(),
        json!({
            "type": "string",
            "format": "date-time",
            "readOnly": true,
            "description": "When the hub published the event: RFC 3339, UTC, with milliseconds.",
        }),
    );
    let mut required = vec![json!("type"), json!("timestamp")];
    for field in &spec.fields {
        properties.insert(field.name.clone(), field_schema(spec, field));
        if field.required {
            required.push(json!(field.name));
        }
    }
    for rule in &spec.rules {
        if let Rule::Percent { field, part, whole } = rule {
            let description = format!(
                "Added by the hub: `{part}` / `{whole}` × 100, rounded to two decimals \
                 (0 when `{whole}` is 0)."
            );
            properties.insert(
                field.clone(),
                json!({"type": "number", "readOnly": true, "description": description}),
            );
            // Written whatever the publisher sent (absent parts count as 0).
            required.push(json!(field));
        }
    }
    // Not required: a catalogue event sent to one client (`/ws/send/<id>`) or to a client
    // type is outside channels and carries none of the three (publishing.rs, encode_message).
    properties.insert(
        "channel".into(),
        json!({
            "type": "string",
            "readOnly": true,
            "description": format!(
                "The channel the event was delivered on (`{}`, or the channel a broadcast \
                 named). Absent when it was sent to one client or to a client type.",
                spec.channel
            ),
        }),
    );
    properties.insert(
        "offset".into(),
        json!({
            "type": "integer",
            "minimum": 1,
            "readOnly": true,
            "description": "The event's position on its channel: 1, 2, 3…, without holes \
                            within an epoch. Present with `channel`.",
        }),
    );
    properties.insert(
        "epoch".into(),
        json!({
            "type": "string",
            "readOnly": true,
            "description": "Names the channel's sequence of offsets; it changes when the \
                            channel's history was lost. Present with `channel`.",
        }),
    );
    json!({
        "title": spec.name,
        "description": format!("`{}`, published on channel `{}`.", spec.name, spec.channel),
        CHANNEL_KEYWORD: spec.channel,
        "type": "object",
        "properties": properties,
        "required": required,
        // The hub refuses unknown fields when it encodes an event, so a delivered event
        // has no others.
        "additionalProperties": false,
    })
}

/// A field's schema, from what `FieldKind::accepts` takes (and how `encode` writes it).
fn field_schema(spec: &EventSpec, field: &FieldSpec) -> Value {
    let mut schema = match field.kind {
        // `accepts` takes an i64 or a string.
        FieldKind::Id => json!({"type": ["integer", "string"]}),
        FieldKind::String => json!({"type": "string"}),
        // Any finite number; delivered with a decimal point.
        FieldKind::Number => json!({"type": "number"}),
        // A u64.
        FieldKind::Count => json!({"type": "integer", "minimum": 0}),
        FieldKind::StringOrObject => json!({"type": ["string", "object"]}),
        // `null` counts as absent, so a delivered value is never null.
        FieldKind::Any => json!({"not": {"type": "null"}}),
    };
    let object = schema.as_object_mut().expect("built as an object above");
    let mut notes = Vec::new();
    if let Some(min) = field.min {
        let floor = if field.kind == FieldKind::Count {
            min.max(0.0)
        } else {
            min
        };
        object.insert("minimum".into(), json!(floor));
    }
    if let Some(max) = field.max {
        object.insert("maximum".into(), json!(max));
    }
    match (field.min, field.max) {
        (Some(min), Some(max)) => notes.push(format!("From {min} to {max}.")),
        (Some(min), None) => notes.push(format!("At least {min}.")),
        (None, Some(max)) => notes.push(format!("At most {max}.")),
        (None, None) => {}
    }
    for rule in &spec.rules {
        if let Rule::AtMost { field: name, limit } = rule
            && *name == field.name
        {
            notes.push(format!("At most `{limit}`."));
        }
    }
    if !notes.is_empty() {
        object.insert("description".into(), json!(notes.join(" ")));
    }
    schema
}

#[cfg(test)]
mod tests {
    use super::*;

    fn definition<'s>(schema: &'s Value, name: &str) -> &'s Value {
        &schema["$defs"][name]
    }

    #[test]
    fn every_builtin_event_has_a_definition_in_catalogue_order() {
        let catalogue = Catalogue::builtin();
        let schema = catalogue.json_schema();
        let names: Vec<&str> = schema["$defs"]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        let expected: Vec<&str> = catalogue.events().iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, expected);
        assert_eq!(schema["oneOf"].as_array().unwrap().len(), 22);
        assert_eq!(schema["oneOf"][2]["$ref"], "#/$defs/job_progress");
    }

    #[test]
    fn job_progress_has_its_fields_the_stamped_ones_and_what_is_required() {
        let schema = Catalogue::builtin().json_schema();
        let job = definition(&schema, "job_progress");
        assert_eq!(job[CHANNEL_KEYWORD], "jobs");
        assert_eq!(job["properties"]["type"], json!({"const": "job_progress"}));
        assert_eq!(
            job["properties"]["job_id"]["type"],
            json!(["integer", "string"])
        );
        assert_eq!(job["properties"]["stage"]["type"], "string");
        let progress = &job["properties"]["progress"];
        assert_eq!(progress["type"], "number");
        assert_eq!(
            (progress["minimum"].as_f64(), progress["maximum"].as_f64()),
            (Some(0.0), Some(100.0))
        );
        assert_eq!(job["properties"]["offset"]["type"], "integer");
        assert_eq!(job["properties"]["epoch"]["type"], "string");
        assert_eq!(
            job["required"],
            json!(["type", "timestamp", "job_id", "stage", "progress"])
        );
        let keys: Vec<&String> = job["properties"].as_object().unwrap().keys().collect();
        assert_eq!(
            keys,
            [
                "type",
                "timestamp",
                "job_id",
                "stage",
                "progress",
                "message",
                "channel",
                "offset",
                "epoch"
            ]
        );
        assert_eq!(job["additionalProperties"], false);
    }

    #[test]
    fn kinds_map_to_the_json_types_encode_accepts() {
        let schema = Catalogue::builtin().json_schema();
        let queue = definition(&schema, "queue_status");
        assert_eq!(
            queue["properties"]["pending_count"],
            json!({"type": "integer", "minimum": 0})
        );
        let status = definition(&schema, "system_status");
        assert_eq!(
            status["properties"]["status"]["type"],
            json!(["string", "object"])
        );
        assert_eq!(
            status["properties"]["details"],
            json!({"not": {"type": "null"}})
        );
        assert_eq!(status["required"], json!(["type", "timestamp", "status"]));
    }

    #[test]
    fn a_percent_rule_adds_a_required_computed_field_and_at_most_is_described() {
        let schema = Catalogue::builtin().json_schema();
        let session = definition(&schema, "session_updated");
        let percent = &session["properties"]["progress_percent"];
        assert_eq!(percent["type"], "number");
        assert_eq!(percent["readOnly"], true);
        assert!(
            session["required"]
                .as_array()
                .unwrap()
                .contains(&json!("progress_percent"))
        );
        assert_eq!(
            session["properties"]["processed_photos"]["description"],
            "At most `total_photos`."
        );
    }

    #[test]
    fn a_catalogue_file_s_events_are_in_the_schema_too() {
        let catalogue = Catalogue::builtin()
            .extended_by_file(
                r#"{"events": [{"type": "print_queued", "channel": "printing", "fields": [
                    {"name": "copies", "type": "count", "required": true, "min": 1, "max": 9}]}]}"#,
            )
            .unwrap();
        let schema = catalogue.json_schema();
        let print = definition(&schema, "print_queued");
        assert_eq!(print[CHANNEL_KEYWORD], "printing");
        assert_eq!(print["properties"]["copies"]["minimum"], 1.0);
        assert_eq!(print["properties"]["copies"]["maximum"], 9.0);
        assert_eq!(print["properties"]["copies"]["description"], "From 1 to 9.");
        assert_eq!(schema["oneOf"][22]["$ref"], "#/$defs/print_queued");
        assert!(catalogue.json_schema_text().ends_with("}\n"));
    }

    /// A value of `kind`, as a publisher could send it.
    fn sample(kind: FieldKind) -> Value {
        match kind {
            FieldKind::Id => json!(7),
            FieldKind::String => json!("text"),
            FieldKind::Number => json!(5),
            FieldKind::Count => json!(3),
            FieldKind::StringOrObject => json!({"cpu": 1.5}),
            FieldKind::Any => json!([1, "x"]),
        }
    }

    fn json_type(value: &Value) -> &'static str {
        match value {
            Value::Null => "null",
            Value::Bool(_) => "boolean",
            Value::Number(n) if n.is_f64() => "number",
            Value::Number(_) => "integer",
            Value::String(_) => "string",
            Value::Array(_) => "array",
            Value::Object(_) => "object",
        }
    }

    #[test]
    fn what_encode_delivers_matches_each_definition() {
        // Every builtin event, with all its fields and with the required ones only, encoded
        // as the hub does: the delivered keys are the definition's (less the channel
        // position, which publishing adds), the required ones are there, and each value is
        // of a type its property allows.
        let catalogue = Catalogue::builtin();
        let schema = catalogue.json_schema();
        for spec in catalogue.events() {
            let definition = definition(&schema, &spec.name);
            let properties = definition["properties"].as_object().unwrap();
            for all in [true, false] {
                let mut message = Map::new();
                message.insert("type".into(), json!(spec.name));
                for field in spec.fields.iter().filter(|f| all || f.required) {
                    message.insert(field.name.clone(), sample(field.kind));
                }
                let encoded = catalogue.encode(&message, "2026-01-01T00:00:00.000Z");
                let delivered: Map<String, Value> =
                    serde_json::from_str(&encoded.unwrap().unwrap().json).unwrap();
                for name in definition["required"].as_array().unwrap() {
                    assert!(
                        delivered.contains_key(name.as_str().unwrap()),
                        "{}: {name}",
                        spec.name
                    );
                }
                for (key, value) in &delivered {
                    let property = properties
                        .get(key)
                        .unwrap_or_else(|| panic!("{}: {key} not in the schema", spec.name));
                    let allowed = match &property["type"] {
                        Value::String(one) => vec![one.as_str()],
                        Value::Array(many) => many.iter().filter_map(Value::as_str).collect(),
                        _ if property.get("const").is_some() => {
                            assert_eq!(&property["const"], value);
                            continue;
                        }
                        _ => {
                            assert!(!value.is_null(), "{}: {key}", spec.name);
                            continue;
                        }
                    };
                    let actual = json_type(value);
                    let fits = allowed.contains(&actual)
                        || (actual == "integer" && allowed.contains(&"number"));
                    assert!(
                        fits,
                        "{}.{key}: {actual} is not one of {allowed:?}",
                        spec.name
                    );
                }
            }
        }
    }
}
