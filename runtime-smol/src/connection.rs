//! One accepted TCP connection: HTTP requests through the framer and async-h1, or a WebSocket
//! after an upgrade, with every refusal answered in JSON before the connection closes.

use crate::framer::{FramedIo, Head, HttpLimits, Stop};
use crate::outbox::Outbox;
use crate::socket::WsSocket;
use crate::websocket::{WebSocketConnection, WsLimits, WsPeer, run_websocket, ws_config};
use async_tungstenite::WebSocketStream;
use async_tungstenite::tungstenite::handshake::server::create_response;
use async_tungstenite::tungstenite::http;
use async_tungstenite::tungstenite::protocol::Role;
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use futures_util::FutureExt;
use futures_util::future::OptionFuture;
use http_types::{Response, StatusCode};
use livebridge_core::{ConnId, HttpRequest, Reply, RequestBody, TransportEvent};
use livebridge_runtime_support::linger::LingerSettings;
use smol::Async;
use smol::net::TcpStream;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tracing::debug;

/// A boxed future, as the [`Backend`] trait returns them.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What a connection talks to: the hub, or the Autobahn echo service.
pub trait Backend: WsPeer + Send + Sync + 'static {
    /// Answers an HTTP request; `None` when `peer_gone` completed first.
    fn http<'a>(
        &'a self,
        http: HttpRequest,
        peer_gone: BoxFuture<'a, ()>,
    ) -> BoxFuture<'a, Option<Reply>>;

    /// Accepts or refuses a WebSocket upgrade; an accepted connection gets its id and the
    /// outbox its commands arrive in.
    fn open_websocket(&self, upgrade: HttpRequest) -> Result<(ConnId, Arc<Outbox>), Reply>;

    /// Something the transport did on its own (a refusal, an idle close, a panic), for the
    /// metrics.
    fn transport_event(&self, event: TransportEvent);

    /// Cluster mode: whether `key` (an `X-Livebridge-Cluster-Key` header) is the cluster's,
    /// so the request was forwarded by another node and its `X-Livebridge-Peer` is the
    /// client's address.
    fn trusts_forwarded(&self, _key: &str) -> bool {
        false
    }
}

/// Limits of one connection.
#[derive(Clone, Copy, Debug)]
pub struct ConnectionLimits {
    /// HTTP limits.
    pub http: HttpLimits,
    /// WebSocket limits.
    pub ws: WsLimits,
    /// How long, and how many at once, connections drain after an early reply.
    pub linger: LingerSettings,
}

/// Serves one connection until it closes.
///
/// The HTTP phase (async-h1's state, the framer and its buffer, the upgrade handshake) is
/// boxed and freed when it ends, and the two phases are chained with combinators rather than
/// an `async fn`, whose state machine would keep room for the WebSocket twice: a connection
/// that becomes a long-lived WebSocket keeps only the WebSocket's own state.
pub fn serve_connection<B: Backend>(
    stream: TcpStream,
    backend: Arc<B>,
    limits: ConnectionLimits,
) -> impl Future<Output = ()> + Send + 'static {
    serve_connection_watched(stream, backend, limits, None)
}

/// [`serve_connection`], setting `upgraded` once the connection has become a WebSocket (so
/// whoever watches it knows an HTTP answer can no longer be written on it).
pub fn serve_connection_watched<B: Backend>(
    stream: TcpStream,
    backend: Arc<B>,
    limits: ConnectionLimits,
    upgraded: Option<Arc<AtomicBool>>,
) -> impl Future<Output = ()> + Send + 'static {
    Box::pin(http_phase(stream, backend, limits))
        .then(move |websocket| {
            if let (Some(upgraded), Some(_)) = (upgraded, &websocket) {
                upgraded.store(true, Ordering::SeqCst);
            }
            OptionFuture::from(websocket)
        })
        .map(|_| ())
}

/// Serves HTTP until the connection closes or is upgraded; returns the accepted WebSocket,
/// ready to run.
async fn http_phase<B: Backend>(
    stream: TcpStream,
    backend: Arc<B>,
    limits: ConnectionLimits,
) -> Option<WebSocketConnection<WsSocket>> {
    let backend = &backend;
    // Without TCP_NODELAY every small response waits ~40 ms for the peer's delayed ACK.
    if let Err(error) = stream.set_nodelay(true) {
        debug!(%error, "could not set TCP_NODELAY");
    }
    let peer = stream.peer_addr().ok().map(|addr| addr.ip().to_string());
    let (served, stop, buffered) = serve_http(&stream, backend, limits.http, &peer).await;
    let mut stream = stream;
    match (stop, served) {
        // The framer's own refusals come first: async-h1 fails too when the framer stopped
        // it in the middle of a request.
        (Stop::Malformed(status, text), _) => {
            debug!(status, %text, "refused a malformed request");
            backend.transport_event(TransportEvent::RequestRefused { status });
            write_reply(&mut stream, &Reply::error(status, &text), limits.linger).await;
            None
        }
        (Stop::Idle, _) => {
            debug!("closed an idle connection");
            backend.transport_event(TransportEvent::IdleConnectionClosed);
            None
        }
        (stop, Err(error)) => {
            // async-h1 refused the request before answering it (or the socket failed, in
            // which case this write fails too).
            if !matches!(stop, Stop::Eof) || !buffered.is_empty() {
                debug!(%error, "async-h1 refused a request");
                backend.transport_event(TransportEvent::RequestRefused { status: 400 });
            }
            let reply = Reply::error(400, &format!("malformed request: {error}"));
            write_reply(&mut stream, &reply, limits.linger).await;
            None
        }
        (stop, Ok(())) => after_http(stream, stop, buffered, peer, backend, limits).await,
    }
}

/// What follows the HTTP requests of a connection: nothing, the answer to a body the framer
/// refused, or the WebSocket an upgrade asked for.
async fn after_http<B: Backend>(
    mut stream: TcpStream,
    stop: Stop,
    buffered: Vec<u8>,
    peer: Option<String>,
    backend: &Arc<B>,
    limits: ConnectionLimits,
) -> Option<WebSocketConnection<WsSocket>> {
    match stop {
        Stop::Eof | Stop::Idle | Stop::Malformed(..) => {}
        Stop::BodyRefused(head, declared) => {
            let body = match declared {
                Some(declared) => RequestBody::TooLarge { declared },
                None => RequestBody::LengthRequired,
            };
            let request = to_request(head, body, peer);
            let never: BoxFuture<'_, ()> = Box::pin(futures_lite::future::pending());
            if let Some(reply) = backend.http(request, never).await {
                write_reply(&mut stream, &reply, limits.linger).await;
            }
        }
        Stop::Upgrade(head) => {
            let (ws, conn, outbox) =
                accept_upgrade(stream, buffered, head, peer, backend, &limits).await?;
            let peer: Arc<dyn WsPeer> = backend.clone();
            return Some(run_websocket(ws, conn, outbox, peer, limits.ws));
        }
    }
    None
}

/// Serves HTTP requests until the connection closes or stops being HTTP; returns how it
/// stopped and the bytes the framer still held. `S` is the connection's stream; cloning it
/// must share the connection (a TCP stream, or a stream in memory when fuzzing).
pub(crate) async fn serve_http<B, S>(
    stream: &S,
    backend: &Arc<B>,
    limits: HttpLimits,
    peer: &Option<String>,
) -> (http_types::Result<()>, Stop, Vec<u8>)
where
    B: Backend,
    S: futures_lite::AsyncRead + futures_lite::AsyncWrite + Clone + Unpin + Send + Sync + 'static,
{
    let io = FramedIo::new(stream.clone(), limits);
    let endpoint = {
        let backend = backend.clone();
        let io = io.clone();
        let peer = peer.clone();
        move |request: http_types::Request| {
            let backend = backend.clone();
            let io = io.clone();
            let peer = peer.clone();
            async move { answer(request, &*backend, &io, peer).await }
        }
    };
    let served = serve_requests(io.clone(), endpoint).await;
    let (stop, buffered) = io.finish();
    (served, stop, buffered)
}

/// async-h1's request loop (`async_h1::accept`) without its header timeout: that timer runs
/// on async-io 1's reactor, which async-h1 starts on a thread of its own at the first request
/// — a second reactor beside smol's, and one that panics if it is first needed when the
/// process is out of file descriptors. The framer enforces the timeouts instead. Upgrades
/// never reach here (the framer stops at them).
async fn serve_requests<IO, F, Fut>(io: IO, endpoint: F) -> http_types::Result<()>
where
    IO: futures_lite::AsyncRead + futures_lite::AsyncWrite + Clone + Send + Sync + Unpin + 'static,
    F: Fn(http_types::Request) -> Fut,
    Fut: Future<Output = http_types::Result<Response>>,
{
    let is_close = |value: Option<&http_types::headers::HeaderValues>| {
        value.is_some_and(|v| v.as_str().eq_ignore_ascii_case("close"))
    };
    let mut encoded = Vec::new();
    loop {
        let Some((request, mut body)) = async_h1::server::decode(io.clone()).await? else {
            return Ok(());
        };
        let mut close = is_close(request.header("connection"));
        let method = request.method();
        let response = endpoint(request).await?;
        close |= is_close(response.header("connection"));
        // The encoder hands out the head and the body in separate reads, and copying them
        // to the socket as they come costs two `send()`s per response — on loopback each one
        // also wakes the client. One buffer, one write.
        encoded.clear();
        async_h1::server::Encoder::new(response, method)
            .read_to_end(&mut encoded)
            .await?;
        io.clone().write_all(&encoded).await?;
        if encoded.capacity() > KEPT_RESPONSE_BUFFER_BYTES {
            encoded = Vec::new();
        }
        // A body the endpoint did not read must not be taken for the next request.
        let mut unread = [0u8; 256];
        while body.read(&mut unread).await? > 0 {}
        if close {
            return Ok(());
        }
    }
}

/// The encoded-response buffer a keep-alive connection keeps between requests; a larger one
/// (a big history page) is freed after its response.
const KEPT_RESPONSE_BUFFER_BYTES: usize = 16 * 1024;

/// The upgrade handshake: the engine's decision, then the `101` response, then the
/// tungstenite stream over the bytes that followed the request.
async fn accept_upgrade<B: Backend>(
    mut stream: TcpStream,
    buffered: Vec<u8>,
    head: Head,
    peer: Option<String>,
    backend: &Arc<B>,
    limits: &ConnectionLimits,
) -> Option<(WebSocketStream<WsSocket>, ConnId, Arc<Outbox>)> {
    // tungstenite's own server handshake refuses bytes that follow the request ("junk after
    // request"), so a frame sent in the same packet would be lost. Validate and answer the
    // handshake with tungstenite's helpers, then hand it the bytes that followed.
    let (response, head_length) = match handshake_response(&buffered) {
        Ok(accepted) => accepted,
        Err(problem) => {
            let reply = Reply::error(400, &format!("WebSocket handshake failed: {problem}"));
            write_reply(&mut stream, &reply, limits.linger).await;
            return None;
        }
    };
    let (conn, outbox) =
        match backend.open_websocket(to_request(head, RequestBody::default(), peer)) {
            Ok(accepted) => accepted,
            Err(reply) => {
                debug!(status = reply.status, error = %reply.body, "WebSocket upgrade refused");
                write_reply(&mut stream, &reply, limits.linger).await;
                return None;
            }
        };
    if let Err(error) = stream.write_all(response.as_bytes()).await {
        debug!(%conn, %error, "could not answer the upgrade");
        backend.on_closed(conn, None);
        return None;
    }
    let rest = buffered[head_length..].to_vec();
    let socket = WsSocket::shared_with(stream, Arc::clone(&outbox));
    let ws = WebSocketStream::from_partially_read(
        socket,
        rest,
        Role::Server,
        Some(ws_config(&limits.ws)),
    )
    .await;
    Some((ws, conn, outbox))
}

/// Validates an upgrade request with tungstenite and returns the `101` response to send and
/// the length of the request head.
fn handshake_response(buffered: &[u8]) -> Result<(String, usize), String> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut parsed = httparse::Request::new(&mut headers);
    let head_length = match parsed.parse(buffered) {
        Ok(httparse::Status::Complete(length)) => length,
        _ => return Err("malformed upgrade request".to_string()),
    };
    let mut request = http::Request::builder()
        .method(parsed.method.unwrap_or("GET"))
        .uri(parsed.path.unwrap_or("/"))
        .version(http::Version::HTTP_11);
    for header in parsed.headers.iter() {
        request = request.header(header.name, header.value);
    }
    let request = request.body(()).map_err(|e| e.to_string())?;
    let response = create_response(&request).map_err(|e| e.to_string())?;
    let mut text = String::from("HTTP/1.1 101 Switching Protocols\r\n");
    for (name, value) in response.headers() {
        text.push_str(name.as_str());
        text.push_str(": ");
        text.push_str(value.to_str().map_err(|e| e.to_string())?);
        text.push_str("\r\n");
    }
    text.push_str("\r\n");
    Ok((text, head_length))
}

/// The engine's view of a request whose head the framer parsed.
pub(crate) fn to_request(head: Head, body: RequestBody, peer: Option<String>) -> HttpRequest {
    HttpRequest {
        method: head.method,
        target: head.target,
        host: head.host,
        origin: head.origin,
        body,
        authorization: head.authorization,
        peer,
        forwarded: false,
    }
}

/// The async-h1 endpoint: hands the request to the backend and converts the reply.
async fn answer<B, S>(
    mut request: http_types::Request,
    backend: &B,
    io: &FramedIo<S>,
    peer: Option<String>,
) -> http_types::Result<Response>
where
    B: Backend,
    S: futures_lite::AsyncRead + futures_lite::AsyncWrite + Clone + Unpin + Send + Sync,
{
    let url = request.url();
    let target = match url.query() {
        Some(query) => format!("{}?{}", url.path(), query),
        None => url.path().to_string(),
    };
    let header = |name: &str| request.header(name).map(|v| v.as_str().to_string());
    let host = header("host");
    let origin = header("origin");
    let authorization = header("authorization");
    let forwarded =
        header("x-livebridge-cluster-key").is_some_and(|key| backend.trusts_forwarded(&key));
    let peer = match forwarded {
        true => header("x-livebridge-peer").or(peer),
        false => peer,
    };
    let method = request.method().to_string();
    let body = request.body_bytes().await?;
    debug!(%method, %target, "request");
    let http = HttpRequest {
        method,
        target,
        host,
        origin,
        body: RequestBody::Complete(body),
        authorization,
        peer,
        forwarded,
    };
    let peer_gone: BoxFuture<'_, ()> = Box::pin(io.peer_closed());
    let Some(reply) = backend.http(http, peer_gone).await else {
        return Err(http_types::Error::from_str(
            StatusCode::BadRequest,
            "client went away",
        ));
    };
    if reply.status >= 400 {
        debug!(status = reply.status, error = %reply.body, "request refused");
    }
    let status = StatusCode::try_from(reply.status).unwrap_or(StatusCode::InternalServerError);
    let mut response = Response::new(status);
    response.set_body(reply.body);
    response.insert_header("content-type", reply.content_type.as_str());
    for (name, value) in &reply.headers {
        response.insert_header(name.as_str(), value.as_str());
    }
    Ok(response)
}

/// Writes a reply outside async-h1 (refusals before or instead of a request) and closes,
/// lingering first: such a reply is usually sent before the request's body was read, and a
/// close with unread bytes would reset the connection before the client reads the reply
/// (runtime-support's `linger`).
pub async fn write_reply(stream: &mut TcpStream, reply: &Reply, linger: LingerSettings) {
    let _ = stream.write_all(reply_text(reply).as_bytes()).await;
    let _ = stream.flush().await;
    let _ = stream.shutdown(std::net::Shutdown::Write);
    drain_before_close(stream, linger).await;
}

/// Reads and discards what the client still sends until it closes, for at most the linger
/// timeout (and only while fewer than the cap of connections linger).
async fn drain_before_close(stream: &mut TcpStream, linger: LingerSettings) {
    let Some(_place) = linger.try_linger() else {
        return;
    };
    // On the heap and only here: the HTTP phase's future would otherwise carry the buffer
    // for every connection.
    let mut discard = vec![0u8; livebridge_runtime_support::linger::DRAIN_CHUNK_BYTES];
    let drain = async { while let Ok(1..) = stream.read(&mut discard).await {} };
    let time_up = async {
        smol::Timer::after(linger.timeout).await;
    };
    futures_lite::future::or(drain, time_up).await;
}

/// [`write_reply`] on the bare async-io socket, which is all a connection task keeps to
/// answer after a panic (one pointer, where a `TcpStream` clone takes ~120 bytes for its
/// readiness futures).
pub async fn write_reply_on(socket: &Async<std::net::TcpStream>, reply: &Reply) {
    let mut writer = socket;
    let _ = writer.write_all(reply_text(reply).as_bytes()).await;
    let _ = writer.flush().await;
    let _ = socket.get_ref().shutdown(std::net::Shutdown::Write);
}

/// A complete `connection: close` response for `reply`.
fn reply_text(reply: &Reply) -> String {
    let reason = StatusCode::try_from(reply.status)
        .map(|s| s.canonical_reason())
        .unwrap_or("Error");
    let mut head = format!(
        "HTTP/1.1 {} {reason}\r\ncontent-type: {}\r\ncontent-length: {}\r\nconnection: close\r\n",
        reply.status,
        reply.content_type.as_str(),
        reply.body.len()
    );
    for (name, value) in &reply.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    head.push_str(&reply.body);
    head
}
