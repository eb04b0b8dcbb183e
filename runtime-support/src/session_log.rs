//! The log lines of session events (`Output::Session`), the same from every runtime, so an
//! operator reads one format whichever runtime serves.

use livebridge_core::SessionEvent;
use tracing::info;

/// Logs one session event at `info`.
pub fn log_session_event(event: &SessionEvent) {
    match event {
        SessionEvent::Opened {
            client_id,
            client_type,
            transport,
        } => info!(%client_id, client_type, transport = transport.as_str(), "session opened"),
        SessionEvent::Resumed {
            client_id,
            transport,
        } => info!(%client_id, transport = transport.as_str(), "session resumed"),
        SessionEvent::Detached { client_id } => {
            info!(%client_id, "websocket detached; session kept")
        }
        SessionEvent::Closed {
            client_id,
            reason,
            undelivered,
            unreported_drops,
        } => info!(%client_id, ?reason, undelivered, unreported_drops, "session closed"),
        SessionEvent::UnwrittenAfterEnd {
            client_id,
            frames,
            unreported_drops,
        } => info!(
            %client_id,
            frames,
            unreported_drops,
            "frames unwritten when the ended session's socket closed"
        ),
    }
}
