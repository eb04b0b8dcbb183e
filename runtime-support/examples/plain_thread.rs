//! The engine embedded with nothing but `std`: a blocking HTTP/1.1 server on threads, no async
//! runtime. It owns the loop an embedder writes (docs/embedding.md shows its parts): one thread
//! owns the engine and feeds it one input at a time with the current time, drains its
//! outputs, and sleeps until the next input or `poll_timeout`; a thread per connection parses
//! one request, hands it over and writes the reply it gets back. It serves the long-poll
//! protocol (handshake, poll, send, publish, status...), not WebSockets: those need a codec,
//! see `runtime-smol/src/websocket.rs`.
//!
//! ```sh
//! cargo run -p livebridge-runtime-support --example plain_thread            # 127.0.0.1:5100
//! cargo run -p livebridge-runtime-support --example plain_thread -- --self-test
//! ```

use livebridge_core::{
    Config, Engine, HttpRequest, Input, Output, Reply, RequestBody, RequestId, SessionEvent,
};
use livebridge_runtime_support::{MonotonicClock, OsRandomIds};
use std::collections::BTreeMap;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::thread;
use std::time::Instant;

/// What a connection thread hands to the engine thread.
enum Event {
    /// A parsed request, and where its reply goes.
    Request {
        http: HttpRequest,
        reply_to: Sender<Reply>,
    },
}

/// The engine thread: the only owner of the engine, so no lock is needed.
fn run_engine(config: Config, events: Receiver<Event>) {
    let clock = MonotonicClock::start();
    let (start, unix_millis) = clock.anchor();
    let mut engine = Engine::new(config, OsRandomIds, start, unix_millis);
    let mut waiting: BTreeMap<RequestId, Sender<Reply>> = BTreeMap::new();
    let mut next_request = 0u64;
    loop {
        // 1. Wait for the next input or the engine's next deadline, whichever comes first.
        let event = match engine.poll_timeout() {
            Some((deadline, _reason)) => {
                let wait = clock
                    .instant(deadline)
                    .saturating_duration_since(Instant::now());
                match events.recv_timeout(wait) {
                    Ok(event) => Some(event),
                    Err(RecvTimeoutError::Timeout) => None,
                    Err(RecvTimeoutError::Disconnected) => return,
                }
            }
            None => match events.recv() {
                Ok(event) => Some(event),
                Err(_) => return,
            },
        };
        // 2. Feed exactly one input (or the deadline) with the current time.
        let now = clock.now();
        match event {
            Some(Event::Request { http, reply_to }) => {
                next_request += 1;
                let request = RequestId(next_request);
                waiting.insert(request, reply_to);
                engine.handle_input(now, Input::Http { request, http });
            }
            None => engine.handle_timeout(now),
        }
        // 3. Carry out every output before waiting again.
        while let Some(output) = engine.poll_output() {
            match output {
                Output::Reply { request, reply } => {
                    if let Some(reply_to) = waiting.remove(&request) {
                        // The connection thread may be gone; a runtime that notices earlier
                        // reports Input::RequestAborted instead.
                        let _ = reply_to.send(reply);
                    }
                }
                Output::Session(SessionEvent::Opened { client_id, .. }) => {
                    eprintln!("session {client_id} opened")
                }
                Output::Session(_) => {}
                // Only with Config::durable: store the batch, then feed Input::Persisted.
                Output::Persist(_) => unreachable!("this example keeps history in memory"),
                // Only with Config::clustered: this example is a single node.
                Output::Broker(_) | Output::Forward { .. } | Output::Gather { .. } => {
                    unreachable!("this example runs without a broker")
                }
                // Only for Input::Command, which this server does not use.
                Output::CommandDone { .. } => {}
                // WebSocket outputs: no WebSocket is ever opened here.
                Output::WsFrame { .. } | Output::WsPing { .. } | Output::WsClose { .. } => {}
            }
        }
    }
}

/// One connection: read one request, hand it to the engine, write the reply, close.
fn serve_connection(stream: TcpStream, engine: Sender<Event>, max_body: usize) -> io::Result<()> {
    let peer = stream.peer_addr()?.ip().to_string();
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let (Some(method), Some(target)) = (parts.next(), parts.next()) else {
        return write_reply(&stream, &Reply::error(400, "malformed request line"));
    };
    let mut http = HttpRequest::new(method, target, Vec::new()).with_peer(peer);
    let mut length = 0usize;
    let mut chunked = false;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header)? == 0 || header.trim().is_empty() {
            break;
        }
        let Some((name, value)) = header.split_once(':') else {
            continue;
        };
        let value = value.trim().to_string();
        match name.trim().to_ascii_lowercase().as_str() {
            // Whatever the client sent, or nothing: the engine refuses a request without Host.
            "host" => http.host = Some(value),
            "origin" => http.origin = Some(value),
            "authorization" => http.authorization = Some(value),
            "content-length" => length = value.parse().unwrap_or(usize::MAX),
            "transfer-encoding" => chunked = true,
            _ => {}
        }
    }
    http.body = if chunked {
        RequestBody::LengthRequired
    } else if length > max_body {
        RequestBody::TooLarge {
            declared: length as u64,
        }
    } else {
        let mut body = vec![0; length];
        reader.read_exact(&mut body)?;
        RequestBody::Complete(body)
    };
    let (reply_to, reply) = mpsc::channel();
    if engine.send(Event::Request { http, reply_to }).is_err() {
        return write_reply(&stream, &Reply::error(503, "the engine stopped"));
    }
    match reply.recv() {
        Ok(reply) => write_reply(&stream, &reply),
        Err(_) => Ok(()),
    }
}

fn write_reply(mut stream: &TcpStream, reply: &Reply) -> io::Result<()> {
    let mut head = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n",
        reply.status,
        if reply.status < 400 { "OK" } else { "Error" },
        reply.content_type.as_str(),
        reply.body.len()
    );
    for (name, value) in &reply.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    stream.write_all(reply.body.as_bytes())?;
    stream.flush()
}

/// Starts the server on `listener`: the engine thread and one thread per connection.
fn serve(listener: TcpListener, config: Config) {
    let max_body = config.max_body_bytes;
    let (engine, events) = mpsc::channel();
    thread::spawn(move || run_engine(config, events));
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        let engine = engine.clone();
        thread::spawn(move || {
            if let Err(error) = serve_connection(stream, engine, max_body) {
                eprintln!("connection failed: {error}");
            }
        });
    }
}

/// A client for the self-test: one request per connection, the body of the reply as JSON.
fn call(addr: &str, method: &str, target: &str, body: &str) -> (u16, serde_json::Value) {
    let mut stream = TcpStream::connect(addr).expect("connect");
    let request = format!(
        "{method} {target} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).expect("write");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read");
    let (head, body) = response.split_once("\r\n\r\n").expect("a head");
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (
        status,
        serde_json::from_str(body).unwrap_or(serde_json::Value::Null),
    )
}

fn self_test() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().unwrap().to_string();
    thread::spawn(move || serve(listener, Config::default()));
    let (status, reply) = call(&addr, "POST", "/ws/handshake", r#"{"client_type":"demo"}"#);
    assert_eq!(status, 200, "{reply}");
    let id = reply["client_id"].as_str().unwrap().to_string();
    let subscribe =
        format!(r#"{{"client_id":"{id}","message":{{"type":"subscribe","channels":["jobs"]}}}}"#);
    assert_eq!(call(&addr, "POST", "/ws/send", &subscribe).0, 200);
    // Take connection_established, then long-poll while another thread publishes.
    call(&addr, "GET", &format!("/ws/poll?client_id={id}"), "");
    let publisher = {
        let addr = addr.clone();
        thread::spawn(move || {
            thread::sleep(std::time::Duration::from_millis(200));
            let event = r#"{"type":"job_progress","job_id":"j1","stage":"render","progress":50}"#;
            call(&addr, "POST", "/api/events", event)
        })
    };
    let (status, polled) = call(&addr, "GET", &format!("/ws/poll?client_id={id}&wait=5"), "");
    assert_eq!(status, 200, "{polled}");
    assert_eq!(polled["messages"][0]["type"], "job_progress", "{polled}");
    assert_eq!(publisher.join().unwrap().0, 200);
    println!(
        "self-test passed: the long poll got {}",
        polled["messages"][0]
    );
}

fn main() {
    if std::env::args().any(|arg| arg == "--self-test") {
        return self_test();
    }
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:5100".to_string());
    let listener = TcpListener::bind(&addr).expect("bind");
    println!("serving the long-poll protocol on http://{addr}");
    serve(listener, Config::default());
}
