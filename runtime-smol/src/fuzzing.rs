//! Body of the raw-HTTP fuzz target in `fuzz/`: arbitrary bytes are the bytes of one
//! connection. They go (1) through the framer's head parsing and on into the engine, checking
//! that every request is answered in JSON, and (2) through the whole request path a
//! connection takes — the framer, async-h1's own parser and http-types — over a stream in
//! memory, where nothing may panic. It lives here so that `cargo test` replays the committed
//! corpus on stable Rust (`tests/fuzz_corpus.rs`).

use crate::connection::{Backend, BoxFuture, serve_http, to_request};
use crate::framer::{HttpLimits, Parsed, Stop, parse_head};
use crate::outbox::Outbox;
use crate::websocket::{Incoming, WsPeer};
use futures_lite::{AsyncRead, AsyncWrite};
use livebridge_core::{
    Config, ConnId, Engine, HttpRequest, Input, Output, Reply, RequestBody, RequestId, SeededIds,
    Time, TransportEvent,
};
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

fn limits() -> HttpLimits {
    HttpLimits {
        max_head_bytes: 2048,
        max_body_bytes: 1024,
        header_timeout: Duration::from_secs(10),
        keep_alive_timeout: Duration::from_secs(10),
    }
}

/// Feeds `data` as the bytes of one connection; panics when a request goes unanswered, an
/// answer is not JSON, or anything on the connection's request path panics.
pub fn http_bytes(data: &[u8]) {
    through_the_engine(data);
    through_the_connection(data);
}

fn through_the_engine(data: &[u8]) {
    let limits = limits();
    let config = Config {
        max_body_bytes: limits.max_body_bytes,
        ..Config::default()
    };
    let mut engine = Engine::new(config, SeededIds::new(2), Time::ZERO, 0);
    let mut buf = data.to_vec();
    let mut start = 0usize;
    for round in 0u64..64 {
        while buf[start..].starts_with(b"\n") || buf[start..].starts_with(b"\r\n") {
            start += if buf[start] == b'\r' { 2 } else { 1 };
        }
        let request = RequestId(round);
        let (input, last) = match parse_head(&mut buf[start..], &limits) {
            Parsed::Partial => return,
            Parsed::Request {
                head, length, last, ..
            } => {
                let Some(end) = usize::try_from(length)
                    .ok()
                    .and_then(|l| start.checked_add(l))
                else {
                    return;
                };
                if end > buf.len() {
                    return;
                }
                let body_length = usize::try_from(head.content_length.unwrap_or(0)).unwrap_or(0);
                let body = buf[end - body_length..end].to_vec();
                start = end;
                let http = to_request(head, RequestBody::Complete(body), None);
                (Input::Http { request, http }, last)
            }
            Parsed::Stopped(Stop::Upgrade(head)) => {
                let upgrade = to_request(head, RequestBody::default(), None);
                // The decision is synchronous: accepted or refused, never left pending.
                let _ = engine.open_websocket(Time::from_millis(round), ConnId(1), &upgrade);
                while engine.poll_output().is_some() {}
                return;
            }
            Parsed::Stopped(Stop::BodyRefused(head, declared)) => {
                let body = match declared {
                    Some(declared) => RequestBody::TooLarge { declared },
                    None => RequestBody::LengthRequired,
                };
                let http = to_request(head, body, None);
                (Input::Http { request, http }, true)
            }
            Parsed::Stopped(Stop::Malformed(status, _)) => {
                assert!(status == 400 || status == 431);
                return;
            }
            Parsed::Stopped(Stop::Eof | Stop::Idle) => return,
        };
        // Only a long poll may be answered later; everything else is answered at once.
        let may_wait = matches!(&input, Input::Http { http, .. }
            if http.target.starts_with("/ws/poll") && http.target.contains("wait="));
        engine.handle_input(Time::from_millis(round), input);
        let mut answered = false;
        while let Some(output) = engine.poll_output() {
            match output {
                Output::Reply { request: r, reply } if r == request => {
                    answered = true;
                    if !reply.body.is_empty()
                        && reply.content_type == livebridge_core::ContentType::Json
                    {
                        serde_json::from_str::<serde_json::Value>(&reply.body).expect("JSON reply");
                    }
                }
                _ => {}
            }
        }
        assert!(answered || may_wait, "request {round} went unanswered");
        if last {
            return;
        }
    }
}

/// Serves `data` as a connection's bytes with the real request path (framer, async-h1,
/// http-types) and an engine behind it; the answers are collected and dropped.
fn through_the_connection(data: &[u8]) {
    let stream = MemoryStream(Arc::new(Mutex::new(MemoryState {
        input: data.to_vec(),
        read: 0,
        output: Vec::new(),
    })));
    let config = Config {
        max_body_bytes: limits().max_body_bytes,
        ..Config::default()
    };
    let backend = Arc::new(EngineBackend {
        engine: Mutex::new((Engine::new(config, SeededIds::new(3), Time::ZERO, 0), 0)),
    });
    let (_served, _stop, _rest) = smol::block_on(serve_http(&stream, &backend, limits(), &None));
}

/// A connection in memory: reads take the input (then end), writes are collected. Clones
/// share it, as clones of a TCP stream share the socket.
#[derive(Clone)]
struct MemoryStream(Arc<Mutex<MemoryState>>);

struct MemoryState {
    input: Vec<u8>,
    read: usize,
    output: Vec<u8>,
}

impl AsyncRead for MemoryStream {
    fn poll_read(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let mut state = self.0.lock().expect("memory stream");
        let start = state.read;
        let n = buf.len().min(state.input.len() - start);
        buf[..n].copy_from_slice(&state.input[start..start + n]);
        state.read += n;
        Poll::Ready(Ok(n))
    }
}

impl AsyncWrite for MemoryStream {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let mut state = self.0.lock().expect("memory stream");
        // Enough to see the answers; beyond it they are dropped so memory stays bounded.
        if state.output.len() < 1 << 20 {
            state.output.extend_from_slice(buf);
        }
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_close(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// The engine answering requests at once: a long poll that would wait is answered with a
/// placeholder, since a connection in memory has no time to wait in.
struct EngineBackend {
    engine: Mutex<(Engine, u64)>,
}

impl WsPeer for EngineBackend {
    fn on_message(&self, _conn: ConnId, _message: Incoming) {}
    fn on_written(&self, _conn: ConnId, _frames: usize) {}
    fn on_closed(&self, _conn: ConnId, _code: Option<u16>) {}
}

impl Backend for EngineBackend {
    fn http<'a>(
        &'a self,
        http: HttpRequest,
        _peer_gone: BoxFuture<'a, ()>,
    ) -> BoxFuture<'a, Option<Reply>> {
        let mut guard = self.engine.lock().expect("engine");
        let (engine, next) = &mut *guard;
        *next += 1;
        let request = RequestId(*next);
        engine.handle_input(Time::from_millis(*next), Input::Http { request, http });
        let mut answer = None;
        while let Some(output) = engine.poll_output() {
            if let Output::Reply { request: r, reply } = output
                && r == request
            {
                answer = Some(reply);
            }
        }
        let reply = answer.unwrap_or_else(|| Reply::json(200, "{}".to_string()));
        Box::pin(async move { Some(reply) })
    }

    fn open_websocket(&self, _upgrade: HttpRequest) -> Result<(ConnId, Arc<Outbox>), Reply> {
        Err(Reply::error(400, "no WebSockets in memory"))
    }

    fn transport_event(&self, _event: TransportEvent) {}
}
