//! The connections cluster mode's internal hop keeps open between nodes: one HTTP/1.1
//! request at a time on each, reused while the other node keeps it alive, so a forwarded
//! request does not pay for a TCP connection (which made a forwarded poll cost ~4× a direct
//! one, docs/performance.md).
//!
//! A connection goes back to the pool only after a whole reply framed by `Content-Length` was
//! read from it and the reply did not say `Connection: close`. One taken from the pool may have
//! been closed by the other node in the meantime (its keep-alive timeout, a restart): when such
//! a connection fails before a single byte of the reply arrived, the request is sent once more
//! on a new connection. A node closes a keep-alive connection only between requests, so the
//! request it never answered was never handled. Connections idle for longer than
//! [`IDLE_REUSE`] are not reused at all, far inside the default keep-alive timeout (60 s).

use futures_lite::future::or;
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use smol::net::TcpStream;
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Longest wait for a new connection to a node.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// A pooled connection idle for longer than this is closed instead of reused.
pub const IDLE_REUSE: Duration = Duration::from_secs(2);
/// Idle connections kept per node; more are closed when they come back.
pub const IDLE_PER_NODE: usize = 32;

/// Idle connections by node address.
#[derive(Default)]
pub struct Pool {
    idle: Mutex<BTreeMap<String, Vec<(TcpStream, Instant)>>>,
}

/// A whole HTTP/1.1 response: its head's bytes and its body.
pub struct Response {
    /// Everything up to and including the blank line.
    pub head: Vec<u8>,
    pub body: Vec<u8>,
}

/// How an exchange on one connection failed.
enum Failure {
    /// Before any byte of the reply arrived: the request can be sent again.
    BeforeReply(String),
    /// After: it cannot.
    Later(String),
}

impl Pool {
    /// Sends `request` (a whole HTTP/1.1 request, head and body) to `address` and reads its
    /// response, on a pooled connection if one is idle; the response's body is at most
    /// `max_body` bytes. `head_request`: the request is a `HEAD`, whose response has no body
    /// whatever its `Content-Length` says.
    pub async fn exchange(
        &self,
        address: &str,
        request: &[u8],
        head_request: bool,
        max_body: usize,
    ) -> Result<Response, String> {
        loop {
            let (mut stream, pooled) = match self.take(address) {
                Some(stream) => (stream, true),
                None => (connect(address).await?, false),
            };
            match exchange_on(&mut stream, request, head_request, max_body).await {
                Ok((response, reusable)) => {
                    if reusable {
                        self.put(address, stream);
                    }
                    return Ok(response);
                }
                // The other node closed it while it sat in the pool: try a new one.
                Err(Failure::BeforeReply(_)) if pooled => continue,
                Err(Failure::BeforeReply(error) | Failure::Later(error)) => {
                    return Err(format!("forwarding to {address}: {error}"));
                }
            }
        }
    }

    fn take(&self, address: &str) -> Option<TcpStream> {
        let mut idle = self.lock();
        let streams = idle.get_mut(address)?;
        while let Some((stream, since)) = streams.pop() {
            if since.elapsed() < IDLE_REUSE {
                return Some(stream);
            }
        }
        None
    }

    fn put(&self, address: &str, stream: TcpStream) {
        let mut idle = self.lock();
        let streams = idle.entry(address.to_string()).or_default();
        streams.retain(|(_, since)| since.elapsed() < IDLE_REUSE);
        if streams.len() < IDLE_PER_NODE {
            streams.push((stream, Instant::now()));
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Vec<(TcpStream, Instant)>>> {
        self.idle
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

async fn connect(address: &str) -> Result<TcpStream, String> {
    let connect = async {
        TcpStream::connect(address)
            .await
            .map_err(|e| format!("cannot connect to {address}: {e}"))
    };
    let stream = or(connect, async {
        smol::Timer::after(CONNECT_TIMEOUT).await;
        Err(format!(
            "cannot connect to {address} within {CONNECT_TIMEOUT:?}"
        ))
    })
    .await?;
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

/// One request and its response on `stream`; whether the connection can carry another.
async fn exchange_on(
    stream: &mut TcpStream,
    request: &[u8],
    head_request: bool,
    max_body: usize,
) -> Result<(Response, bool), Failure> {
    let io = |e: std::io::Error| e.to_string();
    stream
        .write_all(request)
        .await
        .map_err(|e| Failure::BeforeReply(io(e)))?;
    let mut received = Vec::new();
    // On the heap: a forwarded long poll keeps this future (and its buffer) for its whole wait.
    let mut chunk = vec![0u8; 4096];
    let (head_length, length, close) = loop {
        let n = stream
            .read(&mut chunk)
            .await
            .map_err(|e| match received.is_empty() {
                true => Failure::BeforeReply(io(e)),
                false => Failure::Later(io(e)),
            })?;
        if n == 0 {
            return Err(match received.is_empty() {
                true => Failure::BeforeReply("closed before replying".to_string()),
                false => Failure::Later("closed in the middle of the reply".to_string()),
            });
        }
        received.extend_from_slice(&chunk[..n]);
        if let Some((head_length, length, close)) = framing(&received).map_err(Failure::Later)? {
            break (
                head_length,
                if head_request { Some(0) } else { length },
                close,
            );
        }
        if received.len() > 64 * 1024 {
            return Err(Failure::Later("reply head too large".to_string()));
        }
    };
    let mut body = received.split_off(head_length);
    let head = received;
    match length {
        Some(length) if length > max_body => {
            Err(Failure::Later(format!("reply of {length} bytes")))
        }
        Some(length) => {
            while body.len() < length {
                let n = stream
                    .read(&mut chunk)
                    .await
                    .map_err(|e| Failure::Later(io(e)))?;
                if n == 0 {
                    return Err(Failure::Later(
                        "closed in the middle of the reply".to_string(),
                    ));
                }
                body.extend_from_slice(&chunk[..n]);
            }
            // Nothing follows a reply to a request that was sent alone.
            let reusable = !close && body.len() == length;
            body.truncate(length);
            Ok((Response { head, body }, reusable))
        }
        // Without a length the reply ends with the connection.
        None => {
            (&mut *stream)
                .take(max_body as u64)
                .read_to_end(&mut body)
                .await
                .map_err(|e| Failure::Later(io(e)))?;
            Ok((Response { head, body }, false))
        }
    }
}

/// Where the head of `bytes` ends, the body's length (`Content-Length`; none for 1xx, 204 and
/// 304) and whether the reply closes the connection; `None` while the head is incomplete.
fn framing(bytes: &[u8]) -> Result<Option<(usize, Option<usize>, bool)>, String> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut response = httparse::Response::new(&mut headers);
    let head_length = match response.parse(bytes) {
        Ok(httparse::Status::Complete(length)) => length,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(error) => return Err(error.to_string()),
    };
    let mut length = None;
    let mut close = false;
    for header in response.headers.iter() {
        let value = String::from_utf8_lossy(header.value);
        if header.name.eq_ignore_ascii_case("content-length") {
            length = value.trim().parse::<usize>().ok();
        } else if header.name.eq_ignore_ascii_case("connection") {
            close = value.trim().eq_ignore_ascii_case("close");
        } else if header.name.eq_ignore_ascii_case("transfer-encoding") {
            // Chunked: read to the end, and do not reuse.
            length = None;
            close = true;
        }
    }
    if response
        .code
        .is_some_and(|code| code < 200 || code == 204 || code == 304)
    {
        length = Some(0);
    }
    Ok(Some((head_length, length, close)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader, Write};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// `pool.exchange(…)` run to its end; fails if the reply has not come within 30 s (the
    /// pool itself waits for a reply as long as it takes).
    fn exchange_within(
        pool: &Pool,
        address: &str,
        request: &[u8],
        head_request: bool,
    ) -> Result<Response, String> {
        smol::block_on(or(
            pool.exchange(address, request, head_request, 1 << 20),
            async {
                smol::Timer::after(Duration::from_secs(30)).await;
                panic!("waited 30 s for the fake node's reply to {address}")
            },
        ))
    }

    /// A node that answers every request on a connection with a numbered reply; after
    /// `replies_per_connection` replies it closes the connection without reading more.
    fn fake_node(replies_per_connection: usize) -> (String, Arc<AtomicUsize>) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let accepted = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&accepted);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
                std::thread::spawn(move || {
                    let mut reader = BufReader::new(stream.try_clone().unwrap());
                    let mut writer = stream;
                    for reply in 0..replies_per_connection {
                        let mut line = String::new();
                        // Read the head (these requests have no body).
                        loop {
                            line.clear();
                            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                                return;
                            }
                            if line == "\r\n" {
                                break;
                            }
                        }
                        let body = format!("{{\"connection\":{n},\"reply\":{reply}}}");
                        let _ = write!(
                            writer,
                            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}",
                            body.len()
                        );
                    }
                });
            }
        });
        (address, accepted)
    }

    fn get(pool: &Pool, address: &str) -> String {
        let request = format!("GET /x HTTP/1.1\r\nHost: {address}\r\n\r\n");
        let response = exchange_within(pool, address, request.as_bytes(), false).unwrap();
        assert!(response.head.starts_with(b"HTTP/1.1 200"));
        String::from_utf8(response.body).unwrap()
    }

    #[test]
    fn requests_in_a_row_share_one_connection() {
        let (address, accepted) = fake_node(usize::MAX);
        let pool = Pool::default();
        assert_eq!(get(&pool, &address), r#"{"connection":1,"reply":0}"#);
        assert_eq!(get(&pool, &address), r#"{"connection":1,"reply":1}"#);
        assert_eq!(get(&pool, &address), r#"{"connection":1,"reply":2}"#);
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn a_pooled_connection_the_node_closed_is_replaced_and_the_request_sent_once_more() {
        // The node closes each connection after one reply, as after its keep-alive timeout.
        let (address, accepted) = fake_node(1);
        let pool = Pool::default();
        assert_eq!(get(&pool, &address), r#"{"connection":1,"reply":0}"#);
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(get(&pool, &address), r#"{"connection":2,"reply":0}"#);
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn a_reply_that_closes_or_has_no_length_is_not_pooled() {
        let closing = b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 2\r\n\r\n{}";
        assert_eq!(
            framing(closing).unwrap(),
            Some((closing.len() - 2, Some(2), true))
        );
        let chunked = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n";
        assert_eq!(framing(chunked).unwrap(), Some((chunked.len(), None, true)));
        let kept = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}";
        assert_eq!(
            framing(kept).unwrap(),
            Some((kept.len() - 2, Some(2), false))
        );
        let empty = b"HTTP/1.1 204 No Content\r\ncontent-length: 9\r\n\r\n";
        assert_eq!(framing(empty).unwrap(), Some((empty.len(), Some(0), false)));
        assert_eq!(framing(b"HTTP/1.1 200 OK\r\ncontent-le").unwrap(), None);
        assert!(framing(b"garbage\r\n\r\n").is_err());
    }

    #[test]
    fn the_reply_to_a_head_request_ends_with_its_head() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap().to_string();
        std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut writer = stream;
            for _ in 0..2 {
                let mut line = String::new();
                loop {
                    line.clear();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                }
                let _ = writer.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 42\r\n\r\n");
            }
        });
        let pool = Pool::default();
        let request = format!("HEAD /x HTTP/1.1\r\nHost: {address}\r\n\r\n");
        for _ in 0..2 {
            let response = exchange_within(&pool, &address, request.as_bytes(), true).unwrap();
            assert!(response.body.is_empty());
        }
    }
}
