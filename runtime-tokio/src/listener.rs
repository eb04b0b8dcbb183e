//! The standalone server's accept loop, on hyper directly: `axum::serve` takes hyper's
//! defaults (no header read timeout, a ~400 KB head), and a hub on the user's machine needs
//! the same limits as the smol server's framer — a request head of at most `max_head_bytes`
//! (431 beyond), read within `header_timeout` (the connection is closed after it), which on
//! this runtime also ends idle keep-alive connections. Each connection gets the client's
//! address as axum's `ConnectInfo`, for the engine's per-address handshake budget.

use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::future::Future;
use std::net::SocketAddr;
use std::pin::pin;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tower_service::Service;

/// The HTTP/1 limits of the standalone server.
#[derive(Clone, Copy, Debug)]
pub(crate) struct HttpLimits {
    pub(crate) max_head_bytes: usize,
    pub(crate) header_timeout: Duration,
}

/// Accepts connections and serves `router` on them until `shutdown` completes; then stops
/// accepting, asks every connection to finish its current request, and waits for them.
pub(crate) async fn serve(
    listener: TcpListener,
    router: axum::Router,
    limits: HttpLimits,
    shutdown: impl Future<Output = ()>,
) {
    let (closing, closing_seen) = watch::channel(false);
    let mut shutdown = pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let closing = closing_seen.clone();
                    tokio::spawn(serve_connection(stream, peer, router.clone(), limits, closing));
                }
                Err(error) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(%error, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    let _ = closing.send(true);
    drop(closing_seen);
    // Every connection holds a receiver until it has finished.
    closing.closed().await;
}

/// One connection: requests (and the WebSocket upgrade) through hyper's HTTP/1 server with
/// the limits. When the server closes, the request in progress is finished (a poll's answer
/// is written) and the connection ends; it holds `closing` until then, so the server waits
/// for it. An upgraded connection is no longer hyper's: the engine closed its WebSocket.
async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    router: axum::Router,
    limits: HttpLimits,
    mut closing: watch::Receiver<bool>,
) {
    let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
        request.extensions_mut().insert(ConnectInfo(peer));
        let mut router = router.clone();
        async move { router.call(request).await }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_header_size(limits.max_head_bytes);
    let mut connection = pin!(
        builder
            .serve_connection(TokioIo::new(stream), service)
            .with_upgrades()
    );
    let ended = tokio::select! {
        ended = connection.as_mut() => ended,
        // The flag only ever turns true (or the server is gone): any change is the close.
        _ = closing.changed() => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(error) = ended {
        tracing::debug!(%peer, %error, "connection ended");
    }
}
