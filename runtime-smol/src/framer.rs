//! The byte stream async-h1 reads from: it owns the connection's read buffer and hands
//! async-h1 one request at a time.
//!
//! async-h1 2.3 starts a fresh `BufReader` for every request, so bytes read past the end of a
//! request (a pipelined request, or a WebSocket frame sent with the upgrade) would be lost
//! with it. The framer parses each request head itself (httparse) to learn where the request
//! ends, and never lets a read cross that boundary. At the boundary it also:
//!
//! - stops at a WebSocket upgrade, leaving the upgrade request and anything after it in the
//!   buffer for async-tungstenite to read;
//! - rewrites an `HTTP/1.0` request line to 1.1 (which async-h1 refuses) and closes the
//!   connection after the answer, as HTTP/1.0 expects;
//! - answers `Expect: 100-continue` itself and hides the header, so async-h1 does not start
//!   its global executor to do it;
//! - stops at bodies it will not read (chunked, or over the size limit), at malformed or
//!   oversized heads, and at header values that are not visible ASCII (which http-types, under
//!   async-h1, would panic on), so the caller answers them and closes;
//! - closes a connection that sends nothing for the keep-alive timeout, or takes longer than
//!   the header timeout to send a whole request, so idle sockets cannot pile up.

use futures_lite::{AsyncRead, AsyncWrite};
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

/// Limits of the HTTP layer.
#[derive(Clone, Copy, Debug)]
pub struct HttpLimits {
    /// Largest request head (request line and headers).
    pub max_head_bytes: usize,
    /// Largest request body.
    pub max_body_bytes: usize,
    /// Longest time from a request's first byte (or from the connection's start, for the
    /// first request) to its last: a slower client gets 408 and is disconnected.
    pub header_timeout: Duration,
    /// Longest time a connection may sit idle between requests before it is closed.
    pub keep_alive_timeout: Duration,
}

/// The head of a request, as far as the caller needs it.
#[derive(Clone, Debug, Default)]
pub struct Head {
    /// Method.
    pub method: String,
    /// Path and query.
    pub target: String,
    /// `Host` header.
    pub host: Option<String>,
    /// `Origin` header.
    pub origin: Option<String>,
    /// `Authorization` header.
    pub authorization: Option<String>,
    /// `Content-Length`, when given.
    pub content_length: Option<u64>,
}

/// Why the framer stopped handing out requests.
#[derive(Debug)]
pub enum Stop {
    /// The client closed the connection (or it failed).
    Eof,
    /// A WebSocket upgrade request; it is still in the buffer.
    Upgrade(Head),
    /// A body that is chunked (`None`) or larger than the limit (`Some(length)`).
    BodyRefused(Head, Option<u64>),
    /// A request that cannot be handed to async-h1; answer 400 (or 408, 431) with this text.
    Malformed(u16, String),
    /// The connection sat idle past the keep-alive timeout (or sent nothing at all within the
    /// header timeout): close it without an answer.
    Idle,
}

const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

struct Framer<S> {
    stream: S,
    limits: HttpLimits,
    buf: Vec<u8>,
    /// Start of the bytes not yet handed out.
    start: usize,
    /// Bytes of the current request not yet handed out.
    remaining: u64,
    /// Hand out no request after the current one (HTTP/1.0, `Connection: close`).
    last_request: bool,
    stop: Option<Stop>,
    /// A `100 Continue` to send before handing out the body.
    pending_write: &'static [u8],
    /// When the current request's deadline runs out, and why.
    deadline: Option<(Instant, Wait)>,
    /// The connection's one timer, kept across requests, and the instant it is set for
    /// (`None` once it fired).
    timer: Option<(smol::Timer, Option<Instant>)>,
    /// Requests handed out so far.
    served: u64,
}

/// What a connection is waiting for when its deadline runs out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Wait {
    /// The next request, with nothing of it received yet.
    Idle,
    /// The rest of a request whose first bytes arrived.
    Request,
}

/// The connection as async-h1 sees it: reads go through the framer, writes straight to the
/// socket. Cloning shares the framer. `S` is a TCP stream (or, for fuzzing, a stream in
/// memory); cloning it must share the connection.
#[derive(Clone)]
pub struct FramedIo<S> {
    framer: Arc<Mutex<Framer<S>>>,
    stream: S,
}

impl<S> FramedIo<S>
where
    S: AsyncRead + AsyncWrite + Clone + Unpin,
{
    /// Wraps a freshly accepted connection.
    pub fn new(stream: S, limits: HttpLimits) -> Self {
        FramedIo {
            framer: Arc::new(Mutex::new(Framer {
                stream: stream.clone(),
                limits,
                buf: Vec::new(),
                start: 0,
                remaining: 0,
                last_request: false,
                stop: None,
                pending_write: &[],
                deadline: None,
                timer: None,
                served: 0,
            })),
            stream,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Framer<S>> {
        self.framer.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Why the framer stopped, and the bytes it still holds (an upgrade request and what
    /// followed it). Call after async-h1 has returned.
    pub fn finish(&self) -> (Stop, Vec<u8>) {
        let mut framer = self.lock();
        let start = framer.start;
        let rest = framer.buf.split_off(start);
        (framer.stop.take().unwrap_or(Stop::Eof), rest)
    }

    /// Completes when the client closes the connection. Meant to be raced against a long
    /// poll: bytes that arrive meanwhile (a pipelined request) are kept for later.
    pub async fn peer_closed(&self) {
        futures_lite::future::poll_fn(|cx| self.lock().poll_peer_closed(cx)).await
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Framer<S> {
    fn poll_peer_closed(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        loop {
            if matches!(self.stop, Some(Stop::Eof)) {
                return Poll::Ready(());
            }
            if self.buf.len() - self.start >= self.limits.max_head_bytes + 4096 {
                // Enough read ahead; stop watching rather than buffer without bound.
                return Poll::Pending;
            }
            match ready!(self.poll_fill(cx)) {
                Ok(0) | Err(_) => {
                    self.stop = Some(Stop::Eof);
                    return Poll::Ready(());
                }
                Ok(_) => {}
            }
        }
    }

    /// Reads more bytes from the socket into the buffer.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        if self.start > 0 && self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        }
        let old = self.buf.len();
        self.buf.resize(old + 4096, 0);
        let result = Pin::new(&mut self.stream).poll_read(cx, &mut self.buf[old..]);
        let read = match &result {
            Poll::Ready(Ok(n)) => *n,
            _ => 0,
        };
        self.buf.truncate(old + read);
        result
    }

    fn poll_read(&mut self, cx: &mut Context<'_>, out: &mut [u8]) -> Poll<io::Result<usize>> {
        loop {
            while !self.pending_write.is_empty() {
                let n = ready!(Pin::new(&mut self.stream).poll_write(cx, self.pending_write))?;
                self.pending_write = &self.pending_write[n..];
            }
            if self.remaining > 0 {
                let buffered = self.buf.len() - self.start;
                let want = usize::try_from(self.remaining)
                    .unwrap_or(usize::MAX)
                    .min(out.len());
                if buffered > 0 {
                    let n = want.min(buffered);
                    out[..n].copy_from_slice(&self.buf[self.start..self.start + n]);
                    self.start += n;
                    self.handed_out(n);
                    return Poll::Ready(Ok(n));
                }
                // Nothing buffered: read the body straight into async-h1's buffer.
                if let Poll::Ready(stop) = self.poll_deadline(cx) {
                    self.stop = Some(stop);
                    return Poll::Ready(Ok(0));
                }
                let n = ready!(Pin::new(&mut self.stream).poll_read(cx, &mut out[..want]))?;
                if n == 0 {
                    self.stop = Some(Stop::Eof);
                }
                self.handed_out(n);
                return Poll::Ready(Ok(n));
            }
            if self.stop.is_some() || self.last_request {
                return Poll::Ready(Ok(0));
            }
            match self.parse_head() {
                Parsed::Request { length, .. } => {
                    self.remaining = length;
                    self.served += 1;
                }
                Parsed::Stopped(stop) => {
                    self.stop = Some(stop);
                    return Poll::Ready(Ok(0));
                }
                Parsed::Partial => {
                    if self.buf.len() - self.start > self.limits.max_head_bytes {
                        let text = format!(
                            "request head larger than {} bytes",
                            self.limits.max_head_bytes
                        );
                        self.stop = Some(Stop::Malformed(431, text));
                        return Poll::Ready(Ok(0));
                    }
                    if let Poll::Ready(stop) = self.poll_deadline(cx) {
                        self.stop = Some(stop);
                        return Poll::Ready(Ok(0));
                    }
                    match ready!(self.poll_fill(cx)) {
                        Ok(0) | Err(_) => {
                            self.stop = Some(Stop::Eof);
                            return Poll::Ready(Ok(0));
                        }
                        Ok(_) => {}
                    }
                }
            }
        }
    }

    /// `n` more bytes of the current request went to async-h1. Once all of it has, the wait
    /// for the next request starts afresh.
    fn handed_out(&mut self, n: usize) {
        self.remaining -= n as u64;
        if self.remaining == 0 {
            // The timer stays set: the next deadline is later, and a timer that fires early is
            // only set again (see `poll_deadline`).
            self.deadline = None;
        }
    }

    /// Whether the wait for (the rest of) a request has outlasted its timeout; if not, the
    /// task is woken when it does. An idle connection waits for `keep_alive_timeout`, a
    /// request that has begun (or a new connection's first) for `header_timeout`.
    fn poll_deadline(&mut self, cx: &mut Context<'_>) -> Poll<Stop> {
        let now = Instant::now();
        let idle = self.start == self.buf.len() && self.remaining == 0 && self.served > 0;
        let wait = if idle { Wait::Idle } else { Wait::Request };
        let (at, _) = *self.deadline.get_or_insert_with(|| {
            let limit = match wait {
                Wait::Idle => self.limits.keep_alive_timeout,
                Wait::Request => self.limits.header_timeout,
            };
            (now + limit, wait)
        });
        // An idle wait becomes a request wait when the first bytes arrive.
        let at = match self.deadline {
            Some((_, Wait::Idle)) if wait == Wait::Request => {
                let at = now + self.limits.header_timeout;
                self.deadline = Some((at, Wait::Request));
                at
            }
            _ => at,
        };
        if now < at && !self.poll_timer(cx, at) {
            return Poll::Pending;
        }
        Poll::Ready(match self.deadline.take() {
            Some((_, Wait::Request)) if self.start < self.buf.len() || self.remaining > 0 => {
                Stop::Malformed(
                    408,
                    format!(
                        "the request did not arrive within {}",
                        humantime::format_duration(self.limits.header_timeout)
                    ),
                )
            }
            _ => Stop::Idle,
        })
    }

    /// Whether `at` has passed; if not, the timer wakes the task by then.
    ///
    /// Setting a timer costs a system call (async-io wakes its reactor to take it), so the
    /// connection keeps one and moves it only when a deadline comes before the instant it is
    /// set for. A keep-alive connection's deadlines only move later, request after request:
    /// its timer fires at the first one, finds it was moved, and is set once more.
    fn poll_timer(&mut self, cx: &mut Context<'_>, at: Instant) -> bool {
        let (timer, set_for) = self
            .timer
            .get_or_insert_with(|| (smol::Timer::at(at), Some(at)));
        loop {
            if set_for.is_none_or(|set| set > at) {
                timer.set_at(at);
                *set_for = Some(at);
            }
            if Pin::new(&mut *timer).poll(cx).is_pending() {
                return false;
            }
            *set_for = None;
            if Instant::now() >= at {
                return true;
            }
        }
    }

    /// Parses the head at the start of the buffer and decides what to do with the request.
    fn parse_head(&mut self) -> Parsed {
        // Empty lines before a request are allowed (RFC 9112 §2.2), in any mix of CRLF and LF.
        while self.buf[self.start..].starts_with(b"\r\n")
            || self.buf[self.start..].starts_with(b"\n")
        {
            self.start += if self.buf[self.start] == b'\r' { 2 } else { 1 };
        }
        let parsed = parse_head(&mut self.buf[self.start..], &self.limits);
        if let Parsed::Request {
            last,
            expect_continue,
            ..
        } = &parsed
        {
            self.last_request = *last;
            if *expect_continue {
                self.pending_write = CONTINUE;
            }
        }
        parsed
    }
}

/// Decides what to do with the request whose head starts `data`: hand `length` bytes to
/// async-h1 (after same-length edits in place: an HTTP/1.0 request line becomes 1.1, an
/// `Expect: 100-continue` header is renamed), wait for more bytes, or stop. A pure function,
/// so the fuzz target can drive it with arbitrary bytes.
pub fn parse_head(data: &mut [u8], limits: &HttpLimits) -> Parsed {
    let view: &[u8] = data;
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut request = httparse::Request::new(&mut headers);
    let head_length = match request.parse(view) {
        Ok(httparse::Status::Partial) => return Parsed::Partial,
        Ok(httparse::Status::Complete(length)) if length > limits.max_head_bytes => {
            let text = format!("request head larger than {} bytes", limits.max_head_bytes);
            return Parsed::Stopped(Stop::Malformed(431, text));
        }
        Ok(httparse::Status::Complete(length)) => length,
        Err(error) => {
            return Parsed::Stopped(Stop::Malformed(400, format!("malformed request: {error}")));
        }
    };
    let mut head = Head {
        method: request.method.unwrap_or_default().to_string(),
        target: request.path.unwrap_or_default().to_string(),
        ..Head::default()
    };
    let http10 = request.version == Some(0);
    let mut upgrade_websocket = false;
    let mut connection_upgrade = false;
    let mut close = false;
    let mut chunked = false;
    let mut other_encoding = false;
    let mut expect_at = None;
    let mut lengths: Vec<&[u8]> = Vec::new();
    for header in request.headers.iter() {
        let name = header.name;
        // Refused before async-h1 and http-types, which panics on such bytes, see them.
        if let Err(text) = livebridge_core::http_api::check_header_value(name, header.value) {
            return Parsed::Stopped(Stop::Malformed(400, text));
        }
        let value = String::from_utf8_lossy(header.value);
        if name.eq_ignore_ascii_case("host") {
            head.host = Some(value.trim().to_string());
        } else if name.eq_ignore_ascii_case("origin") {
            head.origin = Some(value.trim().to_string());
        } else if name.eq_ignore_ascii_case("authorization") {
            head.authorization = Some(value.trim().to_string());
        } else if name.eq_ignore_ascii_case("content-length") {
            lengths.push(header.value);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            if value.trim().eq_ignore_ascii_case("chunked") {
                chunked = true;
            } else {
                other_encoding = true;
            }
        } else if name.eq_ignore_ascii_case("connection") {
            for token in value.split(',') {
                let token = token.trim();
                close |= token.eq_ignore_ascii_case("close");
                connection_upgrade |= token.eq_ignore_ascii_case("upgrade");
            }
        } else if name.eq_ignore_ascii_case("upgrade") {
            upgrade_websocket |= value
                .split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("websocket"));
        } else if name.eq_ignore_ascii_case("expect")
            && value.trim().eq_ignore_ascii_case("100-continue")
        {
            expect_at = Some(name.as_ptr() as usize - view.as_ptr() as usize);
        }
    }
    // httparse skips empty lines before the request line itself; so does this.
    let line_start = view
        .iter()
        .position(|&b| b != b'\r' && b != b'\n')
        .unwrap_or(view.len());
    let request_line_end = view[line_start..]
        .iter()
        .position(|&b| b == b'\n')
        .map_or(line_start, |end| line_start + end);
    if head.host.is_none() {
        // async-h1 cannot take it; answered in the engine's words.
        let text = livebridge_core::MISSING_HOST.to_string();
        return Parsed::Stopped(Stop::Malformed(400, text));
    }
    if !head.target.starts_with('/') {
        let text = format!("request target must be a path: {:?}", head.target);
        return Parsed::Stopped(Stop::Malformed(400, text));
    }
    if upgrade_websocket && connection_upgrade {
        return Parsed::Stopped(Stop::Upgrade(head));
    }
    if other_encoding {
        let text = "unsupported Transfer-Encoding (only chunked is understood)".to_string();
        return Parsed::Stopped(Stop::Malformed(400, text));
    }
    if chunked {
        return Parsed::Stopped(Stop::BodyRefused(head, None));
    }
    let length = match parse_content_length(&lengths) {
        Ok(length) => length,
        Err(text) => return Parsed::Stopped(Stop::Malformed(400, text)),
    };
    head.content_length = length;
    let length = length.unwrap_or(0);
    if length > limits.max_body_bytes as u64 {
        return Parsed::Stopped(Stop::BodyRefused(head, Some(length)));
    }
    // Edits in place, same length: the request async-h1 reads is otherwise unchanged.
    if http10 {
        let line = &mut data[line_start..request_line_end];
        let line_length = line.strip_suffix(b"\r").map_or(line.len(), <[u8]>::len);
        // The line ends with "HTTP/1.0" (httparse checked it), so this is its last digit.
        if let Some(digit) = line_length.checked_sub(1) {
            line[digit] = b'1';
        }
    }
    if let Some(offset) = expect_at {
        data[offset..offset + 6].copy_from_slice(b"X-Expt");
    }
    Parsed::Request {
        head,
        length: head_length as u64 + length,
        last: http10 || close,
        expect_continue: expect_at.is_some() && length > 0,
    }
}

/// The framer's decision at a request boundary.
#[derive(Debug)]
pub enum Parsed {
    /// Hand this many bytes (head and body) to async-h1; `last` closes the connection after
    /// the answer; `expect_continue` sends `100 Continue` first.
    Request {
        /// The request's head.
        head: Head,
        /// Head and body length.
        length: u64,
        /// No request may follow on this connection.
        last: bool,
        /// The client waits for `100 Continue` before sending the body.
        expect_continue: bool,
    },
    /// More bytes are needed.
    Partial,
    /// Stop handing out requests.
    Stopped(Stop),
}

fn parse_content_length(values: &[&[u8]]) -> Result<Option<u64>, String> {
    let mut length = None;
    for value in values {
        let parsed = std::str::from_utf8(value)
            .ok()
            .map(str::trim)
            .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|v| v.parse::<u64>().ok())
            .ok_or_else(|| "invalid Content-Length".to_string())?;
        if length.is_some_and(|l| l != parsed) {
            return Err("conflicting Content-Length headers".to_string());
        }
        length = Some(parsed);
    }
    Ok(length)
}

impl<S: AsyncRead + AsyncWrite + Clone + Unpin> AsyncRead for FramedIo<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        self.lock().poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Clone + Unpin> AsyncWrite for FramedIo<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }
    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_close(cx)
    }
}
