//! A connection whose socket is full must not lose its wake-up: when the socket drains during
//! the flush that follows a blocked write, the frames still in the outbox must go out (or the
//! task must be registered to be woken for them). And a client that never reads again must
//! not keep its connection alive past the close timeout once the server closes it. Driven
//! over a scripted socket, so the interleaving is exact.

use async_tungstenite::WebSocketStream;
use async_tungstenite::tungstenite::protocol::Role;
use futures_lite::{AsyncRead, AsyncWrite};
use livebridge_core::ConnId;
use livebridge_smol::outbox::{ConnCommand, Handoff, Outbox};
use livebridge_smol::websocket::{Incoming, WsLimits, WsPeer, run_websocket, ws_config};
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

/// A socket that refuses its first `refused` writes and accepts every later one. As with
/// async-net, a write that succeeds forgets the waker of the refused one.
struct ScriptedSocket {
    attempts: usize,
    refused: usize,
    written: Arc<Mutex<Vec<u8>>>,
}

impl AsyncRead for ScriptedSocket {
    fn poll_read(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        _buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        // The client never sends anything, so nothing on the read side wakes the task.
        Poll::Pending
    }
}

impl AsyncWrite for ScriptedSocket {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.attempts += 1;
        if self.attempts <= self.refused {
            return Poll::Pending;
        }
        self.written.lock().unwrap().extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_close(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[derive(Default)]
struct CountingPeer {
    written: AtomicUsize,
    closed: AtomicUsize,
}

impl WsPeer for CountingPeer {
    fn on_message(&self, _: ConnId, _: Incoming) {}
    fn on_written(&self, _: ConnId, frames: usize) {
        self.written.fetch_add(frames, Ordering::SeqCst);
    }
    fn on_closed(&self, _: ConnId, _: Option<u16>) {
        self.closed.fetch_add(1, Ordering::SeqCst);
    }
}

#[derive(Default)]
struct CountingWaker(AtomicUsize);

impl Wake for CountingWaker {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

const LIMITS: WsLimits = WsLimits {
    max_message_bytes: 1 << 20,
    close_timeout: Duration::from_millis(100),
};

/// A frame larger than tungstenite's write buffer, so writing it meets the full socket.
fn large_frame() -> ConnCommand {
    ConnCommand::Text("x".repeat(20 * 1024).into())
}

/// A connection over a socket that refuses its first `refused` writes, with its outbox, the
/// peer that counts what it is told, and the bytes the socket accepted.
#[allow(clippy::type_complexity)]
fn connection(
    refused: usize,
) -> (
    Pin<Box<impl Future<Output = ()>>>,
    Arc<Outbox>,
    Arc<CountingPeer>,
    Arc<Mutex<Vec<u8>>>,
) {
    let written = Arc::new(Mutex::new(Vec::new()));
    let socket = ScriptedSocket {
        attempts: 0,
        refused,
        written: Arc::clone(&written),
    };
    let ws = futures_lite::future::block_on(WebSocketStream::from_raw_socket(
        socket,
        Role::Server,
        Some(ws_config(&LIMITS)),
    ));
    let outbox = Outbox::new();
    let peer = Arc::new(CountingPeer::default());
    let connection = Box::pin(run_websocket(
        ws,
        ConnId(1),
        Arc::clone(&outbox),
        peer.clone(),
        LIMITS,
    ));
    (connection, outbox, peer, written)
}

/// Polls once by hand; returns how often the task was woken afterwards, so far.
fn poll_once(connection: &mut Pin<Box<impl Future<Output = ()>>>) -> Arc<CountingWaker> {
    let wakes = Arc::new(CountingWaker::default());
    let waker = Waker::from(Arc::clone(&wakes));
    assert!(
        connection
            .as_mut()
            .poll(&mut Context::from_waker(&waker))
            .is_pending()
    );
    wakes
}

/// Whether the connection ends on its own (its close timeout is 100 ms; 30 s is the bound).
fn ends(connection: Pin<Box<impl Future<Output = ()>>>) -> bool {
    smol::block_on(futures_lite::future::or(
        async {
            connection.await;
            true
        },
        async {
            smol::Timer::after(Duration::from_secs(30)).await;
            false
        },
    ))
}

#[test]
fn frames_queued_behind_a_full_socket_go_out_once_it_drains() {
    let (mut connection, outbox, peer, written) = connection(2);
    assert!(matches!(outbox.push(large_frame()), Handoff::Nothing));
    assert!(matches!(
        outbox.push(ConnCommand::Text("second".into())),
        Handoff::Nothing
    ));
    let wakes = poll_once(&mut connection);

    let second_went_out = peer.written.load(Ordering::SeqCst) == 2
        && written
            .lock()
            .unwrap()
            .windows(6)
            .any(|window| window == b"second");
    let woke_itself = wakes.0.load(Ordering::SeqCst) > 0;
    assert!(
        second_went_out || woke_itself,
        "the second frame is stuck in the outbox and nothing will wake the connection"
    );
    // And the hub's next command finds the task waiting for it.
    assert!(
        matches!(
            outbox.push(ConnCommand::Text("third".into())),
            Handoff::Wake(_)
        ),
        "a later command must hand back the waiting task's waker"
    );
}

#[test]
fn a_server_close_ends_the_connection_even_if_the_client_never_reads_again() {
    let (connection, outbox, peer, _) = connection(usize::MAX);
    let _ = outbox.push(large_frame());
    let _ = outbox.push(ConnCommand::Close {
        abandon_unwritten: false,
        code: 1008,
        reason: "pong timeout".to_string(),
    });
    assert!(
        ends(connection),
        "the connection outlived its close timeout"
    );
    assert_eq!(
        peer.closed.load(Ordering::SeqCst),
        1,
        "the end is reported once"
    );
}

#[test]
fn a_close_that_arrives_while_the_socket_is_full_wakes_the_connection_and_ends_it() {
    let (mut connection, outbox, peer, _) = connection(usize::MAX);
    let _ = outbox.push(large_frame());
    poll_once(&mut connection);
    // The hub closes the connection now, as after a missed pong or a full queue.
    let woken = outbox.push(ConnCommand::Close {
        abandon_unwritten: false,
        code: 1008,
        reason: "client too slow".to_string(),
    });
    assert!(
        matches!(woken, Handoff::Wake(_)),
        "the close must wake the connection"
    );
    assert!(
        ends(connection),
        "the connection outlived its close timeout"
    );
    assert_eq!(peer.closed.load(Ordering::SeqCst), 1);
}
