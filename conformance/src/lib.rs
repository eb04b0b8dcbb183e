//! # livebridge-conformance
//!
//! Session transcripts (`conformance/sessions/*.json`, format in `docs/conformance.md`)
//! replayed on two back ends: the engine with virtual time ([`engine_backend`]) and the real
//! server over real sockets ([`live_backend`]). `cargo test -p livebridge-conformance` runs
//! every session on both; the `record` binary turns a live HTTP exchange into a transcript.

pub mod engine_backend;
pub mod live_backend;
pub mod matcher;
pub mod transcript;

use matcher::{Clock, Vars};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
pub use transcript::{Expect, HttpStep, Step, Transcript};

/// Something a WebSocket actor received.
#[derive(Clone, Debug, PartialEq)]
pub enum Item {
    /// A text frame.
    Frame(String),
    /// The server's close frame (`None`: the connection ended without one).
    Close(Option<u16>),
    /// A ping (answered by the client).
    Ping,
}

/// An HTTP answer (or a refused WebSocket upgrade).
#[derive(Clone, Debug)]
pub struct Answer {
    /// Status code.
    pub status: u16,
    /// Headers (lower-case names on the live side).
    pub headers: Vec<(String, String)>,
    /// Body text.
    pub body: String,
    /// Engine only: when it was answered (ms from the start).
    pub at_ms: Option<u64>,
}

/// What a back end must do to replay a session.
pub trait Driver {
    /// `engine` or `live`.
    fn name(&self) -> &'static str;
    /// Lets time pass until `at_ms` from the session start.
    fn advance(&mut self, at_ms: u64);
    /// The timestamp window: (session start, now) in unix milliseconds.
    fn clock_ms(&self) -> (u64, u64);
    /// Starts an HTTP request; returns a handle.
    fn http_start(
        &mut self,
        method: &str,
        path: &str,
        body: Vec<u8>,
        chunked: bool,
    ) -> Result<u64, String>;
    /// The answer of a request: with `wait`, it must come (live: within a timeout).
    fn http_answer(&mut self, handle: u64, wait: bool) -> Result<Option<Answer>, String>;
    /// Opens a WebSocket; `Some` is the refusal.
    fn ws_open(&mut self, actor: &str, path: &str) -> Result<Option<Answer>, String>;
    /// Sends a text frame.
    fn ws_text(&mut self, actor: &str, text: String) -> Result<(), String>;
    /// Sends a binary frame.
    fn ws_binary(&mut self, actor: &str, len: usize) -> Result<(), String>;
    /// Closes with a code, or drops the connection (`None`).
    fn ws_close(&mut self, actor: &str, code: Option<u16>) -> Result<(), String>;
    /// Stops / resumes reading (engine only).
    fn ws_stall(&mut self, actor: &str, stall: bool) -> Result<(), String>;
    /// The next frame or close (live: waits).
    fn ws_next(&mut self, actor: &str) -> Result<Option<Item>, String>;
    /// Everything waiting now (live: after a short quiet period).
    fn ws_quiet(&mut self, actor: &str) -> Result<Vec<Item>, String>;
    /// Pings since the last call.
    fn ws_pings(&mut self, actor: &str) -> Result<usize, String>;
    /// Frames nobody expected, at the end.
    fn leftovers(&mut self) -> Vec<(String, Item)>;
    /// Graceful shutdown.
    fn shutdown(&mut self);
    /// Releases sockets and the server.
    fn finish(&mut self);
}

/// Why a session failed on a back end.
#[derive(Clone, Debug)]
pub struct Failure {
    /// Index of the first differing step (`None`: setup or end-of-session check).
    pub step: Option<usize>,
    /// What differed.
    pub message: String,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.step {
            Some(i) => write!(f, "step {i}: {}", self.message),
            None => write!(f, "{}", self.message),
        }
    }
}

/// The back ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// livebridge-core with virtual time.
    Engine,
    /// The smol server on real sockets.
    Live,
    /// The tokio/axum server on real sockets.
    LiveAxum,
    /// The smol server as a cluster node on Redis (`--broker`).
    LiveCluster,
}

impl Backend {
    /// Its name in transcripts (`only`).
    pub fn name(self) -> &'static str {
        match self {
            Backend::Engine => "engine",
            Backend::Live => "live",
            Backend::LiveAxum => "live-axum",
            Backend::LiveCluster => "live-cluster",
        }
    }
}

/// The directory of the bundled sessions.
pub fn sessions_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("sessions")
}

/// Every `*.json` in a directory, sorted.
pub fn session_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    files.retain(|p| p.extension().is_some_and(|e| e == "json"));
    files.sort();
    files
}

/// Replays a transcript on one back end.
pub fn run(transcript: &Transcript, backend: Backend) -> Result<(), Failure> {
    let config = transcript.config().map_err(|message| Failure {
        step: None,
        message,
    })?;
    let mut driver: Box<dyn Driver> = match backend {
        Backend::Engine => Box::new(engine_backend::EngineDriver::new(config)),
        Backend::Live | Backend::LiveAxum | Backend::LiveCluster => {
            let runtime = match backend {
                Backend::Live => live_backend::Runtime::Smol,
                Backend::LiveAxum => live_backend::Runtime::Axum,
                _ => live_backend::Runtime::SmolCluster,
            };
            Box::new(
                live_backend::LiveDriver::start(runtime, config).map_err(|message| Failure {
                    step: None,
                    message,
                })?,
            )
        }
    };
    let mut transcript = transcript.clone();
    let result = replay(&mut transcript, driver.as_mut(), false);
    driver.finish();
    result
}

/// Replays a transcript on the engine and, where an answer or frame has fields that the
/// protocol has gained since the transcript was written (`channel`, `offset`, `epoch`,
/// `positions`, `recovered`) and its pattern lacks, adds them to the pattern: offsets and
/// channels as they are (the engine is deterministic), epochs as a `$epoch_<channel>`
/// variable. Returns whether anything was added. See the `bless` binary.
pub fn bless(transcript: &mut Transcript) -> Result<bool, Failure> {
    let config = transcript.config().map_err(|message| Failure {
        step: None,
        message,
    })?;
    let before = serde_json::to_value(&*transcript).expect("transcripts serialise");
    let mut driver = engine_backend::EngineDriver::new(config);
    let result = replay(transcript, &mut driver, true);
    driver.finish();
    result?;
    Ok(serde_json::to_value(&*transcript).expect("transcripts serialise") != before)
}

/// Fields the protocol added to existing messages, which [`bless`] adds to old patterns.
const ADDED_FIELDS: [&str; 6] = [
    "channel",
    "offset",
    "epoch",
    "positions",
    "recovered",
    "dropped",
];

fn adopt_added_fields(pattern: &mut Value, actual: &Value) {
    match (pattern, actual) {
        (Value::Object(pattern), Value::Object(actual)) => {
            if pattern.contains_key("...") {
                return;
            }
            for key in ADDED_FIELDS {
                if let (false, Some(value)) = (pattern.contains_key(key), actual.get(key)) {
                    let blessed = match key {
                        "epoch" => match actual.get("channel").and_then(Value::as_str) {
                            Some(channel) => Value::from(format!("$epoch_{channel}")),
                            None => Value::from("@string"),
                        },
                        "positions" => positions_pattern(value),
                        _ => value.clone(),
                    };
                    pattern.insert(key.to_string(), blessed);
                }
            }
            for (key, value) in pattern.iter_mut() {
                if let Some(actual) = actual.get(key) {
                    adopt_added_fields(value, actual);
                }
            }
        }
        (Value::Array(pattern), Value::Array(actual)) => {
            for (pattern, actual) in pattern.iter_mut().zip(actual) {
                adopt_added_fields(pattern, actual);
            }
        }
        _ => {}
    }
}

fn positions_pattern(positions: &Value) -> Value {
    let Value::Object(positions) = positions else {
        return positions.clone();
    };
    let blessed = positions
        .iter()
        .map(|(channel, position)| {
            let pattern = serde_json::json!({
                "offset": position["offset"].clone(),
                "epoch": format!("$epoch_{channel}"),
            });
            (channel.clone(), pattern)
        })
        .collect();
    Value::Object(blessed)
}

fn replay(
    transcript: &mut Transcript,
    driver: &mut dyn Driver,
    bless: bool,
) -> Result<(), Failure> {
    let mut vars = Vars::new();
    let mut pending: BTreeMap<String, u64> = BTreeMap::new();
    let mut last_at = 0;
    for (index, step) in transcript.steps.iter_mut().enumerate() {
        if step.at < last_at {
            return Err(Failure {
                step: Some(index),
                message: format!("steps go back in time ({} < {last_at})", step.at),
            });
        }
        last_at = step.at;
        if step
            .only
            .as_deref()
            .is_some_and(|only| only != driver.name())
        {
            continue;
        }
        let at = match driver.name() {
            "live" => step.live_at.unwrap_or(step.at),
            _ => step.at,
        };
        driver.advance(at);
        run_step(step, driver, &mut vars, &mut pending, bless).map_err(|message| Failure {
            step: Some(index),
            message: format!("[{} at {at} ms] {message}", step.actor),
        })?;
    }
    let leftovers = driver.leftovers();
    if !leftovers.is_empty() {
        let list: Vec<String> = leftovers
            .iter()
            .map(|(actor, item)| format!("{actor}: {item:?}"))
            .collect();
        return Err(Failure {
            step: None,
            message: format!("end of session: unexpected frames: {}", list.join("; ")),
        });
    }
    Ok(())
}

fn clock(driver: &dyn Driver) -> Clock {
    let (start_ms, now_ms) = driver.clock_ms();
    Clock { start_ms, now_ms }
}

fn run_step(
    step: &mut Step,
    driver: &mut dyn Driver,
    vars: &mut Vars,
    pending: &mut BTreeMap<String, u64>,
    bless: bool,
) -> Result<(), String> {
    let actor = step.actor.as_str();
    let mut answer: Option<Answer> = None;
    if let Some(http) = &step.http {
        let path = matcher::substitute_text(&http.path, vars)?;
        let mut body = match &http.body {
            None => Vec::new(),
            Some(Value::String(raw)) => matcher::substitute_text(raw, vars)?.into_bytes(),
            Some(value) => matcher::substitute(value, vars)?.to_string().into_bytes(),
        };
        if let Some(pad) = http.pad {
            body.resize(body.len().max(pad), b' ');
        }
        let handle = driver.http_start(&http.method, &path, body, http.chunked)?;
        match &step.pending {
            Some(name) => {
                pending.insert(name.clone(), handle);
            }
            None => {
                answer = Some(driver.http_answer(handle, true)?.ok_or("no answer")?);
            }
        }
    } else if let Some(name) = &step.await_ {
        let handle = pending
            .remove(name)
            .ok_or_else(|| format!("no pending request named {name}"))?;
        answer = Some(
            driver
                .http_answer(handle, true)
                .map_err(|e| format!("{name}: {e}"))?
                .ok_or("no answer")?,
        );
    } else if let Some(name) = &step.still_pending {
        let handle = *pending
            .get(name)
            .ok_or_else(|| format!("no pending request named {name}"))?;
        if let Some(early) = driver.http_answer(handle, false)? {
            return Err(format!(
                "{name} was answered already: {} {}",
                early.status, early.body
            ));
        }
    } else if step.ws_open {
        let path = match &step.ws_path {
            Some(path) => matcher::substitute_text(path, vars)?,
            None => "/ws".to_string(),
        };
        answer = driver.ws_open(actor, &path)?;
        if answer.is_none() && step.expect.as_ref().is_some_and(|e| e.status != 101) {
            return Err("the WebSocket was accepted".to_string());
        }
    } else if step.ws_send.is_some() || step.ws_send_text.is_some() {
        let mut text = match (&step.ws_send, &step.ws_send_text) {
            (Some(message), _) => matcher::substitute(message, vars)?.to_string(),
            (None, Some(text)) => matcher::substitute_text(text, vars)?,
            _ => unreachable!(),
        };
        if let Some(pad) = step.pad {
            while text.len() < pad {
                text.push(' ');
            }
        }
        driver.ws_text(actor, text)?;
    } else if let Some(len) = step.ws_send_binary {
        driver.ws_binary(actor, len)?;
    } else if let Some(code) = step.ws_close {
        driver.ws_close(actor, Some(code))?;
    } else if step.ws_drop {
        driver.ws_close(actor, None)?;
    } else if step.ws_stall || step.ws_unstall {
        driver.ws_stall(actor, step.ws_stall)?;
    } else if step.shutdown {
        driver.shutdown();
    }

    if let Some(answer) = answer {
        let what = if step.ws_open {
            "the WebSocket upgrade was refused"
        } else {
            "answer"
        };
        let expect = step
            .expect
            .as_mut()
            .ok_or_else(|| format!("{what}: {} {} (no `expect`)", answer.status, answer.body))?;
        if bless
            && let (Some(pattern), Ok(actual)) = (
                expect.body.as_mut(),
                serde_json::from_str::<Value>(&answer.body),
            )
        {
            adopt_added_fields(pattern, &actual);
        }
        check_answer(expect, &answer, vars, clock(driver), driver.name())?;
    } else if step.expect.is_some() && (step.ws_open) {
        // Accepted as expected (status 101).
    } else if step.expect.is_some() && step.http.is_none() && step.await_.is_none() {
        return Err("`expect` needs `http`, `await` or `ws_open`".to_string());
    } else if step.expect.is_some() && step.pending.is_some() {
        return Err("a pending request's `expect` belongs on its `await` step".to_string());
    }

    if let Some(frames) = &mut step.frames {
        for (i, pattern) in frames.iter_mut().enumerate() {
            match driver.ws_next(actor)? {
                Some(Item::Frame(text)) => {
                    let actual: Value = serde_json::from_str(&text)
                        .map_err(|e| format!("frame {i} is not JSON ({e}): {text}"))?;
                    if bless {
                        adopt_added_fields(pattern, &actual);
                    }
                    matcher::matches(pattern, &actual, vars, clock(driver))
                        .map_err(|e| format!("frame {i}: {e}\n  frame: {text}"))?;
                }
                Some(other) => return Err(format!("frame {i}: expected {pattern}, got {other:?}")),
                None => return Err(format!("frame {i}: expected {pattern}, got nothing")),
            }
        }
    }
    if let Some(code) = &step.close {
        let want = code.as_u64().map(|c| c as u16);
        match driver.ws_next(actor)? {
            Some(Item::Close(got)) if got == want => {}
            Some(other) => return Err(format!("expected close {code}, got {other:?}")),
            None => return Err(format!("expected close {code}, got nothing")),
        }
    }
    if step.no_frames {
        let waiting = driver.ws_quiet(actor)?;
        if !waiting.is_empty() {
            return Err(format!("expected no frames, got {waiting:?}"));
        }
    }
    if step.pinged && driver.ws_pings(actor)? == 0 {
        return Err("expected a ping".to_string());
    }
    Ok(())
}

fn check_answer(
    expect: &Expect,
    answer: &Answer,
    vars: &mut Vars,
    clock: Clock,
    backend: &str,
) -> Result<(), String> {
    if expect.status != answer.status {
        return Err(format!(
            "expected status {}, got {} {}",
            expect.status, answer.status, answer.body
        ));
    }
    for (name, value) in &expect.headers {
        match answer
            .headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
        {
            Some((_, v)) if v == value => {}
            Some((_, v)) => return Err(format!("header {name}: expected {value:?}, got {v:?}")),
            None => return Err(format!("header {name} missing")),
        }
    }
    if let Some(pattern) = &expect.body {
        let actual: Value = serde_json::from_str(&answer.body)
            .map_err(|e| format!("body is not JSON ({e}): {}", answer.body))?;
        matcher::matches(pattern, &actual, vars, clock)
            .map_err(|e| format!("body{e}\n  body: {}", answer.body))?;
    }
    for needle in &expect.text_contains {
        if !answer.body.contains(needle.as_str()) {
            return Err(format!("body lacks {needle:?}: {}", answer.body));
        }
    }
    if let (Some(want), Some(got), "engine") = (expect.answered_at, answer.at_ms, backend)
        && want != got
    {
        return Err(format!("answered at {got} ms, expected at {want} ms"));
    }
    Ok(())
}
