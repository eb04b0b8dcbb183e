//! The clients' event types, rendered from the catalogue's JSON Schema
//! ([`Catalogue::json_schema`]): TypeScript declarations, Python `TypedDict`s, and the
//! Markdown table of event fields in the Lua client's README.
//!
//! Every target reads the schema rather than the catalogue, so that what the schema says an
//! event carries is what each client's types say. `livebridge catalogue --format …` prints
//! them (for the built-in catalogue, or extended by `--catalogue FILE`), and
//! scripts/generate-client-types.sh writes the committed copies; a test compares those with
//! a fresh rendering. Output follows catalogue order and depends on nothing else, so it is
//! the same on every machine.

use crate::catalogue::Catalogue;
use crate::catalogue_schema::CHANNEL_KEYWORD;
use serde_json::Value;
use std::collections::BTreeSet;

/// What `livebridge catalogue` renders.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// The JSON Schema itself.
    Schema,
    /// TypeScript declarations (`clients/js/catalogue.d.ts`).
    TypeScript,
    /// Python `TypedDict`s (`clients/python/src/livebridge/catalogue_types.py`).
    Python,
    /// The Markdown table of event fields, to go between [`LUA_TABLE_BEGIN`] and
    /// [`LUA_TABLE_END`] (`clients/lua/README.md`).
    LuaTable,
}

/// The marker after which [`Target::LuaTable`] is written into a Markdown file.
pub const LUA_TABLE_BEGIN: &str = "<!-- catalogue-fields:begin -->";
/// The marker before which it ends.
pub const LUA_TABLE_END: &str = "<!-- catalogue-fields:end -->";

/// `target` rendered for `catalogue`.
pub fn render(catalogue: &Catalogue, target: Target) -> String {
    let schema = catalogue.json_schema();
    match target {
        Target::Schema => catalogue.json_schema_text(),
        Target::TypeScript => typescript(&read(&schema)),
        Target::Python => python(&read(&schema)),
        Target::LuaTable => lua_table(&read(&schema)),
    }
}

/// `document` with the text between [`LUA_TABLE_BEGIN`] and [`LUA_TABLE_END`] replaced by
/// `content` (the markers stay). An error when the markers are missing or out of order.
pub fn splice(document: &str, content: &str) -> Result<String, String> {
    let missing =
        || format!("needs the lines {LUA_TABLE_BEGIN} and {LUA_TABLE_END}, in that order");
    let begin = document.find(LUA_TABLE_BEGIN).ok_or_else(missing)? + LUA_TABLE_BEGIN.len();
    let end = document[begin..].find(LUA_TABLE_END).ok_or_else(missing)? + begin;
    Ok(format!(
        "{}\n{}{}",
        &document[..begin],
        content,
        &document[end..]
    ))
}

/// One event definition of the schema, as the renderers need it.
struct EventDef<'s> {
    name: &'s str,
    channel: &'s str,
    description: &'s str,
    properties: Vec<Property<'s>>,
}

struct Property<'s> {
    name: &'s str,
    required: bool,
    shape: Shape<'s>,
    description: Option<&'s str>,
    /// Stamped or computed by the hub (`readOnly`).
    stamped: bool,
    minimum: Option<f64>,
    maximum: Option<f64>,
}

/// What a property's schema allows.
enum Shape<'s> {
    /// Exactly this string (`type`).
    Const(&'s str),
    /// Values of these JSON types.
    Types(Vec<&'s str>),
    /// Any value but null.
    Any,
}

/// The definitions of a schema built by [`Catalogue::json_schema`], in catalogue order.
fn read(schema: &Value) -> Vec<EventDef<'_>> {
    fn text(value: &Value) -> &str {
        value.as_str().unwrap_or_default()
    }
    let definitions = schema["$defs"]
        .as_object()
        .expect("json_schema writes $defs");
    definitions
        .values()
        .map(|definition| {
            let required: Vec<&str> = definition["required"]
                .as_array()
                .map(|names| names.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            let properties = definition["properties"]
                .as_object()
                .expect("json_schema writes properties")
                .iter()
                .map(|(name, property)| Property {
                    name,
                    required: required.contains(&name.as_str()),
                    shape: match (&property["const"], &property["type"]) {
                        (Value::String(value), _) => Shape::Const(value),
                        (_, Value::String(one)) => Shape::Types(vec![one]),
                        (_, Value::Array(many)) => {
                            Shape::Types(many.iter().filter_map(Value::as_str).collect())
                        }
                        _ => Shape::Any,
                    },
                    description: property["description"].as_str(),
                    stamped: property["readOnly"] == true,
                    minimum: property["minimum"].as_f64(),
                    maximum: property["maximum"].as_f64(),
                })
                .collect();
            EventDef {
                name: text(&definition["properties"]["type"]["const"]),
                channel: text(&definition[CHANNEL_KEYWORD]),
                description: text(&definition["description"]),
                properties,
            }
        })
        .collect()
}

/// Names of the union and the map, which no event's type name may take.
const UNION: &str = "CatalogueEvent";
const MAP: &str = "CatalogueEvents";

/// A type name per event: `job_progress` → `JobProgressEvent`, unique (a clash, possible
/// between `a-b` and `a_b`, takes a number) and never the union's or the map's name.
fn type_names(events: &[EventDef<'_>]) -> Vec<String> {
    let mut taken: BTreeSet<String> = [UNION, MAP].map(String::from).into();
    events
        .iter()
        .map(|event| {
            let mut base: String = event
                .name
                .split(|c: char| !c.is_ascii_alphanumeric())
                .map(|part| {
                    let mut chars = part.chars();
                    chars.next().map_or(String::new(), |first| {
                        first.to_ascii_uppercase().to_string() + chars.as_str()
                    })
                })
                .collect();
            if !base.starts_with(|c: char| c.is_ascii_alphabetic()) {
                // Identifiers cannot start with a digit.
                base.insert_str(0, "Event");
            }
            base.push_str("Event");
            let mut name = base.clone();
            let mut number = 2;
            while !taken.insert(name.clone()) {
                name = format!("{base}{number}");
                number += 1;
            }
            name
        })
        .collect()
}

fn is_identifier(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn typescript(events: &[EventDef<'_>]) -> String {
    let names = type_names(events);
    let mut out = String::from(
        "// The event catalogue's events as a subscriber receives them.\n\
         // Generated by `livebridge catalogue --format typescript` from the catalogue's JSON\n\
         // Schema: do not edit (docs/protocol.md, \"Event catalogue\").\n",
    );
    for (event, type_name) in events.iter().zip(&names) {
        out.push_str(&format!(
            "\n/** {} */\nexport interface {type_name} {{\n",
            event.description
        ));
        for property in &event.properties {
            if let Some(description) = property.description {
                out.push_str(&format!("  /** {description} */\n"));
            }
            let key = if is_identifier(property.name) {
                property.name.to_string()
            } else {
                format!("'{}'", property.name)
            };
            let optional = if property.required { "" } else { "?" };
            out.push_str(&format!(
                "  {key}{optional}: {};\n",
                typescript_type(&property.shape)
            ));
        }
        out.push_str("}\n");
    }
    out.push_str(&format!(
        "\n/** Any event of the catalogue. */\nexport type {UNION} =\n"
    ));
    for type_name in &names {
        out.push_str(&format!("  | {type_name}\n"));
    }
    out.insert(out.len() - 1, ';');
    out.push_str(&format!(
        "\n/** Each event's type by its `type`. */\nexport interface {MAP} {{\n"
    ));
    for (event, type_name) in events.iter().zip(&names) {
        out.push_str(&format!("  '{}': {type_name};\n", event.name));
    }
    out.push_str("}\n");
    out
}

fn typescript_type(shape: &Shape<'_>) -> String {
    match shape {
        Shape::Const(value) => format!("'{value}'"),
        // `unknown` rather than a JSON type: the application narrows it.
        Shape::Any => "unknown".to_string(),
        Shape::Types(types) => {
            let mut names: Vec<&str> = Vec::new();
            for json_type in types {
                let name = match *json_type {
                    "integer" | "number" => "number",
                    "string" => "string",
                    "boolean" => "boolean",
                    "object" => "{ [key: string]: unknown }",
                    "array" => "unknown[]",
                    _ => "null",
                };
                if !names.contains(&name) {
                    names.push(name);
                }
            }
            names.join(" | ")
        }
    }
}

/// Python's keywords, which cannot be attribute names of a class-syntax `TypedDict`.
const PYTHON_KEYWORDS: &[&str] = &[
    "False", "None", "True", "and", "as", "assert", "async", "await", "break", "class", "continue",
    "def", "del", "elif", "else", "except", "finally", "for", "from", "global", "if", "import",
    "in", "is", "lambda", "nonlocal", "not", "or", "pass", "raise", "return", "try", "while",
    "with", "yield",
];

fn python(events: &[EventDef<'_>]) -> String {
    let names = type_names(events);
    // `from __future__ import annotations` keeps every annotation a string at run time, so
    // the module imports on Python 3.9 and 3.10 (the package's oldest) without
    // typing_extensions, which only a type checker needs there. The price: run-time
    // introspection (`__required_keys__`) does not see `Required`; these types are for
    // type checkers.
    let mut out = String::from(
        "\"\"\"The event catalogue's events as a subscriber receives them, as `TypedDict`s.\n\
         \n\
         Generated by `livebridge catalogue --format python` from the catalogue's JSON Schema:\n\
         do not edit (docs/protocol.md, \"Event catalogue\"). Narrow a `CatalogueEvent` on its\n\
         `\"type\"` to get one event's fields.\n\
         \"\"\"\n\
         \n\
         from __future__ import annotations\n\
         \n\
         import sys\n\
         from typing import TYPE_CHECKING, Any, Dict, List, Literal, TypedDict, Union\n\
         \n\
         if sys.version_info >= (3, 11):\n\
         \x20   from typing import Required\n\
         elif TYPE_CHECKING:\n\
         \x20   from typing_extensions import Required\n",
    );
    out.push_str("\n__all__ = [\n");
    for type_name in names.iter().map(String::as_str).chain([UNION]) {
        out.push_str(&format!("    \"{type_name}\",\n"));
    }
    out.push_str("]\n");
    for (event, type_name) in events.iter().zip(&names) {
        let class_syntax = event
            .properties
            .iter()
            .all(|p| is_identifier(p.name) && !PYTHON_KEYWORDS.contains(&p.name));
        let annotation = |property: &Property<'_>| {
            let python_type = python_type(&property.shape);
            if property.required {
                format!("Required[{python_type}]")
            } else {
                python_type
            }
        };
        out.push_str("\n\n");
        if class_syntax {
            out.push_str(&format!(
                "class {type_name}(TypedDict, total=False):\n    \"\"\"{}\"\"\"\n",
                event.description
            ));
            for property in &event.properties {
                out.push('\n');
                if let Some(description) = property.description {
                    out.push_str(&format!("    # {description}\n"));
                }
                out.push_str(&format!(
                    "    {}: {}\n",
                    property.name,
                    annotation(property)
                ));
            }
        } else {
            // A field name that is not an identifier needs the functional syntax; its
            // types are strings so that nothing is evaluated at run time (see above).
            out.push_str(&format!(
                "# {}\n{type_name} = TypedDict(\n    \"{type_name}\",\n    {{\n",
                event.description
            ));
            for property in &event.properties {
                if let Some(description) = property.description {
                    out.push_str(&format!("        # {description}\n"));
                }
                out.push_str(&format!(
                    "        \"{}\": \"{}\",\n",
                    property.name,
                    annotation(property).replace('"', "'")
                ));
            }
            out.push_str("    },\n    total=False,\n)\n");
        }
    }
    out.push_str(&format!("\n\n{UNION} = Union[\n"));
    for type_name in &names {
        out.push_str(&format!("    {type_name},\n"));
    }
    out.push_str("]\n\"\"\"Any event of the catalogue.\"\"\"\n");
    out
}

fn python_type(shape: &Shape<'_>) -> String {
    match shape {
        Shape::Const(value) => format!("Literal[\"{value}\"]"),
        Shape::Any => "Any".to_string(),
        Shape::Types(types) => {
            let names: Vec<&str> = types
                .iter()
                .map(|json_type| match *json_type {
                    "integer" => "int",
                    // Delivered with a decimal point: json.loads gives a float.
                    "number" => "float",
                    "string" => "str",
                    "boolean" => "bool",
                    "object" => "Dict[str, Any]",
                    "array" => "List[Any]",
                    _ => "None",
                })
                .collect();
            names.join(" | ")
        }
    }
}

/// Properties every event has, described once above the table rather than in each row.
const COMMON: &[&str] = &["type", "timestamp", "channel", "offset", "epoch"];

fn lua_table(events: &[EventDef<'_>]) -> String {
    let mut out = String::from(
        "<!-- Generated by `livebridge catalogue --format lua-table`: do not edit between the \
         markers. -->\n\
         Every event also carries `type` and `timestamp`; one delivered on a channel carries \
         `channel`, `offset` and `epoch`. `?` marks optional fields (absent from the table \
         when not given).\n\
         \n\
         | type | channel | fields |\n\
         | --- | --- | --- |\n",
    );
    for event in events {
        let fields: Vec<String> = event
            .properties
            .iter()
            .filter(|p| !COMMON.contains(&p.name))
            .map(|p| {
                let optional = if p.required { "" } else { "?" };
                format!("`{}`{optional} ({})", p.name, lua_kind(p))
            })
            .collect();
        out.push_str(&format!(
            "| `{}` | {} | {} |\n",
            event.name,
            event.channel,
            fields.join(", ")
        ));
    }
    out
}

/// A property's kind in Lua's words (a JSON object is a table there).
fn lua_kind(property: &Property<'_>) -> String {
    let mut kind = match &property.shape {
        Shape::Const(value) => format!("\"{value}\""),
        Shape::Any => "any value".to_string(),
        Shape::Types(types) => types
            .iter()
            .map(|json_type| match *json_type {
                "object" => "table",
                "array" => "list",
                other => other,
            })
            .collect::<Vec<_>>()
            .join(" or "),
    };
    match (property.minimum, property.maximum) {
        (Some(min), Some(max)) => kind.push_str(&format!(" {min}–{max}")),
        (Some(min), None) => kind.push_str(&format!(" ≥ {min}")),
        (None, Some(max)) => kind.push_str(&format!(" ≤ {max}")),
        (None, None) => {}
    }
    if property.stamped {
        kind.push_str(", added by the hub");
    }
    kind
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_file(file: &str) -> Catalogue {
        Catalogue::builtin().extended_by_file(file).unwrap()
    }

    #[test]
    fn typescript_has_an_interface_per_event_a_union_and_a_map() {
        let ts = render(&Catalogue::builtin(), Target::TypeScript);
        assert!(
            ts.contains("export interface JobProgressEvent {\n  type: 'job_progress';\n"),
            "{ts}"
        );
        assert!(ts.contains("  job_id: number | string;\n  stage: string;\n"));
        assert!(ts.contains("  progress: number;\n  message?: string;\n"));
        assert!(ts.contains("  offset?: number;\n"));
        assert!(ts.contains("  status: string | { [key: string]: unknown };\n"));
        assert!(ts.contains("  details?: unknown;\n"));
        assert!(ts.contains("export type CatalogueEvent =\n  | JobCreatedEvent\n"));
        assert!(ts.contains("  | ExportFailedEvent;\n"));
        assert!(ts.contains("  'job_progress': JobProgressEvent;\n"));
        assert_eq!(ts.matches("export interface").count(), 23);
    }

    #[test]
    fn python_has_a_typed_dict_per_event_with_required_fields_and_a_union() {
        let py = render(&Catalogue::builtin(), Target::Python);
        assert!(py.contains("class JobProgressEvent(TypedDict, total=False):\n"));
        assert!(py.contains("    type: Required[Literal[\"job_progress\"]]\n"));
        assert!(py.contains("    job_id: Required[int | str]\n"));
        assert!(py.contains("    progress: Required[float]\n"));
        assert!(py.contains("    message: str\n"));
        assert!(py.contains("    pending_count: Required[int]\n"));
        assert!(py.contains("    status: Required[str | Dict[str, Any]]\n"));
        assert!(py.contains("CatalogueEvent = Union[\n    JobCreatedEvent,\n"));
        assert_eq!(py.matches("(TypedDict, total=False)").count(), 22);
    }

    #[test]
    fn names_that_are_not_identifiers_are_quoted_or_use_the_functional_syntax() {
        let catalogue = with_file(
            r#"{"events": [
                {"type": "print-queued", "channel": "printing", "fields": [
                    {"name": "copy-count", "type": "count", "required": true},
                    {"name": "from", "type": "string"}]},
                {"type": "print_queued", "channel": "printing", "fields": []},
                {"type": "catalogue", "channel": "c", "fields": []},
                {"type": "3d", "channel": "c", "fields": []}]}"#,
        );
        let ts = render(&catalogue, Target::TypeScript);
        assert!(ts.contains("export interface PrintQueuedEvent {"));
        assert!(ts.contains("  'copy-count': number;\n"));
        assert!(ts.contains("  from?: string;\n"));
        assert!(ts.contains("export interface PrintQueuedEvent2 {"));
        assert!(ts.contains("export interface CatalogueEvent2 {"));
        assert!(ts.contains("export interface Event3dEvent {"));
        assert!(ts.contains("  'print-queued': PrintQueuedEvent;\n"));
        let py = render(&catalogue, Target::Python);
        assert!(py.contains("PrintQueuedEvent = TypedDict(\n    \"PrintQueuedEvent\",\n"));
        assert!(py.contains("        \"copy-count\": \"Required[int]\",\n"));
        assert!(py.contains("        \"from\": \"str\",\n"));
        assert!(py.contains("class PrintQueuedEvent2(TypedDict, total=False):"));
    }

    #[test]
    fn the_lua_table_lists_fields_with_kinds_and_optional_marks() {
        let table = render(&Catalogue::builtin(), Target::LuaTable);
        assert!(
            table.contains(
                "| `job_progress` | jobs | `job_id` (integer or string), `stage` (string), \
             `progress` (number 0–100), `message`? (string) |\n"
            ),
            "{table}"
        );
        assert!(table.contains("`progress_percent` (number, added by the hub)"));
        assert!(table.contains("`status` (string or table)"));
        assert!(table.contains("`details`? (any value)"));
        assert_eq!(table.matches("\n| `").count(), 22);
    }

    #[test]
    fn splice_replaces_only_what_lies_between_the_markers() {
        let document = format!("intro\n{LUA_TABLE_BEGIN}\nold\n{LUA_TABLE_END}\nrest\n");
        let spliced = splice(&document, "new\n").unwrap();
        assert_eq!(
            spliced,
            format!("intro\n{LUA_TABLE_BEGIN}\nnew\n{LUA_TABLE_END}\nrest\n")
        );
        assert_eq!(splice(&spliced, "new\n").unwrap(), spliced);
        assert!(
            splice("no markers", "x")
                .unwrap_err()
                .contains(LUA_TABLE_BEGIN)
        );
        let reversed = format!("{LUA_TABLE_END}\n{LUA_TABLE_BEGIN}\n");
        assert!(splice(&reversed, "x").is_err());
    }

    #[test]
    fn output_follows_catalogue_order() {
        let ts = render(&Catalogue::builtin(), Target::TypeScript);
        let created = ts.find("interface JobCreatedEvent").unwrap();
        let failed = ts.find("interface ExportFailedEvent").unwrap();
        assert!(created < failed);
        assert_eq!(ts, render(&Catalogue::builtin(), Target::TypeScript));
    }
}
