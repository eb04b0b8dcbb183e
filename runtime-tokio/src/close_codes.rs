//! The close code a WebSocket gets when what the client sent cannot be read.

use livebridge_core::close_code;
use tungstenite::Error as WsError;
use tungstenite::error::CapacityError;

/// The code and reason to close with after `error`, if the socket can still carry a close.
pub(crate) fn for_read_error(error: &axum::Error) -> Option<(u16, &'static str)> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(current) = source {
        if let Some(ws) = current.downcast_ref::<WsError>() {
            return match ws {
                WsError::Capacity(CapacityError::MessageTooLong { .. }) | WsError::Capacity(_) => {
                    Some((close_code::MESSAGE_TOO_BIG, "message too large"))
                }
                WsError::Utf8(_) => Some((1007, "invalid UTF-8")),
                WsError::Protocol(_) => Some((1002, "protocol error")),
                _ => None,
            };
        }
        source = current.source();
    }
    None
}
