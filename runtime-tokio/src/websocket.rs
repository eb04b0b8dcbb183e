//! One WebSocket connection on axum: messages read go to a [`Peer`] (the hub, or the
//! Autobahn echo example); the outbox's frames are written in batches (one flush per batch)
//! and reported written; the server's close is sent and its handshake bounded by the close
//! timeout.

use crate::outbox::{Close, ConnCommand, Outbox};
use axum::extract::ws::{CloseFrame, Message, WebSocket};
use futures_util::SinkExt;
use livebridge_core::ConnId;
use std::sync::Arc;
use std::time::Duration;
use tracing::debug;

/// What the peer gets (shared by both runtimes).
pub use livebridge_runtime_support::Incoming;

/// Whoever handles a connection's messages.
pub trait Peer: Send + Sync + 'static {
    /// A message arrived.
    fn on_message(&self, conn: ConnId, message: Incoming);
    /// `frames` text or binary frames were flushed to the socket.
    fn on_written(&self, conn: ConnId, frames: usize);
    /// The connection ended; `code` is the client's close code if it sent one.
    fn on_closed(&self, conn: ConnId, code: Option<u16>);
}

/// How one connection ended.
enum Ending {
    /// The client closed (with this code, if any) or the socket ended.
    ClientClosed(Option<u16>),
    /// The client broke the protocol or a limit: close with this code and reason.
    ReadFailed(Option<(u16, &'static str)>),
    /// The server closes.
    ServerClosing(Close),
    /// Writing failed; the socket is gone.
    WriteFailed,
}

/// Serves a connection the engine accepted until it ends, then tells the hub.
pub async fn serve(
    mut socket: WebSocket,
    conn: ConnId,
    outbox: Arc<Outbox>,
    peer: Arc<dyn Peer>,
    close_timeout: Duration,
) {
    let ending = live(&mut socket, conn, &outbox, &*peer).await;
    let code = match ending {
        Ending::ClientClosed(code) => {
            // tungstenite queued its answer to the client's close; write it (and let the
            // stream end) before dropping the socket, or the client sees an unclean close.
            let _ = tokio::time::timeout(close_timeout, async {
                let _ = socket.flush().await;
                while let Some(Ok(_)) = socket.recv().await {}
            })
            .await;
            code
        }
        Ending::WriteFailed => None,
        Ending::ReadFailed(close) => {
            if let Some((code, reason)) = close {
                let frame = CloseFrame {
                    code,
                    reason: reason.into(),
                };
                let _ =
                    tokio::time::timeout(close_timeout, socket.send(Message::Close(Some(frame))))
                        .await;
            }
            None
        }
        Ending::ServerClosing(close) => {
            let frame = CloseFrame {
                code: close.code,
                reason: close.reason.into(),
            };
            // Everything before the close was written; now the close handshake, bounded so a
            // client that stopped reading cannot hold the connection.
            tokio::time::timeout(close_timeout, async {
                if socket.send(Message::Close(Some(frame))).await.is_err() {
                    return None;
                }
                loop {
                    match socket.recv().await {
                        Some(Ok(Message::Close(frame))) => return frame.map(|f| f.code),
                        Some(Ok(_)) => continue,
                        _ => return None,
                    }
                }
            })
            .await
            .unwrap_or(None)
        }
    };
    peer.on_closed(conn, code);
}

async fn live(socket: &mut WebSocket, conn: ConnId, outbox: &Outbox, peer: &dyn Peer) -> Ending {
    let mut batch = Vec::new();
    loop {
        let close = outbox.take(&mut batch);
        if !batch.is_empty() {
            let written = tokio::select! {
                written = write_batch(socket, &mut batch) => written,
                // The socket is full and the server is closing: stop waiting for it.
                () = wait_for_close(outbox), if close.is_none() => {
                    batch.clear();
                    continue;
                }
            };
            match written {
                Some(frames) if frames > 0 => peer.on_written(conn, frames),
                Some(_) => {}
                None => return Ending::WriteFailed,
            }
        }
        if let Some(close) = close {
            return Ending::ServerClosing(close);
        }
        tokio::select! {
            () = outbox.wait() => {}
            message = socket.recv() => match message {
                Some(Ok(Message::Text(text))) => {
                    peer.on_message(conn, Incoming::Text(text.as_str().to_string()));
                }
                Some(Ok(Message::Binary(bytes))) => {
                    peer.on_message(conn, Incoming::Binary(bytes.to_vec()));
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {
                    peer.on_message(conn, Incoming::Pong);
                }
                Some(Ok(Message::Close(frame))) => {
                    return Ending::ClientClosed(frame.map(|f| f.code));
                }
                Some(Err(error)) => {
                    let close = crate::close_codes::for_read_error(&error).close_frame();
                    debug!(%conn, %error, "websocket read failed");
                    return Ending::ReadFailed(close);
                }
                None => return Ending::ClientClosed(None),
            },
        }
    }
}

/// Writes a batch with one flush; the number of data frames written, or `None` if the
/// socket failed.
async fn write_batch(socket: &mut WebSocket, batch: &mut Vec<ConnCommand>) -> Option<usize> {
    let mut frames = 0;
    for command in batch.drain(..) {
        let message = match command {
            ConnCommand::Text(text) => {
                frames += 1;
                Message::Text((&*text).into())
            }
            ConnCommand::Binary(bytes) => {
                frames += 1;
                Message::Binary(bytes.into())
            }
            ConnCommand::Ping => Message::Ping(Default::default()),
        };
        socket.feed(message).await.ok()?;
    }
    socket.flush().await.ok()?;
    Some(frames)
}

async fn wait_for_close(outbox: &Outbox) {
    while !outbox.closing() {
        outbox.wait().await;
    }
}
