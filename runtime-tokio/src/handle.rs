//! The in-process way into the hub: a Rust application publishes typed events and manages
//! sessions without going through HTTP.

use crate::hub::Hub;
use livebridge_core::{Command, CommandError, Event};
use std::sync::Arc;

/// A cloneable handle on one hub.
#[derive(Clone)]
pub struct Handle {
    hub: Arc<Hub>,
}

impl Handle {
    pub(crate) fn new(hub: Arc<Hub>) -> Handle {
        Handle { hub }
    }

    /// Publishes one event of the catalogue on its channel; returns once subscribers have it
    /// queued. A refusal says why, with the status HTTP would give
    /// ([`CommandError::http_status`]).
    pub async fn publish(&self, event: Event) -> Result<(), CommandError> {
        self.publish_json(vec![serde_json::Value::Object(event.to_message())])
            .await
    }

    /// Publishes events given as JSON objects (`{"type": ..., fields}`), all or none.
    pub async fn publish_json(&self, events: Vec<serde_json::Value>) -> Result<(), CommandError> {
        self.hub
            .command(Command::Publish { events })
            .await
            .map(drop)
    }

    /// Runs any engine command as a trusted in-process caller (no Origin, Host, admin-token or
    /// per-address checks: the application is the operator here).
    pub async fn command(
        &self,
        command: Command,
    ) -> Result<livebridge_core::CommandResult, CommandError> {
        self.hub.command(command).await
    }
}
