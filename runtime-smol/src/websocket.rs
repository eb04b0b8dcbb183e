//! One WebSocket connection on async-tungstenite: a reader that reports messages to a [`WsPeer`], and a writer that
//! carries out [`ConnCommand`]s in batches (one flush per batch) and reports what it wrote.
//!
//! The same code serves `/ws` (peer: the hub) and the Autobahn echo example (peer: echo), so
//! the conformance suite tests exactly what clients get.

use async_channel::Receiver;
use async_tungstenite::WebSocketStream;
use async_tungstenite::tungstenite::Message;
use async_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use async_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use async_tungstenite::tungstenite::{Error as WsError, error::CapacityError};
use futures_lite::{AsyncRead, AsyncWrite, StreamExt};
use futures_util::SinkExt;
use livebridge_core::ConnId;
use std::sync::Arc;
use std::time::Duration;
use tracing::debug;

/// What the writer of one connection is told to do.
#[derive(Debug)]
pub enum ConnCommand {
    /// Send a text frame.
    Text(Arc<str>),
    /// Send a binary frame (the echo server only).
    Binary(Vec<u8>),
    /// Send a ping.
    Ping,
    /// Send a close frame and end the connection.
    Close {
        /// RFC 6455 code.
        code: u16,
        /// Reason text.
        reason: String,
    },
}

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

/// Whoever handles a connection's messages.
pub trait WsPeer: Send + Sync {
    /// A message arrived.
    fn on_message(&self, conn: ConnId, message: Incoming);
    /// The writer flushed `frames` text or binary frames.
    fn on_written(&self, conn: ConnId, frames: usize);
    /// The connection ended; `code` is the client's close code if it sent one.
    fn on_closed(&self, conn: ConnId, code: Option<u16>);
}

/// Limits of the WebSocket layer.
#[derive(Clone, Copy, Debug)]
pub struct WsLimits {
    /// Largest message (and frame) accepted from a client.
    pub max_message_bytes: usize,
    /// How long to wait for the client's close frame after sending ours.
    pub close_timeout: Duration,
}

/// The tungstenite configuration for these limits. Buffers are small because most
/// connections are idle most of the time and memory per connection matters more than
/// throughput per connection.
pub fn ws_config(limits: &WsLimits) -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(512)
        .write_buffer_size(16 * 1024)
        .max_message_size(Some(limits.max_message_bytes))
        .max_frame_size(Some(limits.max_message_bytes))
}

/// How a connection ended, seen from the reader or the writer.
enum Ending {
    /// The client closed (with this code, if any) or the socket ended.
    Reader(Option<u16>),
    /// The client broke the protocol or a limit; answer with this close frame if any.
    ReadFailed(Option<CloseFrame>),
    /// The server sent its close frame.
    ServerClosed,
    /// Writing failed; the socket is gone.
    WriteFailed,
}

/// Runs a connection until it ends, then reports the end to `peer`.
pub async fn run_websocket<S>(
    ws: WebSocketStream<S>,
    conn: ConnId,
    commands: Receiver<ConnCommand>,
    peer: Arc<dyn WsPeer>,
    limits: WsLimits,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, mut receiver) = ws.split();
    let reader = async {
        loop {
            match receiver.next().await {
                Some(Ok(Message::Text(text))) => {
                    peer.on_message(conn, Incoming::Text(text.as_str().to_owned()));
                }
                Some(Ok(Message::Binary(bytes))) => {
                    peer.on_message(conn, Incoming::Binary(bytes.to_vec()));
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {
                    peer.on_message(conn, Incoming::Pong)
                }
                Some(Ok(Message::Close(frame))) => {
                    return Ending::Reader(frame.map(|f| u16::from(f.code)));
                }
                Some(Ok(Message::Frame(_))) => {}
                Some(Err(error)) => {
                    let (code, reason) = close_for_error(&error);
                    debug!(%conn, %error, code, "websocket read failed");
                    return Ending::ReadFailed(code.map(|code| CloseFrame {
                        code: CloseCode::from(code),
                        reason: reason.into(),
                    }));
                }
                None => return Ending::Reader(None),
            }
        }
    };
    let writer = async {
        while let Ok(first) = commands.recv().await {
            let mut next = Some(first);
            let mut frames = 0usize;
            let mut close = None;
            while let Some(command) = next.take() {
                let message = match command {
                    ConnCommand::Text(text) => {
                        frames += 1;
                        Message::text(&*text)
                    }
                    ConnCommand::Binary(bytes) => {
                        frames += 1;
                        Message::binary(bytes)
                    }
                    ConnCommand::Ping => Message::Ping(Default::default()),
                    ConnCommand::Close { code, reason } => {
                        close = Some(CloseFrame {
                            code: CloseCode::from(code),
                            reason: reason.into(),
                        });
                        break;
                    }
                };
                if sender.feed(message).await.is_err() {
                    return Ending::WriteFailed;
                }
                // Batch what is already waiting into one flush, within reason.
                if frames < 256 {
                    next = commands.try_recv().ok();
                }
            }
            if sender.flush().await.is_err() {
                return Ending::WriteFailed;
            }
            if frames > 0 {
                peer.on_written(conn, frames);
            }
            if let Some(frame) = close {
                let _ = sender.send(Message::Close(Some(frame))).await;
                return Ending::ServerClosed;
            }
        }
        // The hub dropped this connection without a close: end it quietly.
        let _ = sender.close(None).await;
        Ending::ServerClosed
    };
    let ending = futures_lite::future::or(reader, writer).await;
    let code = match ending {
        Ending::Reader(code) => {
            // tungstenite queued the reply to the client's close frame; send it.
            let _ = futures_lite::future::or(async { sender.flush().await.ok() }, async {
                smol::Timer::after(limits.close_timeout).await;
                None
            })
            .await;
            code
        }
        Ending::ServerClosed => {
            // Wait (briefly) for the client's close frame so the close is clean.
            let wait = async {
                while let Some(Ok(message)) = receiver.next().await {
                    if let Message::Close(frame) = message {
                        return frame.map(|f| u16::from(f.code));
                    }
                }
                None
            };
            futures_lite::future::or(wait, async {
                smol::Timer::after(limits.close_timeout).await;
                None
            })
            .await
        }
        Ending::ReadFailed(frame) => {
            if let Some(frame) = frame {
                // The answers to the messages read before the error are already queued (the
                // peer handles a message as it is read): deliver them, then fail the
                // connection. RFC 6455 wants the echo of a good message that came before a
                // bad frame (Autobahn 3.2, 4.1.3, 5.15...); only then the close frame.
                let close = async {
                    let mut frames = 0usize;
                    while let Ok(command) = commands.try_recv() {
                        let message = match command {
                            ConnCommand::Text(text) => Message::text(&*text),
                            ConnCommand::Binary(bytes) => Message::binary(bytes),
                            ConnCommand::Ping => continue,
                            // Our own close code wins over the one the server meant to send.
                            ConnCommand::Close { .. } => break,
                        };
                        sender.feed(message).await.ok()?;
                        frames += 1;
                    }
                    if frames > 0 {
                        sender.flush().await.ok()?;
                        peer.on_written(conn, frames);
                    }
                    sender.send(Message::Close(Some(frame))).await.ok()
                };
                let _ = futures_lite::future::or(close, async {
                    smol::Timer::after(limits.close_timeout).await;
                    None
                })
                .await;
            }
            None
        }
        Ending::WriteFailed => None,
    };
    peer.on_closed(conn, code);
}

/// The close code to send after a read error, if the socket can still carry one.
fn close_for_error(error: &WsError) -> (Option<u16>, &'static str) {
    match error {
        WsError::Capacity(CapacityError::MessageTooLong { .. }) => {
            (Some(1009), "message too large")
        }
        WsError::Capacity(_) => (Some(1009), "message too large"),
        WsError::Utf8(_) => (Some(1007), "invalid UTF-8"),
        WsError::Protocol(_) => (Some(1002), "protocol error"),
        _ => (None, ""),
    }
}
