//! A message a runtime's WebSocket code read from a client, as both runtimes hand it to their
//! hub (or to an echo peer), and the engine input it becomes.

use livebridge_core::{ConnId, Input};

/// A message from the client.
#[derive(Debug)]
pub enum Incoming {
    /// A text message.
    Text(String),
    /// A binary message.
    Binary(Vec<u8>),
    /// A ping or pong: the client is alive.
    Pong,
}

impl Incoming {
    /// The engine's input for this message on `conn` (a binary message is only reported by
    /// its size: the protocol is JSON text).
    pub fn into_input(self, conn: ConnId) -> Input {
        match self {
            Incoming::Text(text) => Input::WsText { conn, text },
            Incoming::Binary(bytes) => Input::WsBinary {
                conn,
                len: bytes.len(),
            },
            Incoming::Pong => Input::WsPong { conn },
        }
    }
}
