//! The socket of an upgraded WebSocket connection: async-io's handle, read and written
//! through its per-direction readiness.
//!
//! smol's `TcpStream` waits for readiness through futures it keeps inside itself (two of
//! ~56 bytes, so a stream is ~120 bytes held in every connection's task), and each wait it
//! starts takes a waker slot in the reactor's source, whose slab keeps 96 bytes once used. A
//! WebSocket connection has one task doing both its reads and its writes, and async-io keeps
//! one waker per direction for exactly that case, so the connection needs only the handle: one
//! pointer, nothing registered beside it. The HTTP phase before the upgrade keeps smol's
//! stream, whose clones the framer and async-h1 share.
//!
//! When the connection's outbox writes frames to the socket directly, a frame the socket
//! took only part of is finished before anything the task writes (see `outbox.rs`).

use crate::outbox::Outbox;
use futures_lite::{AsyncRead, AsyncWrite};
use smol::Async;
use smol::net::TcpStream;
use std::io::{self, IoSlice};
use std::net::Shutdown;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

/// A connected TCP socket for one task's reads and writes (not for two tasks at once:
/// async-io keeps a single waker per direction).
#[derive(Debug)]
pub struct WsSocket {
    socket: Arc<Async<std::net::TcpStream>>,
    /// The outbox that may write to the socket directly, whose unfinished frame goes first.
    outbox: Option<Arc<Outbox>>,
}

impl From<TcpStream> for WsSocket {
    fn from(stream: TcpStream) -> Self {
        WsSocket {
            socket: stream.into(),
            outbox: None,
        }
    }
}

impl WsSocket {
    /// The socket of `stream`, which `outbox` may write text frames to directly.
    pub fn shared_with(stream: TcpStream, outbox: Arc<Outbox>) -> Self {
        let socket: Arc<Async<std::net::TcpStream>> = stream.into();
        outbox.attach_socket(Arc::clone(&socket));
        WsSocket {
            socket,
            outbox: Some(outbox),
        }
    }

    /// Writes the rest of the outbox's unfinished frame, if any.
    fn poll_unsent(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &self.outbox {
            Some(outbox) => outbox.poll_write_unsent(cx, &self.socket),
            None => Poll::Ready(Ok(())),
        }
    }
}

impl AsyncRead for WsSocket {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut &*self.socket).poll_read(cx, buf)
    }
}

impl AsyncWrite for WsSocket {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        ready!(self.poll_unsent(cx))?;
        Pin::new(&mut &*self.socket).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        ready!(self.poll_unsent(cx))?;
        Pin::new(&mut &*self.socket).poll_write_vectored(cx, bufs)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_unsent(cx))?;
        Pin::new(&mut &*self.socket).poll_flush(cx)
    }

    /// Shuts the write side down, as smol's `TcpStream` does (async-io's own close only
    /// flushes): the client sees the end of the stream after the close frame.
    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_unsent(cx))?;
        Poll::Ready(self.socket.get_ref().shutdown(Shutdown::Write))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_lite::{AsyncReadExt, AsyncWriteExt};
    use smol::net::TcpListener;

    #[test]
    fn reads_and_writes_wait_for_readiness_and_close_ends_the_peers_stream() {
        let test = async {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let mut client = TcpStream::connect(listener.local_addr().unwrap())
                .await
                .unwrap();
            let (accepted, _) = listener.accept().await.unwrap();
            let mut socket = WsSocket::from(accepted);
            let reader = smol::spawn(async move {
                let mut buf = [0u8; 5];
                socket.read_exact(&mut buf).await.unwrap();
                socket.write_all(b"pong").await.unwrap();
                socket.close().await.unwrap();
                buf
            });
            client.write_all(b"ping!").await.unwrap();
            let mut answer = Vec::new();
            client.read_to_end(&mut answer).await.unwrap();
            assert_eq!(answer, b"pong", "then the end of the stream");
            assert_eq!(&reader.await, b"ping!");
        };
        smol::block_on(futures_lite::future::or(test, async {
            smol::Timer::after(std::time::Duration::from_secs(30)).await;
            panic!("waited 30 s for the ping, the pong and the end of the stream")
        }));
    }
}
