//! Live back end: a real server on an ephemeral port — the smol server
//! (`livebridge_smol::Server`, the code behind the `livebridge` binary) or the tokio/axum one
//! (`livebridge_axum::Server`) — driven over real sockets in real time.
//! HTTP goes through a minimal HTTP/1.1 client (one connection per request, so chunked bodies
//! and plain `GET /ws` can be sent); WebSockets through async-tungstenite.

use crate::{Answer, Driver, Item};
use async_tungstenite::WebSocketStream;
use async_tungstenite::tungstenite::protocol::CloseFrame;
use async_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use async_tungstenite::tungstenite::{Error as WsError, Message};
use futures_lite::{AsyncReadExt, AsyncWriteExt, StreamExt};
use livebridge_core::Config;
use smol::net::TcpStream;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How long an expected frame or answer may take to arrive.
pub const WAIT: Duration = Duration::from_secs(5);
/// How long a live server may take to shut down at the end of a session.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(60);
/// Slack on the timestamp window (the server's wall clock is read at its start-up).
const CLOCK_SLACK_MS: u64 = 50;

enum WsCmd {
    Text(String),
    Binary(usize),
    Close(u16),
    Drop,
}

struct WsActor {
    cmds: async_channel::Sender<WsCmd>,
    events: async_channel::Receiver<Item>,
    pings: usize,
    task: Option<smol::Task<()>>,
}

/// Which runtime serves the live back end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Runtime {
    /// `livebridge-smol`.
    Smol,
    /// `livebridge-smol` as one node of a cluster on the Redis of [`use_cluster_redis`] (or
    /// `LIVEBRIDGE_CONFORMANCE_REDIS`), with a key prefix of its own.
    SmolCluster,
    /// `livebridge-axum`.
    Axum,
}

/// A running server of either runtime.
enum Server {
    Smol(livebridge_smol::Server),
    // Boxed: it carries the hub's settings, the smol server only a handle.
    Axum(Box<livebridge_axum::Server>),
}

impl Server {
    fn start(runtime: Runtime, config: Config) -> std::io::Result<Server> {
        let bind = "127.0.0.1:0".parse().expect("address");
        Ok(match runtime {
            Runtime::Smol | Runtime::SmolCluster => {
                let broker = match runtime {
                    Runtime::SmolCluster => Some(cluster_settings(&config)?),
                    _ => None,
                };
                let server = livebridge_smol::Server::start(livebridge_smol::ServerConfig {
                    bind,
                    engine: config,
                    threads: 1,
                    shutdown_grace: Duration::from_secs(2),
                    close_timeout: Duration::from_secs(1),
                    broker,
                    ..livebridge_smol::ServerConfig::default()
                })?;
                if runtime == Runtime::SmolCluster {
                    wait_until_ready(server.local_addr())?;
                }
                Server::Smol(server)
            }
            Runtime::Axum => Server::Axum(Box::new(livebridge_axum::Server::start(
                livebridge_axum::ServerConfig {
                    bind,
                    settings: livebridge_axum::Settings {
                        engine: config,
                        close_timeout: Duration::from_secs(1),
                    },
                    threads: 1,
                    shutdown_grace: Duration::from_secs(2),
                    data_dir: None,
                    ..livebridge_axum::ServerConfig::default()
                },
            )?)),
        })
    }

    fn local_addr(&self) -> SocketAddr {
        match self {
            Server::Smol(server) => server.local_addr(),
            Server::Axum(server) => server.local_addr(),
        }
    }

    fn shutdown(self) -> std::io::Result<()> {
        match self {
            Server::Smol(server) => server.shutdown(),
            Server::Axum(server) => server.shutdown(),
        }
    }
}

/// The Redis cluster nodes use, when set by [`use_cluster_redis`].
static CLUSTER_REDIS: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);

/// Makes [`Runtime::SmolCluster`] nodes use this Redis (`redis://…`) instead of the one named
/// by `LIVEBRIDGE_CONFORMANCE_REDIS`.
pub fn use_cluster_redis(url: String) {
    *CLUSTER_REDIS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(url);
}

impl LiveDriver {
    /// A cluster node's `/ws/clients` and `/websocket/stats` add who answered (`nodes`,
    /// `partial`, and `node` per client) to what a single node says; the transcripts are a
    /// single node's, so those fields are taken out and everything else is checked as is.
    fn single_node_view(&self, mut answer: Answer) -> Answer {
        if !self.cluster {
            return answer;
        }
        let Ok(serde_json::Value::Object(mut body)) =
            serde_json::from_str::<serde_json::Value>(&answer.body)
        else {
            return answer;
        };
        if body.remove("nodes").is_none() {
            return answer;
        }
        body.remove("partial");
        if let Some(serde_json::Value::Array(clients)) = body.get_mut("clients") {
            for client in clients {
                if let Some(client) = client.as_object_mut() {
                    client.remove("node");
                }
            }
        }
        answer.body = serde_json::Value::Object(body).to_string();
        answer
    }
}

/// The broker settings of a cluster node: the Redis of [`use_cluster_redis`] (or
/// `LIVEBRIDGE_CONFORMANCE_REDIS`), and a
/// key prefix no other session uses, so sessions run side by side as separate clusters.
fn cluster_settings(config: &Config) -> std::io::Result<livebridge_smol::BrokerSettings> {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let chosen = CLUSTER_REDIS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .clone();
    let url = chosen
        .or_else(|| std::env::var("LIVEBRIDGE_CONFORMANCE_REDIS").ok())
        .ok_or_else(|| {
            std::io::Error::other(
                "no Redis for cluster nodes: LIVEBRIDGE_CONFORMANCE_REDIS is not set",
            )
        })?;
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    Ok(livebridge_smol::BrokerSettings {
        url,
        prefix: format!("conformance-{}-{n}", std::process::id()),
        timeout: Duration::from_secs(2),
        reconnect_min: Duration::from_millis(100),
        reconnect_max: Duration::from_secs(1),
        durable: false,
        history_size: config.history_size,
        history_ttl: config.history_ttl,
        advertise: None,
    })
}

/// Waits until a cluster node has reached Redis (`/api/system/health` answers 200).
fn wait_until_ready(addr: SocketAddr) -> std::io::Result<()> {
    use std::io::{Read, Write};
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(mut stream) = std::net::TcpStream::connect(addr) {
            // A node that takes the connection but never answers is retried, not waited for.
            let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
            let request = format!(
                "GET /api/system/health HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
            );
            let mut answer = String::new();
            if stream.write_all(request.as_bytes()).is_ok()
                && stream.read_to_string(&mut answer).is_ok()
                && answer.starts_with("HTTP/1.1 200")
            {
                return Ok(());
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Err(std::io::Error::other(
        "the cluster node never reached Redis",
    ))
}

/// The live driver.
pub struct LiveDriver {
    server: Option<Server>,
    stopping: Option<std::thread::JoinHandle<()>>,
    addr: SocketAddr,
    start: Instant,
    start_unix_ms: u64,
    next: u64,
    pending: BTreeMap<u64, smol::Task<Result<Answer, String>>>,
    /// A cluster node: its cluster-wide views say which node answered (see
    /// [`LiveDriver::single_node_view`]).
    cluster: bool,
    actors: BTreeMap<String, WsActor>,
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl LiveDriver {
    /// Starts a server of `runtime` with these settings.
    pub fn start(runtime: Runtime, config: Config) -> Result<Self, String> {
        let start_unix_ms = unix_ms();
        let server = Server::start(runtime, config).map_err(|e| format!("server start: {e}"))?;
        Ok(LiveDriver {
            addr: server.local_addr(),
            server: Some(server),
            stopping: None,
            start: Instant::now(),
            start_unix_ms,
            next: 0,
            pending: BTreeMap::new(),
            cluster: runtime == Runtime::SmolCluster,
            actors: BTreeMap::new(),
        })
    }

    fn actor(&mut self, actor: &str) -> Result<&mut WsActor, String> {
        self.actors
            .get_mut(actor)
            .ok_or_else(|| format!("{actor} has no WebSocket"))
    }
}

async fn timeout<T>(wait: Duration, fut: impl std::future::Future<Output = T>) -> Option<T> {
    futures_lite::future::or(async { Some(fut.await) }, async {
        smol::Timer::after(wait).await;
        None
    })
    .await
}

/// One HTTP/1.1 exchange on a fresh connection.
pub async fn http_exchange(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<Vec<u8>>,
    chunked: bool,
) -> Result<Answer, String> {
    let mut stream = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    let mut payload = Vec::new();
    match (&body, chunked) {
        (Some(body), true) => {
            head.push_str("Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n");
            payload.extend_from_slice(format!("{:x}\r\n", body.len()).as_bytes());
            payload.extend_from_slice(body);
            payload.extend_from_slice(b"\r\n0\r\n\r\n");
        }
        (Some(body), false) => {
            head.push_str(&format!(
                "Content-Type: application/json\r\nContent-Length: {}\r\n",
                body.len()
            ));
            payload.extend_from_slice(body);
        }
        (None, _) if method == "POST" || method == "PUT" => {
            head.push_str("Content-Length: 0\r\n");
        }
        (None, _) => {}
    }
    head.push_str("\r\n");
    let mut out = head.into_bytes();
    out.extend_from_slice(&payload);
    stream
        .write_all(&out)
        .await
        .map_err(|e| format!("write: {e}"))?;
    stream.flush().await.map_err(|e| format!("flush: {e}"))?;
    read_response(&mut stream).await
}

/// Reads one HTTP response (Content-Length, chunked or until close).
pub async fn read_response<S: futures_lite::AsyncRead + Unpin>(
    stream: &mut S,
) -> Result<Answer, String> {
    let mut data = Vec::new();
    let mut buf = [0u8; 4096];
    let head_end = loop {
        if let Some(pos) = find(&data, b"\r\n\r\n") {
            break pos;
        }
        let n = stream
            .read(&mut buf)
            .await
            .map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            return Err(format!(
                "connection closed before a response ({:?})",
                String::from_utf8_lossy(&data)
            ));
        }
        data.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8_lossy(&data[..head_end]).into_owned();
    let mut rest = data[head_end + 4..].to_vec();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status: u16 = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line {status_line:?}"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let header = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let body = if let Some(len) = header("content-length").and_then(|v| v.parse::<usize>().ok()) {
        while rest.len() < len {
            let n = stream
                .read(&mut buf)
                .await
                .map_err(|e| format!("read body: {e}"))?;
            if n == 0 {
                break;
            }
            rest.extend_from_slice(&buf[..n]);
        }
        rest.truncate(len);
        rest
    } else {
        loop {
            let n = stream.read(&mut buf).await.unwrap_or(0);
            if n == 0 {
                break;
            }
            rest.extend_from_slice(&buf[..n]);
        }
        if header("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
            dechunk(&rest)
        } else {
            rest
        }
    };
    Ok(Answer {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
        at_ms: None,
    })
}

fn find(data: &[u8], needle: &[u8]) -> Option<usize> {
    data.windows(needle.len()).position(|w| w == needle)
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(line_end) = find(data, b"\r\n") {
        let size_text = String::from_utf8_lossy(&data[..line_end]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .unwrap_or(0);
        data = &data[line_end + 2..];
        if size == 0 || data.len() < size {
            break;
        }
        out.extend_from_slice(&data[..size]);
        data = &data[(size + 2).min(data.len())..];
    }
    out
}

async fn ws_actor(
    mut ws: WebSocketStream<TcpStream>,
    cmds: async_channel::Receiver<WsCmd>,
    events: async_channel::Sender<Item>,
) {
    enum Ev {
        Cmd(Option<WsCmd>),
        Msg(Option<Result<Message, WsError>>),
    }
    let mut closing = false;
    loop {
        let ev = futures_lite::future::or(async { Ev::Cmd(cmds.recv().await.ok()) }, async {
            Ev::Msg(ws.next().await)
        })
        .await;
        match ev {
            Ev::Cmd(None) | Ev::Cmd(Some(WsCmd::Drop)) => return,
            Ev::Cmd(Some(WsCmd::Text(text))) => {
                let _ = ws.send(Message::text(text)).await;
            }
            Ev::Cmd(Some(WsCmd::Binary(len))) => {
                let _ = ws.send(Message::binary(vec![0u8; len])).await;
            }
            Ev::Cmd(Some(WsCmd::Close(code))) => {
                closing = true;
                let _ = ws
                    .close(Some(CloseFrame {
                        code: CloseCode::from(code),
                        reason: "".into(),
                    }))
                    .await;
            }
            Ev::Msg(Some(Ok(Message::Text(text)))) if !closing => {
                let _ = events.send(Item::Frame(text.to_string())).await;
            }
            Ev::Msg(Some(Ok(Message::Ping(_)))) => {
                let _ = events.send(Item::Ping).await;
            }
            Ev::Msg(Some(Ok(Message::Close(frame)))) => {
                if !closing {
                    closing = true;
                    let _ = events
                        .send(Item::Close(frame.map(|f| u16::from(f.code))))
                        .await;
                }
            }
            Ev::Msg(Some(Ok(_))) => {}
            Ev::Msg(None) | Ev::Msg(Some(Err(_))) => {
                if !closing {
                    let _ = events.send(Item::Close(None)).await;
                }
                // Keep the task alive until told to go, without spinning.
                let _ = cmds.recv().await;
                return;
            }
        }
    }
}

impl Driver for LiveDriver {
    fn name(&self) -> &'static str {
        "live"
    }

    fn advance(&mut self, at_ms: u64) {
        let target = self.start + Duration::from_millis(at_ms);
        let now = Instant::now();
        if target > now {
            std::thread::sleep(target - now);
        }
    }

    fn clock_ms(&self) -> (u64, u64) {
        (
            self.start_unix_ms.saturating_sub(CLOCK_SLACK_MS),
            unix_ms() + CLOCK_SLACK_MS,
        )
    }

    fn http_start(
        &mut self,
        method: &str,
        path: &str,
        body: Vec<u8>,
        chunked: bool,
    ) -> Result<u64, String> {
        self.next += 1;
        let addr = self.addr;
        let (method, path) = (method.to_string(), path.to_string());
        let body = if body.is_empty() && !chunked {
            None
        } else {
            Some(body)
        };
        let task = smol::spawn(async move {
            timeout(
                Duration::from_secs(20),
                http_exchange(addr, &method, &path, body, chunked),
            )
            .await
            .unwrap_or_else(|| Err("no answer within 20 s".to_string()))
        });
        self.pending.insert(self.next, task);
        // Let the request reach the server before the next step.
        std::thread::sleep(Duration::from_millis(5));
        Ok(self.next)
    }

    fn http_answer(&mut self, handle: u64, wait: bool) -> Result<Option<Answer>, String> {
        let Some(task) = self.pending.remove(&handle) else {
            return Err("unknown request".to_string());
        };
        if !wait && !task.is_finished() {
            self.pending.insert(handle, task);
            return Ok(None);
        }
        match smol::block_on(timeout(WAIT, task)) {
            Some(result) => result.map(|answer| Some(self.single_node_view(answer))),
            None => Err(format!("no answer within {WAIT:?}")),
        }
    }

    fn ws_open(&mut self, actor: &str, path: &str) -> Result<Option<Answer>, String> {
        let addr = self.addr;
        let url = format!("ws://{addr}{path}");
        let result = smol::block_on(timeout(Duration::from_secs(20), async move {
            let stream = TcpStream::connect(addr)
                .await
                .map_err(|e| format!("connect: {e}"))?;
            Ok::<_, String>(async_tungstenite::client_async(url, stream).await)
        }))
        .ok_or_else(|| format!("no WebSocket handshake with {addr} within 20 s"))??;
        match result {
            Ok((ws, _response)) => {
                let (cmd_tx, cmd_rx) = async_channel::unbounded();
                let (ev_tx, ev_rx) = async_channel::unbounded();
                let task = smol::spawn(ws_actor(ws, cmd_rx, ev_tx));
                if let Some(old) = self.actors.insert(
                    actor.to_string(),
                    WsActor {
                        cmds: cmd_tx,
                        events: ev_rx,
                        pings: 0,
                        task: Some(task),
                    },
                ) {
                    old.cmds.close();
                }
                Ok(None)
            }
            Err(WsError::Http(response)) => Ok(Some(Answer {
                status: response.status().as_u16(),
                headers: Vec::new(),
                body: response
                    .body()
                    .as_ref()
                    .map(|b| String::from_utf8_lossy(b).into_owned())
                    .unwrap_or_default(),
                at_ms: None,
            })),
            Err(e) => Err(format!("websocket handshake: {e}")),
        }
    }

    fn ws_text(&mut self, actor: &str, text: String) -> Result<(), String> {
        let a = self.actor(actor)?;
        a.cmds
            .send_blocking(WsCmd::Text(text))
            .map_err(|_| "socket task ended".to_string())
    }

    fn ws_binary(&mut self, actor: &str, len: usize) -> Result<(), String> {
        let a = self.actor(actor)?;
        a.cmds
            .send_blocking(WsCmd::Binary(len))
            .map_err(|_| "socket task ended".to_string())
    }

    fn ws_close(&mut self, actor: &str, code: Option<u16>) -> Result<(), String> {
        let a = self.actor(actor)?;
        let cmd = match code {
            Some(code) => WsCmd::Close(code),
            None => WsCmd::Drop,
        };
        let _ = a.cmds.send_blocking(cmd);
        // Give the server a moment to see the close before the next step.
        std::thread::sleep(Duration::from_millis(20));
        Ok(())
    }

    fn ws_stall(&mut self, _actor: &str, _stall: bool) -> Result<(), String> {
        Err("ws_stall is engine-only (mark the step \"only\": \"engine\")".to_string())
    }

    fn ws_next(&mut self, actor: &str) -> Result<Option<Item>, String> {
        let a = self.actor(actor)?;
        loop {
            match smol::block_on(timeout(WAIT, a.events.recv())) {
                Some(Ok(Item::Ping)) => a.pings += 1,
                Some(Ok(item)) => return Ok(Some(item)),
                Some(Err(_)) | None => return Ok(None),
            }
        }
    }

    fn ws_quiet(&mut self, actor: &str) -> Result<Vec<Item>, String> {
        std::thread::sleep(Duration::from_millis(150));
        let a = self.actor(actor)?;
        let mut out = Vec::new();
        while let Ok(item) = a.events.try_recv() {
            match item {
                Item::Ping => a.pings += 1,
                item => out.push(item),
            }
        }
        Ok(out)
    }

    fn ws_pings(&mut self, actor: &str) -> Result<usize, String> {
        let a = self.actor(actor)?;
        while let Ok(item) = a.events.try_recv() {
            match item {
                Item::Ping => a.pings += 1,
                other => {
                    return Err(format!("unread frame before the ping check: {other:?}"));
                }
            }
        }
        Ok(std::mem::take(&mut a.pings))
    }

    fn leftovers(&mut self) -> Vec<(String, Item)> {
        let mut out = Vec::new();
        for (name, a) in &mut self.actors {
            while let Ok(item) = a.events.try_recv() {
                if !matches!(item, Item::Ping) {
                    out.push((name.clone(), item));
                }
            }
        }
        out
    }

    fn shutdown(&mut self) {
        if let Some(server) = self.server.take() {
            self.stopping = Some(std::thread::spawn(move || {
                let _ = server.shutdown();
            }));
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn finish(&mut self) {
        for (_, a) in std::mem::take(&mut self.actors) {
            a.cmds.close();
            if let Some(task) = a.task {
                let _ = smol::block_on(timeout(Duration::from_secs(2), task));
            }
        }
        self.pending.clear();
        if self.server.is_some() {
            self.shutdown();
        }
        if let Some(thread) = self.stopping.take() {
            // A server that does not stop fails the run rather than hanging it (when the run
            // is already failing, it is left behind).
            let deadline = Instant::now() + SHUTDOWN_WAIT;
            while !thread.is_finished() {
                if Instant::now() >= deadline {
                    if std::thread::panicking() {
                        return;
                    }
                    panic!("waited {SHUTDOWN_WAIT:?} for the live server to shut down");
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            let _ = thread.join();
        }
    }
}

impl Drop for LiveDriver {
    fn drop(&mut self) {
        self.finish();
    }
}
