//! The typed answer to an [`crate::Input::Command`]: what each command produced
//! ([`CommandResult`]) or why it was refused ([`CommandError`], with the HTTP status an HTTP
//! caller would have got as a method). Commands are answered with
//! [`crate::Output::CommandDone`], so an in-process caller never parses a JSON reply.

use crate::ids::ClientId;
use crate::output::{ContentType, Reply};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::fmt;
use std::sync::Arc;

/// Why a command was refused. Its text says what is wrong; [`CommandError::http_status`] is
/// the status the same refusal has over HTTP.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "error", content = "message", rename_all = "snake_case")]
pub enum CommandError {
    /// A malformed or invalid argument: fix the command (400).
    InvalidRequest(String),
    /// A client token is required, invalid or expired (401).
    Unauthorized(String),
    /// The token does not allow this (403).
    Forbidden(String),
    /// The `client_id` names no session: handshake again (404).
    UnknownClient(String),
    /// The request conflicts with the session's state (409).
    Conflict(String),
    /// History no longer reaches back that far (410).
    Gone(String),
    /// Too many events or too large a message (413).
    TooLarge(String),
    /// Over a rate limit: retry later (429).
    RateLimited(String),
    /// The server is full, shutting down, or its store failed: retry later (503).
    Unavailable(String),
    /// The store is full: publishing is refused until it has room (507).
    StoreFull(String),
    /// Any other refusal, with its HTTP status.
    Other {
        /// The HTTP status.
        status: u16,
        /// What is wrong.
        message: String,
    },
}

impl CommandError {
    /// The HTTP status this refusal has over HTTP.
    pub fn http_status(&self) -> u16 {
        match self {
            CommandError::InvalidRequest(_) => 400,
            CommandError::Unauthorized(_) => 401,
            CommandError::Forbidden(_) => 403,
            CommandError::UnknownClient(_) => 404,
            CommandError::Conflict(_) => 409,
            CommandError::Gone(_) => 410,
            CommandError::TooLarge(_) => 413,
            CommandError::RateLimited(_) => 429,
            CommandError::Unavailable(_) => 503,
            CommandError::StoreFull(_) => 507,
            CommandError::Other { status, .. } => *status,
        }
    }

    /// What is wrong.
    pub fn message(&self) -> &str {
        match self {
            CommandError::InvalidRequest(m)
            | CommandError::Unauthorized(m)
            | CommandError::Forbidden(m)
            | CommandError::UnknownClient(m)
            | CommandError::Conflict(m)
            | CommandError::Gone(m)
            | CommandError::TooLarge(m)
            | CommandError::RateLimited(m)
            | CommandError::Unavailable(m)
            | CommandError::StoreFull(m)
            | CommandError::Other { message: m, .. } => m,
        }
    }

    /// The refusal an HTTP caller gets as `status`.
    pub(crate) fn from_status(status: u16, message: String) -> Self {
        match status {
            400 => CommandError::InvalidRequest(message),
            401 => CommandError::Unauthorized(message),
            403 => CommandError::Forbidden(message),
            404 => CommandError::UnknownClient(message),
            409 => CommandError::Conflict(message),
            410 => CommandError::Gone(message),
            413 => CommandError::TooLarge(message),
            429 => CommandError::RateLimited(message),
            503 => CommandError::Unavailable(message),
            507 => CommandError::StoreFull(message),
            status => CommandError::Other { status, message },
        }
    }
}

impl fmt::Display for CommandError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message())
    }
}

impl std::error::Error for CommandError {}

/// What a command produced, per command.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum CommandResult {
    /// [`crate::Command::Handshake`]: the session opened or resumed.
    Handshake {
        /// The session's id (the credential to poll, send and resume).
        client_id: ClientId,
        /// Whether an existing session was resumed.
        resumed: bool,
        /// Messages waiting for the first poll.
        queued: usize,
        /// The whole answer (recovery details on a resume with `since`).
        details: Value,
    },
    /// [`crate::Command::Poll`]: the messages taken from the session's queue.
    Poll {
        /// The messages, oldest first.
        messages: Vec<Value>,
        /// Messages dropped from the full queue since the last poll.
        dropped: u64,
    },
    /// [`crate::Command::Send`]: the engine's response to the client's message.
    Sent {
        /// The response (`pong`, `subscribed`, `published`...).
        response: Value,
    },
    /// [`crate::Command::Disconnect`]: the session ended.
    Disconnected,
    /// [`crate::Command::Broadcast`], [`crate::Command::SendTo`],
    /// [`crate::Command::Publish`]: who got it (recipients, offsets...).
    Delivered {
        /// The answer's fields.
        details: Value,
    },
    /// [`crate::Command::Metrics`]: Prometheus text.
    Metrics {
        /// The exposition text.
        text: String,
    },
    /// [`crate::Command::Asset`]: a compiled-in file.
    Asset {
        /// Its media type.
        content_type: ContentType,
        /// Its text.
        body: String,
    },
    /// Every other command (status, stats, health, list, history, catalogue, cleanup): the
    /// report as JSON, as `GET` of its endpoint returns it.
    Report {
        /// The report.
        report: Value,
    },
}

/// What the engine's parts answer a command with, before it takes the form its caller asked
/// for: an HTTP [`Reply`] (JSON text) for a request that came over HTTP, a [`CommandResult`]
/// for an [`crate::Input::Command`]. Answers whose content is already JSON text (queued
/// frames, a client message's response) stay text until then, so the HTTP path does not
/// re-encode them and the typed path parses only what it hands out.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// A session opened or resumed; `details` is the whole answer.
    Handshake {
        client_id: ClientId,
        resumed: bool,
        queued: usize,
        details: Value,
    },
    /// Messages taken from a session's queue, oldest first, each a JSON text.
    Poll {
        frames: Vec<Arc<str>>,
        dropped: u64,
        timestamp: String,
        /// Answered empty because another poll or transport took over.
        superseded: bool,
    },
    /// The engine's response to a client's message, as JSON text.
    Sent { response: String },
    /// A channel's retained events after an offset, oldest first, each a JSON text.
    History {
        channel: String,
        epoch: String,
        /// The channel's latest offset.
        offset: u64,
        /// Whether the events start right after the offset asked for.
        complete: bool,
        events: Vec<Arc<str>>,
    },
    /// The session ended; `details` is the answer.
    Disconnected { details: Value },
    /// A message or events went out; `details` says to whom (recipients, offsets...).
    Delivered { details: Value },
    /// A report (health, clients, history, catalogue, cleanup).
    Report { report: Value },
    /// The status report (status, stats).
    Status(Box<crate::engine::StatusReport>),
    /// The health report, and the HTTP status that tells a load balancer whether to send
    /// clients here (503 while a cluster node has not synced with its broker).
    Health { status: u16, report: Value },
    /// Prometheus text.
    Metrics { text: String },
    /// A compiled-in file.
    Asset(crate::assets::Asset),
}

/// An [`Outcome`] or the refusal.
pub(crate) type Answered = Result<Outcome, CommandError>;

impl Outcome {
    /// The HTTP reply: JSON text as the protocol documents it.
    pub(crate) fn into_reply(self) -> Reply {
        match self {
            Outcome::Handshake { details, .. }
            | Outcome::Disconnected { details }
            | Outcome::Delivered { details }
            | Outcome::Report { report: details } => Reply::json(200, details.to_string()),
            Outcome::Status(report) => Reply::json(
                200,
                serde_json::to_string(&report).expect("a status report is plain data"),
            ),
            Outcome::Poll {
                frames,
                dropped,
                timestamp,
                superseded,
            } => {
                let mut body =
                    String::with_capacity(96 + frames.iter().map(|f| f.len() + 1).sum::<usize>());
                body.push_str("{\"success\":true,\"messages\":[");
                push_joined(&mut body, &frames);
                body.push_str("],\"dropped\":");
                body.push_str(&dropped.to_string());
                if superseded {
                    body.push_str(",\"superseded\":true");
                }
                body.push_str(",\"timestamp\":");
                body.push_str(&Value::from(timestamp).to_string());
                body.push('}');
                Reply::json(200, body)
            }
            Outcome::History {
                channel,
                epoch,
                offset,
                complete,
                events,
            } => {
                let mut body =
                    String::with_capacity(128 + events.iter().map(|e| e.len() + 1).sum::<usize>());
                body.push_str("{\"success\":true,\"channel\":");
                body.push_str(&Value::from(channel).to_string());
                body.push_str(",\"epoch\":");
                body.push_str(&Value::from(epoch).to_string());
                body.push_str(",\"offset\":");
                body.push_str(&offset.to_string());
                body.push_str(",\"complete\":");
                body.push_str(if complete { "true" } else { "false" });
                body.push_str(",\"events\":[");
                push_joined(&mut body, &events);
                body.push_str("]}");
                Reply::json(200, body)
            }
            Outcome::Sent { response } => {
                Reply::json(200, format!("{{\"success\":true,\"response\":{response}}}"))
            }
            Outcome::Health { status, report } => Reply::json(status, report.to_string()),
            Outcome::Metrics { text } => Reply {
                status: 200,
                content_type: ContentType::Prometheus,
                headers: Vec::new(),
                body: text,
            },
            Outcome::Asset(asset) => asset.reply(),
        }
    }

    /// The typed result of an in-process command.
    pub(crate) fn into_result(self) -> CommandResult {
        // The engine writes these texts itself; they are JSON.
        let parse = |text: &str| serde_json::from_str(text).unwrap_or(Value::Null);
        match self {
            Outcome::Handshake {
                client_id,
                resumed,
                queued,
                details,
            } => CommandResult::Handshake {
                client_id,
                resumed,
                queued,
                details,
            },
            Outcome::Poll {
                frames, dropped, ..
            } => CommandResult::Poll {
                messages: frames.iter().map(|frame| parse(frame)).collect(),
                dropped,
            },
            Outcome::History {
                channel,
                epoch,
                offset,
                complete,
                events,
            } => CommandResult::Report {
                report: serde_json::json!({
                    "success": true,
                    "channel": channel,
                    "epoch": epoch,
                    "offset": offset,
                    "complete": complete,
                    "events": events.iter().map(|event| parse(event)).collect::<Vec<Value>>(),
                }),
            },
            Outcome::Sent { response } => CommandResult::Sent {
                response: parse(&response),
            },
            Outcome::Disconnected { .. } => CommandResult::Disconnected,
            Outcome::Delivered { details } => CommandResult::Delivered { details },
            Outcome::Report { report } => CommandResult::Report { report },
            Outcome::Status(report) => CommandResult::Report {
                report: serde_json::to_value(&*report).expect("a status report is plain data"),
            },
            Outcome::Health { report, .. } => CommandResult::Report { report },
            Outcome::Metrics { text } => CommandResult::Metrics { text },
            Outcome::Asset(asset) => {
                let Reply {
                    content_type, body, ..
                } = asset.reply();
                CommandResult::Asset { content_type, body }
            }
        }
    }
}

/// Appends JSON texts separated by commas: the inside of an array.
fn push_joined(body: &mut String, texts: &[Arc<str>]) {
    for (index, text) in texts.iter().enumerate() {
        if index > 0 {
            body.push(',');
        }
        body.push_str(text);
    }
}

impl CommandError {
    /// The refusal as an HTTP reply: its status and `{"success": false, "error": ...}`.
    pub fn to_reply(&self) -> Reply {
        Reply::error(self.http_status(), self.message())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_renders_as_the_http_error_reply_of_its_status() {
        let errors = [
            CommandError::InvalidRequest("what went wrong".into()),
            CommandError::Unauthorized("what went wrong".into()),
            CommandError::Forbidden("what went wrong".into()),
            CommandError::UnknownClient("what went wrong".into()),
            CommandError::Conflict("what went wrong".into()),
            CommandError::Gone("what went wrong".into()),
            CommandError::TooLarge("what went wrong".into()),
            CommandError::RateLimited("what went wrong".into()),
            CommandError::Unavailable("what went wrong".into()),
            CommandError::StoreFull("what went wrong".into()),
            CommandError::Other {
                status: 418,
                message: "what went wrong".into(),
            },
        ];
        let statuses: Vec<u16> = errors.iter().map(CommandError::http_status).collect();
        assert_eq!(
            statuses,
            [400, 401, 403, 404, 409, 410, 413, 429, 503, 507, 418]
        );
        for error in errors {
            let reply = error.to_reply();
            assert_eq!(reply.status, error.http_status());
            assert_eq!(reply, Reply::error(error.http_status(), "what went wrong"));
            assert_eq!(error.to_string(), "what went wrong");
        }
    }

    #[test]
    fn a_poll_renders_its_frames_verbatim_and_types_them_parsed() {
        let poll = || Outcome::Poll {
            frames: vec![
                Arc::from(r#"{"type":"a","n":1}"#),
                Arc::from(r#"{"type":"b"}"#),
            ],
            dropped: 2,
            timestamp: "2026-12-01T00:00:00.000Z".into(),
            superseded: false,
        };
        assert_eq!(
            poll().into_reply().body,
            r#"{"success":true,"messages":[{"type":"a","n":1},{"type":"b"}],"dropped":2,"timestamp":"2026-12-01T00:00:00.000Z"}"#
        );
        assert_eq!(
            poll().into_result(),
            CommandResult::Poll {
                messages: vec![
                    serde_json::json!({"type": "a", "n": 1}),
                    serde_json::json!({"type": "b"})
                ],
                dropped: 2,
            }
        );
    }
}
