//! The standalone server's accept loop, on hyper directly: `axum::serve` takes hyper's
//! defaults (no header read timeout, a ~400 KB head), and a hub on the user's machine needs
//! the same limits as the smol server's framer — a request head of at most `max_head_bytes`
//! (431 beyond), read within `header_timeout` (the connection is closed after it), which on
//! this runtime also ends idle keep-alive connections. Each connection gets the client's
//! address as axum's `ConnectInfo`, for the engine's per-address handshake budget.

use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use livebridge_runtime_support::linger::LingerSettings;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::pin::pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tower_service::Service;

/// The HTTP/1 limits of the standalone server.
#[derive(Clone, Copy, Debug)]
pub(crate) struct HttpLimits {
    pub(crate) max_head_bytes: usize,
    pub(crate) header_timeout: Duration,
    pub(crate) linger: LingerSettings,
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
            .serve_connection(
                TokioIo::new(LingeringStream::new(stream, limits.linger)),
                service
            )
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

/// The connection's socket as hyper sees it. hyper closes a connection whose request body it
/// did not read (a 413 answered from the declared length, say) by dropping its socket, and a
/// socket closed with unread bytes is reset, destroying the reply before the client reads it.
/// So when this socket is dropped before the client closed its side, it drains what the
/// client still sends in a task of its own, bounded by the linger settings
/// (runtime-support's `linger`). A client that closed first costs nothing.
struct LingeringStream {
    stream: Option<TcpStream>,
    client_closed: bool,
    linger: LingerSettings,
}

impl LingeringStream {
    fn new(stream: TcpStream, linger: LingerSettings) -> Self {
        LingeringStream {
            stream: Some(stream),
            client_closed: false,
            linger,
        }
    }

    fn stream(&mut self) -> &mut TcpStream {
        self.stream.as_mut().expect("taken only when dropped")
    }
}

impl AsyncRead for LingeringStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(self.stream()).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = polled
            && buf.filled().len() == before
            && buf.remaining() > 0
        {
            self.client_closed = true;
        }
        polled
    }
}

impl AsyncWrite for LingeringStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(self.stream()).poll_write(cx, data)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(self.stream()).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(self.stream()).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(self.stream()).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.as_ref().is_some_and(|s| s.is_write_vectored())
    }
}

impl Drop for LingeringStream {
    fn drop(&mut self) {
        let Some(mut stream) = self.stream.take() else {
            return;
        };
        if self.client_closed {
            return;
        }
        // No runtime (the server is shutting down) or no place left: close at once.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let Some(place) = self.linger.try_linger() else {
            return;
        };
        let timeout = self.linger.timeout;
        runtime.spawn(async move {
            let _place = place;
            let _ = tokio::io::AsyncWriteExt::shutdown(&mut stream).await;
            let mut discard = vec![0u8; livebridge_runtime_support::linger::DRAIN_CHUNK_BYTES];
            let drain = async { while let Ok(1..) = stream.read(&mut discard).await {} };
            let _ = tokio::time::timeout(timeout, drain).await;
        });
    }
}
