//! The HTTP API: which method and path means which [`Command`], and how request bodies and
//! query strings are decoded. Pure functions; the engine calls them for [`crate::Input::Http`]
//! so every runtime gets the same routes, status codes and error texts.

use crate::assets::Asset;
use crate::config::Config;
use crate::ids::ClientId;
use crate::input::{Command, HttpRequest, Initiator, RequestBody};
use crate::output::Reply;
use serde_json::{Map, Value};
use std::time::Duration;

/// The outcome of routing one request.
#[derive(Debug)]
pub(crate) struct Routed {
    /// The route pattern, used as the `route` label of the request counters.
    pub(crate) route: &'static str,
    /// Whether the route is reserved to operators when an admin token is configured. Decided
    /// by the route, not by the decoded command, so a request that fails to decode is refused
    /// for its missing token before any of its content is looked at.
    pub(crate) admin: bool,
    /// The command, or the error reply when the request is not acceptable.
    pub(crate) command: Result<Command, Reply>,
}

/// The path WebSocket clients upgrade on.
pub const WEBSOCKET_PATH: &str = "/ws";

type Handler = fn(&HttpRequest, &str, &Config) -> Result<Command, Reply>;

/// Who may call a route when an admin token is configured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Access {
    /// Clients and anyone else.
    Open,
    /// Operators and the publishing application: `Authorization: Bearer <admin token>`.
    Admin,
}
use Access::{Admin, Open};

/// Fixed routes: (method, path, access, handler).
const ROUTES: &[(&str, &str, Access, Handler)] = &[
    ("POST", "/ws/handshake", Open, handshake),
    ("GET", "/ws/poll", Open, poll),
    ("POST", "/ws/send", Open, send),
    ("POST", "/ws/disconnect", Open, disconnect),
    ("GET", "/ws/clients", Admin, |_, _, _| {
        Ok(Command::ListClients)
    }),
    ("GET", "/ws/status", Admin, |_, _, _| Ok(Command::Status)),
    ("POST", "/ws/broadcast", Admin, broadcast),
    (
        "POST",
        "/ws/notify/job_progress",
        Admin,
        notify_job_progress,
    ),
    (
        "POST",
        "/ws/notify/job_complete",
        Admin,
        notify_job_complete,
    ),
    (
        "POST",
        "/ws/notify/system_status",
        Admin,
        notify_system_status,
    ),
    ("POST", "/ws/cleanup", Admin, cleanup),
    ("POST", "/api/events", Admin, publish_events),
    ("GET", "/api/websocket/clients", Admin, |_, _, _| {
        Ok(Command::ListClients)
    }),
    ("POST", "/api/websocket/broadcast", Admin, broadcast),
    ("GET", "/api/websocket/stats", Admin, |_, _, _| {
        Ok(Command::Stats)
    }),
    ("GET", "/websocket/clients", Admin, |_, _, _| {
        Ok(Command::ListClients)
    }),
    ("POST", "/websocket/broadcast", Admin, broadcast),
    ("GET", "/websocket/stats", Admin, |_, _, _| {
        Ok(Command::Stats)
    }),
    ("GET", "/api/system/health", Open, |_, _, _| {
        Ok(Command::Health)
    }),
    ("GET", "/health", Open, |_, _, _| Ok(Command::Health)),
    ("GET", "/metrics", Admin, |_, _, _| Ok(Command::Metrics)),
    ("GET", "/api/catalogue", Open, |_, _, _| {
        Ok(Command::Catalogue)
    }),
];

/// Routes whose last segment is a name (a client id, a channel): (method, prefix, route label,
/// access, handler).
const ID_ROUTES: &[(&str, &str, &str, Access, Handler)] = &[
    (
        "GET",
        "/api/history/",
        "/api/history/{channel}",
        Admin,
        history,
    ),
    ("POST", "/ws/send/", "/ws/send/{client_id}", Admin, send_to),
    (
        "POST",
        "/api/websocket/disconnect/",
        "/api/websocket/disconnect/{client_id}",
        Admin,
        admin_disconnect,
    ),
    (
        "POST",
        "/websocket/disconnect/",
        "/websocket/disconnect/{client_id}",
        Admin,
        admin_disconnect,
    ),
];

/// Splits a request target into path and query.
pub(crate) fn split_target(target: &str) -> (&str, &str) {
    match target.split_once('?') {
        Some((path, query)) => (path, query),
        None => (target, ""),
    }
}

/// Maps a request to a command.
pub(crate) fn route(http: &HttpRequest, config: &Config) -> Routed {
    let (path, _) = split_target(&http.target);
    if path == WEBSOCKET_PATH {
        let mut reply = Reply::error(
            426,
            "/ws is the WebSocket endpoint: connect with a WebSocket client (Upgrade: websocket)",
        );
        reply
            .headers
            .push(("Upgrade".to_string(), "websocket".to_string()));
        return Routed {
            route: WEBSOCKET_PATH,
            admin: false,
            command: Err(reply),
        };
    }
    if let Some(asset) = Asset::at(path) {
        // The page and the client hold no data; what they fetch is checked on its own.
        return match http.method.as_str() {
            "GET" => Routed {
                route: "asset",
                admin: false,
                command: Ok(Command::Asset { asset }),
            },
            _ => method_not_allowed("asset", &["GET"], &http.method),
        };
    }
    let mut allowed: Vec<&str> = Vec::new();
    for (method, pattern, access, handler) in ROUTES {
        if *pattern == path {
            if *method == http.method {
                return Routed {
                    route: pattern,
                    admin: *access == Admin,
                    command: handler(http, "", config),
                };
            }
            allowed.push(method);
        }
    }
    for (method, prefix, label, access, handler) in ID_ROUTES {
        if let Some(id) = path.strip_prefix(prefix).filter(|id| !id.contains('/')) {
            if *method == http.method {
                return Routed {
                    route: label,
                    admin: *access == Admin,
                    command: handler(http, id, config),
                };
            }
            return method_not_allowed(label, &[method], &http.method);
        }
    }
    if !allowed.is_empty() {
        let label = ROUTES
            .iter()
            .find(|(_, pattern, _, _)| *pattern == path)
            .map(|(_, pattern, _, _)| *pattern)
            .unwrap_or("unmatched");
        return method_not_allowed(label, &allowed, &http.method);
    }
    Routed {
        route: "unmatched",
        admin: false,
        command: Err(Reply::error(404, &format!("no such endpoint: {path}"))),
    }
}

fn method_not_allowed(route: &'static str, allowed: &[&str], method: &str) -> Routed {
    let allow = allowed.join(", ");
    let mut reply = Reply::error(
        405,
        &format!("method {method} is not allowed on {route}; use {allow}"),
    );
    reply.headers.push(("Allow".to_string(), allow));
    Routed {
        route,
        admin: false,
        command: Err(reply),
    }
}

fn bad_request(message: impl AsRef<str>) -> Reply {
    Reply::error(400, message.as_ref())
}

/// The body as JSON, or the error reply for a body that is missing, too large or malformed.
fn json_body(http: &HttpRequest, config: &Config) -> Result<Option<Value>, Reply> {
    let bytes = match &http.body {
        RequestBody::Complete(bytes) => bytes,
        RequestBody::TooLarge { declared } => return Err(too_large(*declared, config)),
        RequestBody::LengthRequired => {
            return Err(Reply::error(
                411,
                "request bodies must have a Content-Length (chunked uploads are not accepted)",
            ));
        }
    };
    if bytes.len() > config.max_body_bytes {
        return Err(too_large(bytes.len() as u64, config));
    }
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    check_json_depth(bytes, config.max_json_depth).map_err(bad_request)?;
    serde_json::from_slice(bytes)
        .map(Some)
        .map_err(|err| bad_request(format!("request body is not valid JSON: {err}")))
}

/// Refuses JSON nested deeper than `max_depth` before it is parsed, so no parser recursion
/// or allocation is spent on it. Brackets inside strings do not count.
pub(crate) fn check_json_depth(bytes: &[u8], max_depth: usize) -> Result<(), String> {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &byte in bytes {
        if in_string {
            match byte {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > max_depth {
                    return Err(format!("JSON nested deeper than {max_depth} levels"));
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

fn too_large(declared: u64, config: &Config) -> Reply {
    Reply::error(
        413,
        &format!(
            "request body is {declared} bytes; the limit is {} bytes",
            config.max_body_bytes
        ),
    )
}

/// The body as a JSON object; an absent body counts as `{}` when `optional`.
fn object_body(
    http: &HttpRequest,
    config: &Config,
    optional: bool,
) -> Result<Map<String, Value>, Reply> {
    match json_body(http, config)? {
        Some(Value::Object(map)) => Ok(map),
        None if optional => Ok(Map::new()),
        None => Err(bad_request("request body must be a JSON object")),
        Some(_) => Err(bad_request("request body must be a JSON object")),
    }
}

fn optional_string(map: &Map<String, Value>, field: &str) -> Result<Option<String>, Reply> {
    match map.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(bad_request(format!("field `{field}` must be a string"))),
    }
}

fn required_string(map: &Map<String, Value>, field: &str) -> Result<String, Reply> {
    optional_string(map, field)?.ok_or_else(|| bad_request(format!("missing field `{field}`")))
}

/// A client id from a request. An id that is not even a UUID names no session, so it gets
/// the same 404 as an id whose session ended: a client that treats 404 as "handshake again"
/// then recovers from a corrupted id too, instead of retrying it forever.
fn parse_client_id(text: &str) -> Result<ClientId, Reply> {
    if text.trim().is_empty() {
        return Err(bad_request("missing client_id"));
    }
    text.parse().map_err(|_| {
        Reply::error(
            404,
            &format!(
                "unknown client_id {text:?}: not a client id this server issued (a UUID); \
                 handshake again"
            ),
        )
    })
}

fn required_client_id(map: &Map<String, Value>) -> Result<ClientId, Reply> {
    parse_client_id(&required_string(map, "client_id")?)
}

fn required_object(map: &mut Map<String, Value>, field: &str) -> Result<Value, Reply> {
    match map.remove(field) {
        Some(value @ Value::Object(_)) => Ok(value),
        None | Some(Value::Null) => Err(bad_request(format!("missing field `{field}`"))),
        Some(_) => Err(bad_request(format!(
            "field `{field}` must be a JSON object"
        ))),
    }
}

fn seconds(value: &Value, field: &str) -> Result<Duration, Reply> {
    value
        .as_f64()
        .filter(|s| s.is_finite() && *s >= 0.0)
        .and_then(|s| Duration::try_from_secs_f64(s).ok())
        .ok_or_else(|| bad_request(format!("`{field}` must be a number ≥ 0")))
}

fn handshake(http: &HttpRequest, _: &str, config: &Config) -> Result<Command, Reply> {
    let body = object_body(http, config, false)?;
    Ok(Command::Handshake {
        client_type: required_string(&body, "client_type")?,
        protocol_version: optional_string(&body, "protocol_version")?
            .unwrap_or_else(|| crate::PROTOCOL_VERSION.to_string()),
        client_id: optional_string(&body, "client_id")?,
        client_name: optional_string(&body, "client_name")?,
        token: match optional_string(&body, "token")? {
            Some(token) => Some(token),
            None => http
                .authorization
                .as_deref()
                .and_then(crate::auth::bearer)
                .map(str::to_string),
        },
        since: crate::history::parse_since(body.get("since"), None).map_err(bad_request)?,
    })
}

fn poll(http: &HttpRequest, _: &str, _: &Config) -> Result<Command, Reply> {
    let (_, query) = split_target(&http.target);
    let mut client_id = None;
    let mut wait = None;
    for (key, value) in form_urlencoded::parse(query.as_bytes()) {
        match key.as_ref() {
            "client_id" => client_id = Some(parse_client_id(&value)?),
            "wait" => {
                let number = value
                    .parse::<f64>()
                    .map_err(|_| bad_request("`wait` must be a number of seconds ≥ 0"))?;
                wait = Some(seconds(&Value::from(number), "wait")?);
            }
            _ => {}
        }
    }
    Ok(Command::Poll {
        client_id: client_id.ok_or_else(|| bad_request("missing query parameter `client_id`"))?,
        wait,
    })
}

fn send(http: &HttpRequest, _: &str, config: &Config) -> Result<Command, Reply> {
    let mut body = object_body(http, config, false)?;
    let client_id = required_client_id(&body)?;
    Ok(Command::Send {
        client_id,
        message: required_object(&mut body, "message")?,
    })
}

fn disconnect(http: &HttpRequest, _: &str, config: &Config) -> Result<Command, Reply> {
    let body = object_body(http, config, false)?;
    Ok(Command::Disconnect {
        client_id: required_client_id(&body)?,
        initiator: Initiator::Client,
    })
}

fn admin_disconnect(http: &HttpRequest, id: &str, config: &Config) -> Result<Command, Reply> {
    object_body(http, config, true)?;
    Ok(Command::Disconnect {
        client_id: parse_client_id(id)?,
        initiator: Initiator::Admin,
    })
}

fn broadcast(http: &HttpRequest, _: &str, config: &Config) -> Result<Command, Reply> {
    let mut body = object_body(http, config, false)?;
    Ok(Command::Broadcast {
        channel: optional_string(&body, "channel")?,
        client_type: optional_string(&body, "client_type")?,
        message: required_object(&mut body, "message")?,
    })
}

fn send_to(http: &HttpRequest, id: &str, config: &Config) -> Result<Command, Reply> {
    let client_id = parse_client_id(id)?;
    let mut body = object_body(http, config, false)?;
    // Accept both `{"message": {...}}` and the message object itself.
    let message = if body.contains_key("type") {
        Value::Object(body)
    } else {
        required_object(&mut body, "message")?
    };
    Ok(Command::SendTo { client_id, message })
}

fn event_from(mut fields: Map<String, Value>, event_type: &str) -> Command {
    fields.insert("type".to_string(), Value::from(event_type));
    Command::Publish {
        events: vec![Value::Object(fields)],
    }
}

fn notify_job_progress(http: &HttpRequest, _: &str, config: &Config) -> Result<Command, Reply> {
    Ok(event_from(
        object_body(http, config, false)?,
        "job_progress",
    ))
}

fn notify_system_status(http: &HttpRequest, _: &str, config: &Config) -> Result<Command, Reply> {
    Ok(event_from(
        object_body(http, config, false)?,
        "system_status",
    ))
}

/// `{job_id, success, result?}`: success publishes `job_completed`, failure `job_failed`
/// (its `error_message` from `error_message` or `error`).
fn notify_job_complete(http: &HttpRequest, _: &str, config: &Config) -> Result<Command, Reply> {
    let mut body = object_body(http, config, false)?;
    let success = match body.remove("success") {
        Some(Value::Bool(success)) => success,
        None => return Err(bad_request("missing field `success`")),
        Some(_) => return Err(bad_request("field `success` must be true or false")),
    };
    if success {
        return Ok(event_from(body, "job_completed"));
    }
    let result = body.remove("result");
    if !body.contains_key("error_message") {
        let message = match body.remove("error") {
            Some(Value::String(text)) => Value::from(text),
            Some(other @ Value::Object(_)) => {
                body.entry("error_details").or_insert(other);
                Value::from("job failed")
            }
            _ => Value::from("job failed"),
        };
        body.insert("error_message".to_string(), message);
    }
    if let Some(result) = result.filter(|r| !r.is_null()) {
        body.entry("error_details").or_insert(result);
    }
    Ok(event_from(body, "job_failed"))
}

fn cleanup(http: &HttpRequest, _: &str, config: &Config) -> Result<Command, Reply> {
    let body = object_body(http, config, true)?;
    let idle_for = match body.get("timeout_minutes") {
        None | Some(Value::Null) => config.stale_after,
        Some(minutes) => seconds(minutes, "timeout_minutes")?
            .checked_mul(60)
            .ok_or_else(|| bad_request("`timeout_minutes` is too large"))?,
    };
    Ok(Command::Cleanup { idle_for })
}

/// Most events one history request returns.
pub const HISTORY_LIMIT_MAX: usize = 1_000;

fn history(http: &HttpRequest, channel: &str, _: &Config) -> Result<Command, Reply> {
    let (_, query) = split_target(&http.target);
    let mut since = 0;
    let mut limit = 100;
    for (key, value) in form_urlencoded::parse(query.as_bytes()) {
        let number = || {
            value
                .parse::<u64>()
                .map_err(|_| bad_request(format!("`{key}` must be a whole number ≥ 0")))
        };
        match key.as_ref() {
            "since" => since = number()?,
            "limit" => limit = usize::try_from(number()?).unwrap_or(usize::MAX),
            _ => {}
        }
    }
    let channel = form_urlencoded::parse(format!("c={channel}").as_bytes())
        .next()
        .map(|(_, name)| name.into_owned())
        .unwrap_or_default();
    Ok(Command::History {
        channel,
        since,
        limit: limit.min(HISTORY_LIMIT_MAX),
    })
}

fn publish_events(http: &HttpRequest, _: &str, config: &Config) -> Result<Command, Reply> {
    let events = match json_body(http, config)? {
        Some(Value::Array(events)) => events,
        Some(event @ Value::Object(_)) => vec![event],
        _ => {
            return Err(bad_request(
                "request body must be one event object or a list of them",
            ));
        }
    };
    if events.len() > config.max_batch_events {
        return Err(Reply::error(
            413,
            &format!(
                "{} events in one request; the limit is {}",
                events.len(),
                config.max_batch_events
            ),
        ));
    }
    Ok(Command::Publish { events })
}

/// Refuses a header value with a byte outside visible ASCII, space and tab, with the text both
/// runtimes answer 400 with. RFC 9110 §5.5 lets a server treat bytes beyond ASCII as opaque,
/// but http-types (under async-h1) panics on them, and both runtimes must answer the same
/// request the same way; so they are refused before any HTTP library sees them.
pub fn check_header_value(name: &str, value: &[u8]) -> Result<(), String> {
    match value
        .iter()
        .find(|&&b| !(b == b'\t' || (b' '..=b'~').contains(&b)))
    {
        None => Ok(()),
        Some(bad) => Err(format!(
            "header {name} has a value with byte 0x{bad:02x}: only visible ASCII, spaces and \
             tabs are accepted"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn routed(method: &str, target: &str, body: &str) -> Routed {
        route(&HttpRequest::new(method, target, body), &Config::default())
    }

    #[test]
    fn unknown_path_is_404_and_wrong_method_405_with_allow() {
        let r = routed("GET", "/nope", "");
        assert_eq!(r.command.unwrap_err().status, 404);
        let r = routed("GET", "/ws/handshake", "");
        let reply = r.command.unwrap_err();
        assert_eq!(reply.status, 405);
        assert_eq!(reply.headers, [("Allow".to_string(), "POST".to_string())]);
        let r = routed("GET", "/ws/send/0b7c2f4e-8a55-4d7e-9a44-0f3e1f2d3c4b", "");
        assert_eq!(r.command.unwrap_err().status, 405);
    }

    #[test]
    fn poll_query() {
        let id = "0b7c2f4e-8a55-4d7e-9a44-0f3e1f2d3c4b";
        match routed("GET", &format!("/ws/poll?client_id={id}&wait=2.5"), "").command {
            Ok(Command::Poll { client_id, wait }) => {
                assert_eq!(client_id.to_string(), id);
                assert_eq!(wait, Some(Duration::from_millis(2500)));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            routed("GET", "/ws/poll", "").command.unwrap_err().status,
            400
        );
        let bad_wait = routed("GET", &format!("/ws/poll?client_id={id}&wait=-1"), "");
        assert_eq!(bad_wait.command.unwrap_err().status, 400);
    }

    #[test]
    fn bodies() {
        let r = routed("POST", "/ws/handshake", "{not json");
        assert!(r.command.unwrap_err().body.contains("not valid JSON"));
        let r = routed("POST", "/ws/handshake", "{}");
        assert!(r.command.unwrap_err().body.contains("client_type"));
        let mut big = HttpRequest::new("POST", "/ws/send", "");
        big.body = RequestBody::TooLarge { declared: 1 << 20 };
        assert_eq!(
            route(&big, &Config::default()).command.unwrap_err().status,
            413
        );
    }

    #[test]
    fn job_complete_maps_to_completed_or_failed() {
        let ok = routed(
            "POST",
            "/ws/notify/job_complete",
            r#"{"job_id":"j","success":true,"result":{"a":1}}"#,
        );
        let Ok(Command::Publish { events }) = ok.command else {
            panic!()
        };
        assert_eq!(events[0]["type"], "job_completed");
        assert_eq!(events[0]["result"]["a"], 1);
        let failed = routed(
            "POST",
            "/ws/notify/job_complete",
            r#"{"job_id":"j","success":false,"error":"disk full"}"#,
        );
        let Ok(Command::Publish { events }) = failed.command else {
            panic!()
        };
        assert_eq!(events[0]["type"], "job_failed");
        assert_eq!(events[0]["error_message"], "disk full");
    }

    #[test]
    fn json_depth_is_limited_and_strings_do_not_count() {
        assert!(check_json_depth(br#"{"a":[[1]]}"#, 3).is_ok());
        assert!(
            check_json_depth(br#"{"a":[[[1]]]}"#, 3)
                .unwrap_err()
                .contains("3 levels")
        );
        assert!(check_json_depth(br#"{"a":"[[[[[[\"[[["}"#, 1).is_ok());
        let deep = format!("{}{}", "[".repeat(33), "]".repeat(33));
        let r = route(
            &HttpRequest::new("POST", "/api/events", deep),
            &Config::default(),
        );
        assert!(r.command.unwrap_err().body.contains("32 levels"));
    }

    #[test]
    fn cleanup_minutes_allow_fractions() {
        let r = routed("POST", "/ws/cleanup", r#"{"timeout_minutes":0.5}"#);
        assert!(
            matches!(r.command, Ok(Command::Cleanup { idle_for }) if idle_for == Duration::from_secs(30))
        );
    }

    #[test]
    fn header_values_are_visible_ascii_spaces_and_tabs() {
        assert_eq!(check_header_value("x", b"a b\tc~!"), Ok(()));
        let refused = check_header_value("x-name", "caf\u{e9}".as_bytes()).unwrap_err();
        assert!(
            refused.contains("header x-name") && refused.contains("0xc3"),
            "{refused}"
        );
        assert!(check_header_value("x", b"a\x7fb").is_err());
        assert!(check_header_value("x", b"a\rb").is_err());
    }
}
