//! How a WebSocket ends when its transport fails: the close code and reason for each kind of
//! failure a runtime's WebSocket layer can report, kept here once so that every runtime (and
//! the engine's own frame-size check) closes the same way.

use crate::engine::close_code;
use serde::{Deserialize, Serialize};
use std::fmt;

/// A failure of a WebSocket's transport, as a runtime's WebSocket library reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TransportFailure {
    /// A message or frame larger than the limit (`max_frame_bytes`).
    MessageTooBig,
    /// A text message that is not valid UTF-8.
    InvalidUtf8,
    /// A violation of RFC 6455 (bad opcode, unmasked client frame, reserved bits...).
    ProtocolError,
    /// The connection itself failed (reset, I/O error): no close frame can be sent.
    ConnectionLost,
}

impl TransportFailure {
    /// The close code and reason to send, or `None` when the socket cannot carry a close
    /// frame any more.
    pub fn close_frame(self) -> Option<(u16, &'static str)> {
        match self {
            TransportFailure::MessageTooBig => {
                Some((close_code::MESSAGE_TOO_BIG, "message too large"))
            }
            TransportFailure::InvalidUtf8 => Some((close_code::INVALID_UTF8, "invalid UTF-8")),
            TransportFailure::ProtocolError => Some((close_code::PROTOCOL_ERROR, "protocol error")),
            TransportFailure::ConnectionLost => None,
        }
    }
}

impl fmt::Display for TransportFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.close_frame() {
            Some((code, reason)) => write!(f, "{reason} (close code {code})"),
            None => f.write_str("connection lost"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_failure_has_its_rfc_6455_close_code() {
        use TransportFailure::*;
        let codes: Vec<_> = [MessageTooBig, InvalidUtf8, ProtocolError, ConnectionLost]
            .into_iter()
            .map(|f| f.close_frame().map(|(code, _)| code))
            .collect();
        assert_eq!(codes, [Some(1009), Some(1007), Some(1002), None]);
        // Close reasons must fit a control frame (125 bytes, 2 of them the code).
        for failure in [MessageTooBig, InvalidUtf8, ProtocolError] {
            let (_, reason) = failure.close_frame().unwrap();
            assert!(!reason.is_empty() && reason.len() <= 123);
        }
        assert_eq!(
            MessageTooBig.to_string(),
            "message too large (close code 1009)"
        );
    }
}
