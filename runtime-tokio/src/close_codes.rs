//! Which transport failure a WebSocket read error is; core maps failures to close codes.

use livebridge_core::TransportFailure;
use tungstenite::Error as WsError;

/// The failure behind `error` (axum wraps tungstenite's error; look through the chain).
pub(crate) fn for_read_error(error: &axum::Error) -> TransportFailure {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(current) = source {
        if let Some(ws) = current.downcast_ref::<WsError>() {
            return match ws {
                WsError::Capacity(_) => TransportFailure::MessageTooBig,
                WsError::Utf8(_) => TransportFailure::InvalidUtf8,
                WsError::Protocol(_) => TransportFailure::ProtocolError,
                _ => TransportFailure::ConnectionLost,
            };
        }
        source = current.source();
    }
    TransportFailure::ConnectionLost
}
