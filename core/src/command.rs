//! The typed answer to an [`crate::Input::Command`]: what each command produced
//! ([`CommandResult`]) or why it was refused ([`CommandError`], with the HTTP status an HTTP
//! caller would have got as a method). Commands are answered with
//! [`crate::Output::CommandDone`], so an in-process caller never parses a JSON reply.

use crate::ids::ClientId;
use crate::output::{ContentType, Reply};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::fmt;

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

    fn from_status(status: u16, message: String) -> Self {
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

/// Which command a pending request runs, to type its answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CommandKind {
    Handshake,
    Poll,
    Send,
    Disconnect,
    Delivery,
    Metrics,
    Asset,
    Report,
}

impl CommandKind {
    pub(crate) fn of(command: &crate::input::Command) -> Self {
        use crate::input::Command;
        match command {
            Command::Handshake { .. } => CommandKind::Handshake,
            Command::Poll { .. } => CommandKind::Poll,
            Command::Send { .. } => CommandKind::Send,
            Command::Disconnect { .. } => CommandKind::Disconnect,
            Command::Broadcast { .. } | Command::SendTo { .. } | Command::Publish { .. } => {
                CommandKind::Delivery
            }
            Command::Metrics => CommandKind::Metrics,
            Command::Asset { .. } => CommandKind::Asset,
            _ => CommandKind::Report,
        }
    }

    /// Types the engine's answer. The engine's parts still answer in HTTP terms; this is the
    /// one place that reads those answers back, so callers of commands never have to.
    pub(crate) fn result(self, reply: Reply) -> Result<CommandResult, CommandError> {
        let json = || serde_json::from_str::<Value>(&reply.body).unwrap_or(Value::Null);
        if !(200..300).contains(&reply.status) {
            let message = json()["error"]
                .as_str()
                .map_or_else(|| reply.body.clone(), str::to_string);
            return Err(CommandError::from_status(reply.status, message));
        }
        Ok(match self {
            CommandKind::Handshake => {
                let details = json();
                CommandResult::Handshake {
                    client_id: details["client_id"]
                        .as_str()
                        .and_then(|id| id.parse().ok())
                        .expect("a handshake answer names its session"),
                    resumed: details["resumed"] == true,
                    queued: details["queued"]
                        .as_u64()
                        .and_then(|n| usize::try_from(n).ok())
                        .unwrap_or(0),
                    details,
                }
            }
            CommandKind::Poll => {
                let mut body = json();
                CommandResult::Poll {
                    messages: match body["messages"].take() {
                        Value::Array(messages) => messages,
                        _ => Vec::new(),
                    },
                    dropped: body["dropped"].as_u64().unwrap_or(0),
                }
            }
            CommandKind::Send => CommandResult::Sent {
                response: json()["response"].take(),
            },
            CommandKind::Disconnect => CommandResult::Disconnected,
            CommandKind::Delivery => CommandResult::Delivered { details: json() },
            CommandKind::Metrics => CommandResult::Metrics { text: reply.body },
            CommandKind::Asset => CommandResult::Asset {
                content_type: reply.content_type,
                body: reply.body,
            },
            CommandKind::Report => CommandResult::Report { report: json() },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_error_keeps_its_http_status_and_text() {
        for status in [400, 401, 403, 404, 409, 410, 413, 429, 503, 507, 418] {
            let error = CommandKind::Report
                .result(Reply::error(status, "what went wrong"))
                .unwrap_err();
            assert_eq!(error.http_status(), status, "{error:?}");
            assert_eq!(error.to_string(), "what went wrong");
        }
    }
}
