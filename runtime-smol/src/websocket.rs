//! One WebSocket connection on async-tungstenite: messages read are reported to a [`WsPeer`];
//! [`ConnCommand`]s from the connection's [`Outbox`] are written in batches (one flush per
//! batch) and the written frames reported back.
//!
//! The same code serves `/ws` (peer: the hub) and the Autobahn echo example (peer: echo), so
//! the conformance suite tests exactly what clients get.

use crate::outbox::{ConnCommand, Outbox};
use async_tungstenite::WebSocketStream;
use async_tungstenite::tungstenite::Error as WsError;
use async_tungstenite::tungstenite::Message;
use async_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use async_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use futures_lite::{AsyncRead, AsyncWrite, Stream, StreamExt};
use futures_util::SinkExt;
use livebridge_core::{ConnId, TransportFailure};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;
use tracing::debug;

/// What a command puts on the wire.
enum Outgoing {
    /// A text or binary frame: reported to the peer once written.
    Data(Message),
    /// A ping: written, not reported.
    Ping,
    /// The server's close frame.
    Close(CloseFrame),
}

impl ConnCommand {
    fn into_outgoing(self) -> Outgoing {
        match self {
            ConnCommand::Text(text) => Outgoing::Data(Message::Text(text)),
            ConnCommand::Binary(bytes) => Outgoing::Data(Message::binary(bytes)),
            ConnCommand::Ping => Outgoing::Ping,
            ConnCommand::Close { code, reason, .. } => Outgoing::Close(CloseFrame {
                code: CloseCode::from(code),
                reason: reason.into(),
            }),
        }
    }
}

/// What the peer gets (shared by both runtimes).
pub use livebridge_runtime_support::Incoming;

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
    /// The server closes: send this close frame after what tungstenite still holds, all
    /// within the close timeout.
    ServerClosing(Option<CloseFrame>),
    /// Writing failed; the socket is gone.
    WriteFailed,
}

/// How many messages one wake-up of a connection reads, and how many commands it writes,
/// before it yields to the other connections on the executor thread.
const BATCH_PER_WAKE: usize = 256;

/// Runs a connection until it ends, then reports the end to `peer`.
///
/// One task owns the stream (no `split()`: its shared state and lock cost memory on every
/// idle connection) and drives both directions from one `poll`: it reads only when the
/// socket's read side signalled readiness (a wake-up for a frame to send must not cost a
/// failing `read`), takes commands from the outbox while tungstenite accepts them, and
/// flushes once per batch, reporting the written frames to `peer`.
pub fn run_websocket<S>(
    ws: WebSocketStream<S>,
    conn: ConnId,
    outbox: Arc<Outbox>,
    peer: Arc<dyn WsPeer>,
    limits: WsLimits,
) -> WebSocketConnection<S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let read_ready = Arc::new(ReadReadiness::new());
    WebSocketConnection {
        live: Some(Live {
            ws,
            outbox,
            peer,
            conn,
            read_waker: Waker::from(Arc::clone(&read_ready)),
            read_ready,
            unflushed_frames: 0,
            closing: None,
        }),
        finishing: None,
        limits,
    }
}

/// The future of one connection, written out by hand rather than as an `async fn`: it is
/// what every idle connection keeps in memory, and a generated state machine would hold the
/// stream twice (argument and local) plus room for the close handshake's futures.
pub struct WebSocketConnection<S> {
    live: Option<Live<S>>,
    /// The close handshake (boxed: short and rare), then the report to the peer.
    finishing: Option<(BoxedClose, Arc<dyn WsPeer>, ConnId)>,
    limits: WsLimits,
}

type BoxedClose = Pin<Box<dyn Future<Output = Option<u16>> + Send>>;

impl<S> Future for WebSocketConnection<S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        if let Some(live) = &mut this.live {
            let ending = match live.poll(cx) {
                Poll::Ready(ending) => ending,
                Poll::Pending => return Poll::Pending,
            };
            let Live {
                ws,
                outbox,
                peer,
                conn,
                ..
            } = this.live.take().expect("live phase");
            let close = finish(ws, ending, outbox, Arc::clone(&peer), conn, this.limits);
            this.finishing = Some((Box::pin(close), peer, conn));
        }
        let Some((close, peer, conn)) = &mut this.finishing else {
            return Poll::Ready(());
        };
        let code = match close.as_mut().poll(cx) {
            Poll::Ready(code) => code,
            Poll::Pending => return Poll::Pending,
        };
        peer.on_closed(*conn, code);
        this.finishing = None;
        Poll::Ready(())
    }
}

/// Completes the close handshake the way `ending` calls for; returns the client's close code
/// if it sent one.
async fn finish<S>(
    mut ws: WebSocketStream<S>,
    ending: Ending,
    outbox: Arc<Outbox>,
    peer: Arc<dyn WsPeer>,
    conn: ConnId,
    limits: WsLimits,
) -> Option<u16>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    match ending {
        Ending::Reader(code) => {
            // tungstenite queued the reply to the client's close frame; send it.
            let _ = with_timeout(limits.close_timeout, async { ws.flush().await.ok() }).await;
            code
        }
        Ending::ServerClosing(frame) => {
            // Send our close frame, then wait (briefly) for the client's so the close is clean.
            let close_handshake = async {
                ws.send(Message::Close(frame)).await.ok()?;
                while let Some(Ok(message)) = ws.next().await {
                    if let Message::Close(frame) = message {
                        return frame.map(|f| u16::from(f.code));
                    }
                }
                None
            };
            with_timeout(limits.close_timeout, close_handshake)
                .await
                .flatten()
        }
        Ending::ReadFailed(frame) => {
            if let Some(frame) = frame {
                // The answers to the messages read before the error are already queued (the
                // peer handles a message as it is read): deliver them, then fail the
                // connection. RFC 6455 wants the echo of a good message that came before a
                // bad frame (Autobahn 3.2, 4.1.3, 5.15...); only then the close frame.
                let close = async {
                    let mut frames = 0usize;
                    while let Some(command) = outbox.try_next() {
                        let message = match command.into_outgoing() {
                            Outgoing::Data(message) => message,
                            Outgoing::Ping => continue,
                            // Our own close code wins over the one the server meant to send.
                            Outgoing::Close(_) => break,
                        };
                        ws.feed(message).await.ok()?;
                        frames += 1;
                    }
                    if frames > 0 {
                        ws.flush().await.ok()?;
                        peer.on_written(conn, frames);
                    }
                    ws.send(Message::Close(Some(frame))).await.ok()
                };
                let _ = with_timeout(limits.close_timeout, close).await;
            }
            None
        }
        Ending::WriteFailed => None,
    }
}

/// `future`'s output, or `None` if `limit` passes first.
async fn with_timeout<T>(limit: Duration, future: impl Future<Output = T>) -> Option<T> {
    futures_lite::future::or(async { Some(future.await) }, async {
        smol::Timer::after(limit).await;
        None
    })
    .await
}

/// Whether the socket's read side was woken since the last read that found nothing.
struct ReadReadiness {
    woken: AtomicBool,
    task: Mutex<Option<Waker>>,
}

impl ReadReadiness {
    /// Ready at first: nothing has registered for a read wake-up before the first read.
    fn new() -> Self {
        ReadReadiness {
            woken: AtomicBool::new(true),
            task: Mutex::new(None),
        }
    }

    fn lock_task(&self) -> std::sync::MutexGuard<'_, Option<Waker>> {
        self.task
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Wake for ReadReadiness {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::SeqCst);
        if let Some(task) = self.lock_task().as_ref() {
            task.wake_by_ref();
        }
    }
}

/// The live phase of a connection: both directions, until one of them ends it.
struct Live<S> {
    ws: WebSocketStream<S>,
    outbox: Arc<Outbox>,
    peer: Arc<dyn WsPeer>,
    conn: ConnId,
    /// Handed to tungstenite's reads: it records the read-side wake-up, then wakes the task.
    read_waker: Waker,
    read_ready: Arc<ReadReadiness>,
    /// Text and binary frames given to tungstenite since the last completed flush.
    unflushed_frames: usize,
    /// The server's close (`Some(None)`: the hub ended without a close command), sent once
    /// everything before it is flushed.
    closing: Option<Option<CloseFrame>>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Live<S> {
    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<Ending> {
        // From here until it parks idle, the task alone writes to the socket.
        self.unflushed_frames += self.outbox.begin_turn();
        {
            let mut task = self.read_ready.lock_task();
            if !task.as_ref().is_some_and(|t| t.will_wake(cx.waker())) {
                *task = Some(cx.waker().clone());
            }
        }
        if let Poll::Ready(ending) = self.poll_read(cx) {
            return Poll::Ready(ending);
        }
        self.poll_write(cx)
    }

    fn poll_read(&mut self, cx: &mut Context<'_>) -> Poll<Ending> {
        let mut read_cx = Context::from_waker(&self.read_waker);
        for _ in 0..BATCH_PER_WAKE {
            // Cleared before the read, so a wake-up that races with it is kept.
            if !self.read_ready.woken.swap(false, Ordering::SeqCst) {
                return Poll::Pending;
            }
            let message = match Pin::new(&mut self.ws).poll_next(&mut read_cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(message) => message,
            };
            // More may already be buffered.
            self.read_ready.woken.store(true, Ordering::SeqCst);
            let incoming = match message {
                Some(Ok(Message::Text(text))) => Incoming::Text(text.as_str().to_owned()),
                Some(Ok(Message::Binary(bytes))) => Incoming::Binary(bytes.to_vec()),
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => Incoming::Pong,
                Some(Ok(Message::Close(frame))) => {
                    return Poll::Ready(Ending::Reader(frame.map(|f| u16::from(f.code))));
                }
                Some(Ok(Message::Frame(_))) => continue,
                Some(Err(error)) => {
                    let failure = failure_of(&error);
                    debug!(conn = %self.conn, %error, %failure, "websocket read failed");
                    return Poll::Ready(Ending::ReadFailed(failure.close_frame().map(
                        |(code, reason)| CloseFrame {
                            code: CloseCode::from(code),
                            reason: reason.into(),
                        },
                    )));
                }
                None => return Poll::Ready(Ending::Reader(None)),
            };
            self.peer.on_message(self.conn, incoming);
        }
        // Enough for one turn: come back after the other tasks had theirs.
        cx.waker().wake_by_ref();
        Poll::Pending
    }

    /// Gives tungstenite every queued frame up to the close command (it buffers them even
    /// when the socket is full) and records the close.
    fn buffer_through_close(&mut self) -> Result<(), Ending> {
        while let Some(command) = self.outbox.try_next() {
            let message = match command.into_outgoing() {
                Outgoing::Data(message) => message,
                Outgoing::Ping => continue,
                Outgoing::Close(frame) => {
                    self.closing = Some(Some(frame));
                    return Ok(());
                }
            };
            self.ws
                .start_send_unpin(message)
                .map_err(|_| Ending::WriteFailed)?;
        }
        // Detached without a close command.
        self.closing = Some(None);
        Ok(())
    }

    /// Writes what the outbox holds, in batches with one flush each. Returns `Pending` only
    /// with a wake-up registered for whatever stops it: the outbox (empty), the socket (full)
    /// or the task itself (its batch spent).
    fn poll_write(&mut self, cx: &mut Context<'_>) -> Poll<Ending> {
        let mut taken = 0;
        loop {
            let mut socket_full = false;
            while self.closing.is_none() {
                if taken == BATCH_PER_WAKE {
                    cx.waker().wake_by_ref();
                    break;
                }
                match self.ws.poll_ready_unpin(cx) {
                    Poll::Ready(Ok(())) => {}
                    Poll::Ready(Err(_)) => return Poll::Ready(Ending::WriteFailed),
                    Poll::Pending => {
                        socket_full = true;
                        break;
                    }
                }
                let message = match self.outbox.poll_next(cx) {
                    Poll::Pending => break,
                    Poll::Ready(None) => {
                        self.closing = Some(None);
                        break;
                    }
                    Poll::Ready(Some(command)) => match command.into_outgoing() {
                        Outgoing::Data(message) => {
                            self.unflushed_frames += 1;
                            message
                        }
                        Outgoing::Ping => Message::Ping(Default::default()),
                        Outgoing::Close(frame) => {
                            self.closing = Some(Some(frame));
                            break;
                        }
                    },
                };
                taken += 1;
                if self.ws.start_send_unpin(message).is_err() {
                    return Poll::Ready(Ending::WriteFailed);
                }
            }
            // Flushing with nothing buffered costs no system call, and it also sends what
            // tungstenite queued by itself while reading (the pong to a client's ping).
            let flushed = match self.ws.poll_flush_unpin(cx) {
                Poll::Ready(Ok(())) => true,
                Poll::Ready(Err(_)) => return Poll::Ready(Ending::WriteFailed),
                Poll::Pending => false,
            };
            if flushed && self.unflushed_frames > 0 {
                self.peer.on_written(self.conn, self.unflushed_frames);
                self.unflushed_frames = 0;
            }
            if !flushed && self.closing.is_none() && self.outbox.poll_ending(cx) {
                // The socket is full and the server is closing: hand tungstenite everything
                // up to the close now, and let the close handshake (bounded by the close
                // timeout) write it, so a client that stopped reading cannot keep the
                // connection open.
                if let Err(ending) = self.buffer_through_close() {
                    return Poll::Ready(ending);
                }
            }
            if let Some(frame) = self.closing.take() {
                return Poll::Ready(Ending::ServerClosing(frame));
            }
            if !flushed {
                return Poll::Pending;
            }
            if taken == BATCH_PER_WAKE {
                return Poll::Pending;
            }
            if !socket_full {
                // The outbox is empty and everything is flushed: until its next turn, the
                // task leaves text frames to whoever queues them.
                self.outbox.park_idle();
                return Poll::Pending;
            }
            // A full socket stopped the batch before the outbox was asked, so nothing would
            // wake this task for the commands still queued; the flush has just drained the
            // socket (which also dropped its write registration): go round again.
        }
    }
}

/// What kind of transport failure a read error is; the close code for it is core's.
fn failure_of(error: &WsError) -> TransportFailure {
    match error {
        WsError::Capacity(_) => TransportFailure::MessageTooBig,
        WsError::Utf8(_) => TransportFailure::InvalidUtf8,
        WsError::Protocol(_) => TransportFailure::ProtocolError,
        _ => TransportFailure::ConnectionLost,
    }
}

#[cfg(test)]
mod failure_tests {
    use super::*;
    use async_tungstenite::tungstenite::error::{CapacityError, ProtocolError};

    #[test]
    fn read_errors_map_to_cores_transport_failures() {
        let too_long = WsError::Capacity(CapacityError::MessageTooLong {
            size: 2,
            max_size: 1,
        });
        assert_eq!(failure_of(&too_long), TransportFailure::MessageTooBig);
        assert_eq!(
            failure_of(&WsError::Utf8("bad".into())),
            TransportFailure::InvalidUtf8
        );
        let unmasked = WsError::Protocol(ProtocolError::UnmaskedFrameFromClient);
        assert_eq!(failure_of(&unmasked), TransportFailure::ProtocolError);
        assert_eq!(
            failure_of(&WsError::ConnectionClosed),
            TransportFailure::ConnectionLost
        );
    }
}
