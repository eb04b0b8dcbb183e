//! The in-process way into the hub: a Rust application publishes typed events and manages
//! sessions without going through HTTP.

use crate::hub::Hub;
use livebridge_core::{Command, Event};
use std::fmt;
use std::sync::Arc;

/// A cloneable handle on one hub.
#[derive(Clone)]
pub struct Handle {
    hub: Arc<Hub>,
}

/// Why a publish was not accepted, with the HTTP status the same request would get.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublishError {
    /// The status `POST /api/events` would answer (400 invalid event, 503 full...).
    pub status: u16,
    /// The engine's explanation.
    pub message: String,
}

impl fmt::Display for PublishError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "publish refused ({}): {}", self.status, self.message)
    }
}

impl std::error::Error for PublishError {}

impl Handle {
    pub(crate) fn new(hub: Arc<Hub>) -> Handle {
        Handle { hub }
    }

    /// Publishes one event of the catalogue on its channel; returns once subscribers have it
    /// queued.
    pub async fn publish(&self, event: Event) -> Result<(), PublishError> {
        self.publish_json(vec![serde_json::Value::Object(event.to_message())])
            .await
    }

    /// Publishes events given as JSON objects (`{"type": ..., fields}`), all or none.
    pub async fn publish_json(&self, events: Vec<serde_json::Value>) -> Result<(), PublishError> {
        let reply = self.hub.command(Command::Publish { events }).await;
        if reply.status == 200 {
            return Ok(());
        }
        let message = serde_json::from_str::<serde_json::Value>(&reply.body)
            .ok()
            .and_then(|body| body["error"].as_str().map(str::to_string))
            .unwrap_or(reply.body);
        Err(PublishError {
            status: reply.status,
            message,
        })
    }
}
