//! The transcript format: one JSON file per session (see `docs/conformance.md`).

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;

/// One recorded session: settings and steps.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Transcript {
    /// Short name (the file stem by convention).
    #[serde(default)]
    pub name: String,
    /// What the session shows.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// A subset of `livebridge_core::Config` (durations in milliseconds).
    #[serde(default)]
    pub settings: serde_json::Map<String, Value>,
    /// The exchange, in time order.
    pub steps: Vec<Step>,
}

/// One step: an actor does something at a time offset, and expects something.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    /// Milliseconds from the session start.
    pub at: u64,
    /// Replaces `at` on the live back end (real time needs margins around deadlines).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub live_at: Option<u64>,
    /// Who acts: a polling client, a WebSocket client, `app` (publisher), `admin`.
    pub actor: String,
    /// `"engine"` or `"live"`: run this step on that back end only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub only: Option<String>,
    /// Free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,

    // ---- actions (at most one) ----
    /// An HTTP request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpStep>,
    /// With `http`: do not wait for the answer; name the request for a later `await`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending: Option<String>,
    /// Wait for the answer of a pending request and check it against `expect`.
    #[serde(default, rename = "await", skip_serializing_if = "Option::is_none")]
    pub await_: Option<String>,
    /// Check that a pending request has not been answered yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub still_pending: Option<String>,
    /// Open a WebSocket (`GET /ws` with upgrade) for this actor.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ws_open: bool,
    /// With `ws_open`: the path and query to upgrade on (default `/ws`), e.g.
    /// `/ws?client_id=$a` to resume a session at open.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ws_path: Option<String>,
    /// Send this JSON message as a text frame.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ws_send: Option<Value>,
    /// Send this raw text frame.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ws_send_text: Option<String>,
    /// Pad the text frame of `ws_send`/`ws_send_text` with spaces to this many bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pad: Option<usize>,
    /// Send a binary frame of this many bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ws_send_binary: Option<usize>,
    /// Close the WebSocket with this code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ws_close: Option<u16>,
    /// Drop the WebSocket's TCP connection without a close frame.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ws_drop: bool,
    /// Stop acknowledging written frames (engine only: a client that does not read).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ws_stall: bool,
    /// Acknowledge again (engine only).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ws_unstall: bool,
    /// Shut the server down gracefully (SIGTERM).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub shutdown: bool,

    // ---- expectations ----
    /// The HTTP answer (of `http` or `await`), or the refusal of a `ws_open`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect: Option<Expect>,
    /// The next text frames this WebSocket actor receives, in order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frames: Option<Vec<Value>>,
    /// Then the server's close frame with this code (`null`: closed without a close frame).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub close: Option<Value>,
    /// No frame is waiting for this WebSocket actor (live: none arrives within 150 ms).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub no_frames: bool,
    /// The server pinged this WebSocket actor since the last check (the client pongs).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub pinged: bool,
}

/// An HTTP request.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpStep {
    /// `GET`, `POST`, ...
    pub method: String,
    /// Path and query; `$var` references are substituted.
    pub path: String,
    /// JSON body (objects/arrays are serialised; a string is sent as raw text).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<Value>,
    /// Pad the body with trailing spaces to this many bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pad: Option<usize>,
    /// Send the body chunked (no `Content-Length`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub chunked: bool,
}

/// An expected HTTP answer.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// Status code.
    pub status: u16,
    /// JSON body pattern (see docs/conformance.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<Value>,
    /// Headers that must be present with these values (names case-insensitive).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// Substrings of a non-JSON body.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub text_contains: Vec<String>,
    /// Engine only: the answer came out at exactly this offset (ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answered_at: Option<u64>,
}

impl Transcript {
    /// Reads and parses a transcript file.
    pub fn load(path: &Path) -> Result<Transcript, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut transcript: Transcript =
            serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        if transcript.name.is_empty() {
            transcript.name = path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
        }
        Ok(transcript)
    }

    /// The engine settings: defaults overridden by `settings`.
    pub fn config(&self) -> Result<livebridge_core::Config, String> {
        serde_json::from_value(Value::Object(self.settings.clone()))
            .map_err(|e| format!("settings: {e}"))
    }
}
