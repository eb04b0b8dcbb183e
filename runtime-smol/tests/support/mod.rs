//! Test helpers: a real server on an ephemeral port, a real HTTP client (ureq), a real
//! WebSocket client (async-tungstenite over smol), and raw sockets for byte-level tests.
//!
//! `LIVEBRIDGE_TEST_RUNTIME=axum` starts the tokio/axum runtime instead of the smol one with
//! the same engine settings: the protocol tests (`http_api`, `websocket`) run on both
//! (`scripts/test.sh`). Only the engine settings carry over; a test that adjusts the smol
//! runtime's own settings is about that runtime and must not be run this way.

#![allow(dead_code)]

use async_tungstenite::WebSocketStream;
use async_tungstenite::tungstenite::Message;
use futures_lite::StreamExt;
use livebridge_smol::{Server, ServerConfig};
use serde_json::Value;
use smol::net::TcpStream;
use std::ffi::OsStr;
use std::future::Future;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::process::{Child, ChildStdout, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long a test waits for anything that should happen (a reply, a process to exit, a
/// thread to finish) before it fails saying what it waited for: far beyond what a slow,
/// shared CI machine needs, so it only ends a hang.
pub const WAIT: Duration = Duration::from_secs(60);

/// `future`, or a panic naming `what` if it is not done within `wait`.
pub async fn within<T>(what: &str, wait: Duration, future: impl Future<Output = T>) -> T {
    futures_lite::future::or(future, async {
        smol::Timer::after(wait).await;
        panic!("waited {wait:?} for {what}")
    })
    .await
}

/// `smol::block_on(future)`, failing with `what` if it is not done within `wait`.
pub fn block_on_within<T>(what: &str, wait: Duration, future: impl Future<Output = T>) -> T {
    smol::block_on(within(what, wait, future))
}

/// Waits for `child` to exit; if it has not within `wait`, kills it and fails naming `what`.
pub fn wait_child(child: &mut Child, what: &str, wait: Duration) -> ExitStatus {
    let deadline = Instant::now() + wait;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not exit within {wait:?} (killed)");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `command.output()`, but a command still running after `wait` is killed and the test fails
/// naming `what`.
pub fn output_within(command: &mut Command, what: &str, wait: Duration) -> Output {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut bytes);
            }
            bytes
        })
    };
    let stdout = drain(child.stdout.take().map(|p| Box::new(p) as _));
    let stderr = drain(child.stderr.take().map(|p| Box::new(p) as _));
    let status = wait_child(&mut child, what, wait);
    Output {
        status,
        stdout: join_within(stdout, &format!("the stdout of {what}"), wait).unwrap(),
        stderr: join_within(stderr, &format!("the stderr of {what}"), wait).unwrap(),
    }
}

/// `thread.join()`, failing naming `what` if the thread has not finished within `wait`.
pub fn join_within<T>(thread: JoinHandle<T>, what: &str, wait: Duration) -> std::thread::Result<T> {
    let deadline = Instant::now() + wait;
    while !thread.is_finished() {
        assert!(
            Instant::now() < deadline,
            "waited {wait:?} for {what} to finish"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    thread.join()
}

/// The first line `child` prints on its (piped) stdout, and the rest of its stdout; if no
/// line (nor the end of its output) comes within `wait`, kills it and fails naming `what`.
pub fn first_line_within(
    child: &mut Child,
    what: &str,
    wait: Duration,
) -> (String, BufReader<ChildStdout>) {
    let mut reader = BufReader::new(child.stdout.take().expect("stdout piped"));
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let read = reader.read_line(&mut line);
        let _ = sender.send((read.map(|_| line), reader));
    });
    match receiver.recv_timeout(wait) {
        Ok((line, reader)) => (line.unwrap_or_default(), reader),
        Err(_) => {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} printed no line within {wait:?} (killed)");
        }
    }
}

/// An HTTP client as applications use one (it sends the whole request, then reads), that
/// reports statuses instead of failing on them and gives up after `timeout`.
pub fn agent(timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(timeout))
        .build()
        .new_agent()
}

/// A fresh directory path under the target directory (removed first, not created).
pub fn fresh_dir(name: &str) -> std::path::PathBuf {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// [`spawn_livebridge`] with `--data-dir dir` and `extra` flags.
pub fn spawn_with_data_dir(dir: &std::path::Path, extra: &[&str]) -> (Child, String) {
    let data_dir = [OsStr::new("--data-dir"), dir.as_os_str()];
    spawn_livebridge(data_dir.into_iter().chain(extra.iter().map(OsStr::new)))
}

/// Starts the `livebridge` binary — `serve` on an ephemeral loopback port with warnings only,
/// then `args` — and returns it with the address its first line announces.
pub fn spawn_livebridge<I, S>(args: I) -> (Child, String)
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut child = Command::new(env!("CARGO_BIN_EXE_livebridge"))
        .args(["serve", "--bind", "127.0.0.1:0", "--log", "warn"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start livebridge");
    let addr = announced_address(&mut child);
    (child, addr)
}

/// The address a `livebridge` started with its stdout piped announces on its first line
/// (within [`WAIT`], or it is killed and the test fails).
pub fn announced_address(child: &mut Child) -> String {
    let (line, _) = first_line_within(child, "livebridge announcing its address", WAIT);
    line.trim()
        .strip_prefix("livebridge listening on http://")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_string()
}

/// The server under test, of either runtime.
pub enum Running {
    Smol(Server),
    // Boxed: it carries the hub's settings, the smol server only a handle.
    Axum(Box<livebridge_axum::Server>),
}

pub struct TestServer {
    pub server: Option<Running>,
    pub addr: SocketAddr,
    agent: ureq::Agent,
}

impl TestServer {
    pub fn start() -> TestServer {
        TestServer::with(|_| {})
    }

    pub fn with(adjust: impl FnOnce(&mut ServerConfig)) -> TestServer {
        let mut config = ServerConfig {
            bind: "127.0.0.1:0".parse().unwrap(),
            threads: 2,
            ..ServerConfig::default()
        };
        adjust(&mut config);
        let (server, addr) = if std::env::var("LIVEBRIDGE_TEST_RUNTIME").as_deref() == Ok("axum") {
            let server = livebridge_axum::Server::start(livebridge_axum::ServerConfig {
                bind: config.bind,
                settings: livebridge_axum::Settings {
                    engine: config.engine,
                    close_timeout: config.close_timeout,
                },
                threads: config.threads,
                shutdown_grace: config.shutdown_grace,
                max_head_bytes: config.max_head_bytes,
                header_timeout: config.header_timeout,
                data_dir: config.data_dir.map(|path| livebridge_axum::DataDir {
                    path,
                    max_bytes: config.data_max_bytes,
                }),
                linger: config.linger,
            })
            .expect("server starts");
            let addr = server.local_addr();
            (Running::Axum(Box::new(server)), addr)
        } else {
            let server = Server::start(config).expect("server starts");
            let addr = server.local_addr();
            (Running::Smol(server), addr)
        };
        let agent = agent(Duration::from_secs(20));
        TestServer {
            server: Some(server),
            addr,
            agent,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// An HTTP request; returns status and JSON body.
    pub fn http(&self, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
        let (status, text) = self.http_text(method, path, body.map(Value::to_string).as_deref());
        let json = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{method} {path}: not JSON ({e}): {text:?}"));
        (status, json)
    }

    /// An HTTP request with a raw body; returns status and body text.
    pub fn http_text(&self, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
        let url = self.url(path);
        let response = match (method, body) {
            ("GET", _) => self.agent.get(&url).call(),
            ("POST", Some(body)) => self
                .agent
                .post(&url)
                .header("content-type", "application/json")
                .send(body),
            ("POST", None) => self.agent.post(&url).send_empty(),
            ("PUT", _) => self.agent.put(&url).send_empty(),
            ("DELETE", _) => self.agent.delete(&url).call(),
            other => panic!("unsupported {other:?}"),
        };
        let mut response = response.unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let status = response.status().as_u16();
        let text = response.body_mut().read_to_string().expect("body");
        (status, text)
    }

    pub fn get(&self, path: &str) -> (u16, Value) {
        self.http("GET", path, None)
    }

    pub fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.http("POST", path, Some(&body))
    }

    pub fn handshake(&self, client_type: &str) -> String {
        let (status, reply) = self.post(
            "/ws/handshake",
            serde_json::json!({"client_type": client_type, "protocol_version": "1.0"}),
        );
        assert_eq!(status, 200, "{reply}");
        reply["client_id"].as_str().unwrap().to_string()
    }

    pub fn send(&self, client_id: &str, message: Value) -> (u16, Value) {
        self.post(
            "/ws/send",
            serde_json::json!({"client_id": client_id, "message": message}),
        )
    }

    pub fn subscribe(&self, client_id: &str, channels: &[&str]) {
        let (status, reply) = self.send(
            client_id,
            serde_json::json!({"type": "subscribe", "channels": channels}),
        );
        assert_eq!(status, 200, "{reply}");
    }

    pub fn poll(&self, client_id: &str) -> Value {
        let (status, reply) = self.get(&format!("/ws/poll?client_id={client_id}"));
        assert_eq!(status, 200, "{reply}");
        reply
    }

    pub fn poll_types(&self, client_id: &str) -> Vec<String> {
        types(&self.poll(client_id)["messages"])
    }

    pub fn ws(&self) -> WsClient {
        smol::block_on(WsClient::connect(self.addr))
    }

    /// Shuts the server down; fails if it has not stopped within [`WAIT`] (when the test is
    /// already failing, the server is left behind instead).
    pub fn shutdown(&mut self) {
        let Some(server) = self.server.take() else {
            return;
        };
        let stopping = std::thread::spawn(move || match server {
            Running::Smol(server) => server.shutdown(),
            Running::Axum(server) => server.shutdown(),
        });
        let deadline = Instant::now() + WAIT;
        while !stopping.is_finished() {
            if Instant::now() >= deadline {
                if std::thread::panicking() {
                    return;
                }
                panic!("waited {WAIT:?} for the server to shut down");
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        match stopping.join() {
            Ok(result) => result.expect("clean shutdown"),
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

pub fn types(messages: &Value) -> Vec<String> {
    messages
        .as_array()
        .expect("a list")
        .iter()
        .map(|m| m["type"].as_str().unwrap_or("?").to_string())
        .collect()
}

/// A WebSocket client (async-tungstenite), used from blocking tests.
pub struct WsClient {
    pub ws: WebSocketStream<TcpStream>,
    pub client_id: String,
}

impl WsClient {
    pub async fn connect(addr: SocketAddr) -> WsClient {
        WsClient::connect_to(addr, "/ws").await.0
    }

    /// Opens a WebSocket on `path` (`/ws?client_id=…` to resume); returns the client and its
    /// `connection_established` frame. Fails if the handshake is not done within [`WAIT`].
    pub async fn connect_to(addr: SocketAddr, path: &str) -> (WsClient, Value) {
        let url = format!("ws://{addr}{path}");
        let (ws, response) = within(
            &format!("the WebSocket handshake with {url}"),
            WAIT,
            async {
                let stream = TcpStream::connect(addr).await.expect("connect");
                async_tungstenite::client_async(url.as_str(), stream)
                    .await
                    .expect("websocket handshake")
            },
        )
        .await;
        assert_eq!(response.status(), 101);
        let mut client = WsClient {
            ws,
            client_id: String::new(),
        };
        let welcome = client.recv_async().await.expect("connection_established");
        assert_eq!(welcome["type"], "connection_established");
        client.client_id = welcome["client_id"].as_str().unwrap().to_string();
        (client, welcome)
    }

    /// Sends `message`; fails if the socket does not take it within [`WAIT`].
    pub fn send(&mut self, message: Value) {
        self.send_frame(Message::text(message.to_string()));
    }

    /// Sends any frame; fails if the socket does not take it within [`WAIT`].
    pub fn send_frame(&mut self, frame: Message) {
        block_on_within("the WebSocket to take a frame", WAIT, self.ws.send(frame)).expect("send");
    }

    /// The next JSON text message, or `None` if none comes within 5 s.
    pub fn recv(&mut self) -> Option<Value> {
        smol::block_on(self.recv_async())
    }

    pub async fn recv_async(&mut self) -> Option<Value> {
        self.recv_within(Duration::from_secs(5)).await
    }

    pub async fn recv_within(&mut self, wait: Duration) -> Option<Value> {
        loop {
            let next = futures_lite::future::or(async { self.ws.next().await }, async {
                smol::Timer::after(wait).await;
                None
            })
            .await?;
            match next {
                Ok(Message::Text(text)) => return Some(serde_json::from_str(&text).unwrap()),
                Ok(Message::Close(_)) | Err(_) => return None,
                Ok(_) => continue,
            }
        }
    }

    /// Whether nothing arrives within `wait`.
    pub fn silent_for(&mut self, wait: Duration) -> bool {
        smol::block_on(self.recv_within(wait)).is_none()
    }

    /// Reads until the server's close frame; returns its code.
    pub fn close_code(&mut self) -> Option<u16> {
        smol::block_on(async {
            loop {
                let next = futures_lite::future::or(async { self.ws.next().await }, async {
                    smol::Timer::after(Duration::from_secs(10)).await;
                    None
                })
                .await?;
                match next {
                    Ok(Message::Close(frame)) => return frame.map(|f| u16::from(f.code)),
                    Ok(_) => continue,
                    Err(_) => return None,
                }
            }
        })
    }
}

/// A raw TCP connection for byte-level tests.
pub struct Raw {
    pub stream: std::net::TcpStream,
}

impl Raw {
    pub fn connect(addr: SocketAddr) -> Raw {
        let stream = std::net::TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        Raw { stream }
    }

    pub fn write(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
    }

    /// Everything the server sends until it closes the connection (or 5 s pass without a
    /// byte); fails if it is still sending after [`WAIT`].
    pub fn read_to_close(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        let mut chunk = [0u8; 8192];
        let deadline = Instant::now() + WAIT;
        loop {
            assert!(
                Instant::now() < deadline,
                "waited {WAIT:?} for the server to close the connection; got {} bytes",
                out.len()
            );
            match self.stream.read(&mut chunk) {
                Ok(0) | Err(_) => return out,
                Ok(n) => out.extend_from_slice(&chunk[..n]),
            }
        }
    }

    /// Reads one HTTP response (head and `Content-Length` body).
    pub fn read_response(&mut self) -> RawResponse {
        let mut data = Vec::new();
        let mut byte = [0u8; 1];
        while !data.ends_with(b"\r\n\r\n") {
            let n = self.stream.read(&mut byte).expect("response head");
            assert!(
                n > 0,
                "connection closed before a response; got {:?}",
                String::from_utf8_lossy(&data)
            );
            data.push(byte[0]);
        }
        let head = String::from_utf8(data).unwrap();
        let length = header(&head, "content-length").map_or(0, |v| v.parse().unwrap());
        let mut body = vec![0u8; length];
        self.stream.read_exact(&mut body).unwrap();
        let status = head[9..12].parse().unwrap();
        RawResponse {
            status,
            head,
            body: String::from_utf8(body).unwrap(),
        }
    }

    /// Reads one unmasked server WebSocket frame: (opcode, payload).
    pub fn read_frame(&mut self) -> (u8, Vec<u8>) {
        let mut header = [0u8; 2];
        self.stream.read_exact(&mut header).unwrap();
        let opcode = header[0] & 0x0f;
        let mut length = u64::from(header[1] & 0x7f);
        if length == 126 {
            let mut ext = [0u8; 2];
            self.stream.read_exact(&mut ext).unwrap();
            length = u64::from(u16::from_be_bytes(ext));
        } else if length == 127 {
            let mut ext = [0u8; 8];
            self.stream.read_exact(&mut ext).unwrap();
            length = u64::from_be_bytes(ext);
        }
        let mut payload = vec![0u8; length as usize];
        self.stream.read_exact(&mut payload).unwrap();
        (opcode, payload)
    }
}

pub struct RawResponse {
    pub status: u16,
    pub head: String,
    pub body: String,
}

pub fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.trim().eq_ignore_ascii_case(name).then(|| value.trim())
    })
}

/// A masked client text frame.
pub fn client_text_frame(text: &str) -> Vec<u8> {
    let payload = text.as_bytes();
    let mask = [0x12u8, 0x34, 0x56, 0x78];
    let mut frame = vec![0x81];
    if payload.len() < 126 {
        frame.push(0x80 | payload.len() as u8);
    } else {
        frame.push(0x80 | 126);
        frame.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    }
    frame.extend_from_slice(&mask);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    frame
}

pub const UPGRADE_REQUEST: &str = "GET /ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n\
Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
