//! `livebridge-load`: drives a live livebridge server with WebSocket and long-poll
//! subscribers of one channel and several HTTP publishers, and measures what arrives.
//!
//! Every published event is a `job_progress` whose `message` field starts with
//! `lg<publisher>.<sequence>.<send time in µs>`; subscribers find it by scanning for the fixed
//! prefix `"message":"lg` (no JSON parse per frame), which gives publish→receive latency and,
//! per subscriber and publisher, gaps (lost) and repeats (duplicated) in the sequence. Losses
//! are compared with the drops the server reported (`messages_dropped` frames, `dropped` in
//! poll replies). Server CPU and RSS come from `/proc/PID/{stat,status}` before and after.
//!
//! Threads: the publishers have one of their own ([`publish`]), the WebSocket subscribers are
//! read by `--threads` epoll loops ([`wsreader`]), long-poll subscribers run on an executor;
//! `--compare` ([`compare`]) repeats a run against two server binaries.
//!
//! The last line on stdout is one JSON object with every result.

#![recursion_limit = "256"]

mod compare;
mod publish;
mod wsreader;

use async_tungstenite::tungstenite::Message;
use clap::Parser;
use futures_lite::{AsyncReadExt, AsyncWriteExt, StreamExt};
use publish::PublishPath;
use serde_json::json;
use smol::net::TcpStream;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

/// Load generator for livebridge: N WebSocket and M long-poll subscribers of one channel,
/// P publishers at a total rate R for T seconds.
#[derive(Parser, Debug, Clone)]
#[command(name = "livebridge-load", version)]
struct Args {
    /// Server address (host:port). Not needed with --spawn.
    #[arg(long, default_value = "127.0.0.1:5100")]
    addr: String,
    /// Publish to this address instead of the subscribers' (host:port): another node of a
    /// cluster, to measure delivery across nodes.
    #[arg(long)]
    publish_addr: Option<SocketAddr>,
    /// Start this server binary (`livebridge`) on 127.0.0.1:0 and measure it.
    #[arg(long)]
    spawn: Option<String>,
    /// Extra argument for the spawned server's `serve` (repeatable), e.g. `--server-arg=--threads=2`.
    #[arg(long = "server-arg", allow_hyphen_values = true)]
    server_args: Vec<String>,
    /// PID of the server to measure (CPU, RSS) when not spawned.
    #[arg(long)]
    server_pid: Option<u32>,
    /// WebSocket subscribers.
    #[arg(long = "ws", default_value_t = 100)]
    ws_clients: usize,
    /// Long-poll subscribers.
    #[arg(long = "poll", default_value_t = 0)]
    poll_clients: usize,
    /// `wait` of each long poll, in seconds.
    #[arg(long, default_value_t = 20.0)]
    poll_wait: f64,
    /// Publishers (one keep-alive HTTP connection each).
    #[arg(long, default_value_t = 4)]
    publishers: usize,
    /// Events per second, all publishers together (0: publish nothing, measure idle memory).
    #[arg(long, default_value_t = 100.0)]
    rate: f64,
    /// Events per `POST /api/events` (a JSON array when > 1); `ws-broadcast` takes one.
    #[arg(long, default_value_t = 1)]
    batch: usize,
    /// What the server speaks to WebSocket subscribers: livebridge, or Socket.IO (a peer such
    /// as `loadgen/peers/socketioxide`, whose `POST /api/events` emits to every subscriber).
    #[arg(long, value_enum, default_value_t = wsreader::Peer::Livebridge)]
    peer: wsreader::Peer,
    /// Where publishers send: `POST /api/events` or `POST /ws/broadcast` (to `--channel`).
    #[arg(long, value_enum, default_value_t = PublishPath::ApiEvents)]
    publish_path: PublishPath,
    /// Sent as `Authorization: Bearer` by the publishers (a server with `--admin-token`).
    #[arg(long)]
    admin_token: Option<String>,
    /// Seconds of publishing.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Approximate size of each delivered frame, in bytes.
    #[arg(long, default_value_t = 128)]
    payload: usize,
    /// Channel to subscribe to (the events are `job_progress`, on `jobs`).
    #[arg(long, default_value = "jobs")]
    channel: String,
    /// Connections opened at once while connecting.
    #[arg(long, default_value_t = 256)]
    connect_concurrency: usize,
    /// Seconds to wait for stragglers after the last publish.
    #[arg(long, default_value_t = 3.0)]
    grace: f64,
    /// Seconds to stay connected and idle before measuring RSS.
    #[arg(long, default_value_t = 1.0)]
    settle: f64,
    /// Executor threads of the subscriber readers (the publishers have a thread of their own).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// No progress bar or progress lines.
    #[arg(long)]
    quiet: bool,
    /// Instead of a load run, measure recovery: publish this many events on the channel, then
    /// 20 times open a WebSocket that subscribes with `since` its start and time until the last
    /// replayed event arrives (needs `--history-size` and `--recovery-max` at least as large).
    #[arg(long)]
    recover: Option<u64>,
    /// Run the scenario against two server binaries, A B A B (`--rounds`), a fresh server
    /// per run, and print every run and the ratio B/A of the main figures.
    #[arg(long, num_args = 2, value_names = ["A", "B"], conflicts_with_all = ["spawn", "recover", "server_pid"])]
    compare: Option<Vec<String>>,
    /// Rounds of `--compare` (each runs A, then B).
    #[arg(long, default_value_t = 2, requires = "compare")]
    rounds: usize,
}

// ---------------------------------------------------------------------------------------
// Latency histogram: log-linear buckets (5 bits of mantissa, ~3 % resolution), atomics so
// every task records into the same one without locks.

const MANTISSA_BITS: u32 = 5;
const BUCKETS: usize = ((64 - MANTISSA_BITS as usize) + 1) << MANTISSA_BITS;

struct Histogram {
    buckets: Vec<AtomicU64>,
    max: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    fn new() -> Self {
        Histogram {
            buckets: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            max: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }

    fn index(v: u64) -> usize {
        if v < (1 << MANTISSA_BITS) {
            return v as usize;
        }
        let exp = 63 - v.leading_zeros();
        let mantissa = (v >> (exp - MANTISSA_BITS)) & ((1 << MANTISSA_BITS) - 1);
        (((exp - MANTISSA_BITS + 1) << MANTISSA_BITS) as u64 + mantissa) as usize
    }

    /// The midpoint of a bucket.
    fn value(index: usize) -> u64 {
        let m = 1usize << MANTISSA_BITS;
        if index < m {
            return index as u64;
        }
        let exp = (index / m) as u32 + MANTISSA_BITS - 1;
        let mantissa = (index % m) as u64;
        let low = (1u64 << exp) | (mantissa << (exp - MANTISSA_BITS));
        low + (1u64 << (exp - MANTISSA_BITS)) / 2
    }

    fn record(&self, v: u64) {
        self.buckets[Self::index(v)].fetch_add(1, Relaxed);
        self.count.fetch_add(1, Relaxed);
        // Most values are below the maximum: a load is cheaper than a read-modify-write.
        if v > self.max.load(Relaxed) {
            self.max.fetch_max(v, Relaxed);
        }
    }

    fn quantile(&self, q: f64) -> u64 {
        let total = self.count.load(Relaxed);
        if total == 0 {
            return 0;
        }
        let rank = ((total as f64) * q).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, b) in self.buckets.iter().enumerate() {
            seen += b.load(Relaxed);
            if seen >= rank {
                return Self::value(i).min(self.max.load(Relaxed));
            }
        }
        self.max.load(Relaxed)
    }
}

// ---------------------------------------------------------------------------------------
// Shared state.

/// What one subscriber saw, updated by its task only (atomics so the main task can read).
struct SubState {
    /// Highest sequence seen per publisher.
    last: Vec<AtomicU64>,
    /// Sequence numbers skipped (gaps), over all publishers.
    gaps: AtomicU64,
    /// Sequence numbers seen again or out of order.
    dups: AtomicU64,
    /// Drops the server reported to this subscriber.
    drops: AtomicU64,
}

impl SubState {
    fn new(publishers: usize) -> Self {
        SubState {
            last: (0..publishers).map(|_| AtomicU64::new(0)).collect(),
            gaps: AtomicU64::new(0),
            dups: AtomicU64::new(0),
            drops: AtomicU64::new(0),
        }
    }
}

struct Shared {
    epoch: Instant,
    latency: Histogram,
    /// Publish request → its acknowledgement (the 200), microseconds.
    ack_latency: Histogram,
    delivered: AtomicU64,
    /// Events published (acknowledged by the server) per publisher.
    published: Vec<AtomicU64>,
    publish_errors: AtomicU64,
    ready: AtomicU64,
    failed: AtomicU64,
    poll_requests: AtomicU64,
    stop: AtomicBool,
}

impl Shared {
    fn new(publishers: usize) -> Self {
        Shared {
            epoch: Instant::now(),
            latency: Histogram::new(),
            ack_latency: Histogram::new(),
            delivered: AtomicU64::new(0),
            published: (0..publishers).map(|_| AtomicU64::new(0)).collect(),
            publish_errors: AtomicU64::new(0),
            ready: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            poll_requests: AtomicU64::new(0),
            stop: AtomicBool::new(false),
        }
    }

    fn now_micros(&self) -> u64 {
        self.epoch.elapsed().as_micros() as u64
    }
}

const MARK: &[u8] = b"\"message\":\"lg";

fn parse_u64(bytes: &[u8]) -> (u64, usize) {
    let mut value = 0u64;
    let mut used = 0;
    for &b in bytes {
        if !b.is_ascii_digit() {
            break;
        }
        value = value * 10 + u64::from(b - b'0');
        used += 1;
    }
    (value, used)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    memchr::memmem::find(haystack, needle)
}

/// The event mark, searched once per delivered frame: a prebuilt SIMD searcher.
fn find_mark(haystack: &[u8]) -> Option<usize> {
    static FINDER: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
        std::sync::LazyLock::new(|| memchr::memmem::Finder::new(MARK));
    FINDER.find(haystack)
}

/// Records every marked event in `text` (one frame, or a whole poll reply). Returns how many;
/// the caller adds them to `shared.delivered` (once per read, not per frame).
fn scan_events(shared: &Shared, sub: &SubState, text: &[u8], now: u64) -> u64 {
    let mut rest = text;
    let mut count = 0;
    while let Some(at) = find_mark(rest) {
        let s = &rest[at + MARK.len()..];
        let (publisher, a) = parse_u64(s);
        let s = &s[a + 1..];
        let (seq, b) = parse_u64(s);
        let s = &s[b + 1..];
        let (sent, c) = parse_u64(s);
        rest = &s[c..];
        shared.latency.record(now.saturating_sub(sent));
        count += 1;
        if let Some(last) = sub.last.get(publisher as usize) {
            let prev = last.load(Relaxed);
            if seq > prev {
                if seq > prev + 1 {
                    sub.gaps.fetch_add(seq - prev - 1, Relaxed);
                }
                last.store(seq, Relaxed);
            } else {
                sub.dups.fetch_add(1, Relaxed);
            }
        }
    }
    count
}

/// A reported drop count after `key` (e.g. `"dropped":`), if present.
fn reported_drops(text: &[u8], key: &[u8]) -> u64 {
    find(text, key).map_or(0, |at| parse_u64(&text[at + key.len()..]).0)
}

// ---------------------------------------------------------------------------------------
// Minimal HTTP/1.1 keep-alive client.

struct Http {
    stream: TcpStream,
    buf: Vec<u8>,
    host: String,
    /// A bearer token sent with every request (publishers of a server with an admin token).
    auth: Option<String>,
}

impl Http {
    async fn connect(addr: SocketAddr) -> std::io::Result<Http> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Http {
            stream,
            buf: Vec::with_capacity(16 * 1024),
            host: addr.to_string(),
            auth: None,
        })
    }

    fn write_request(&self, out: &mut Vec<u8>, method: &str, target: &str, body: &[u8]) {
        out.clear();
        out.extend_from_slice(method.as_bytes());
        out.push(b' ');
        out.extend_from_slice(target.as_bytes());
        out.extend_from_slice(b" HTTP/1.1\r\nHost: ");
        out.extend_from_slice(self.host.as_bytes());
        if let Some(token) = &self.auth {
            out.extend_from_slice(b"\r\nAuthorization: Bearer ");
            out.extend_from_slice(token.as_bytes());
        }
        if !body.is_empty() || method == "POST" {
            out.extend_from_slice(b"\r\nContent-Type: application/json\r\nContent-Length: ");
            out.extend_from_slice(body.len().to_string().as_bytes());
        }
        out.extend_from_slice(b"\r\n\r\n");
        out.extend_from_slice(body);
    }

    /// Sends one request (already encoded in `request`) and reads the reply; returns the
    /// status and the body's range in `self.buf`.
    async fn exchange(&mut self, request: &[u8]) -> std::io::Result<(u16, std::ops::Range<usize>)> {
        self.stream.write_all(request).await?;
        self.read_reply().await
    }

    async fn read_reply(&mut self) -> std::io::Result<(u16, std::ops::Range<usize>)> {
        self.buf.clear();
        let mut chunk = [0u8; 16 * 1024];
        let head_end = loop {
            if let Some(at) = find(&self.buf, b"\r\n\r\n") {
                break at + 4;
            }
            let n = self.stream.read(&mut chunk).await?;
            if n == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            self.buf.extend_from_slice(&chunk[..n]);
        };
        let head = &self.buf[..head_end];
        let status = parse_u64(head.get(9..).unwrap_or_default()).0 as u16;
        let lower: Vec<u8> = head.to_ascii_lowercase();
        let length = find(&lower, b"content-length:")
            .map(|at| {
                let s = &lower[at + 15..];
                let skip = s.iter().take_while(|b| **b == b' ').count();
                parse_u64(&s[skip..]).0 as usize
            })
            .unwrap_or(0);
        while self.buf.len() < head_end + length {
            let n = self.stream.read(&mut chunk).await?;
            if n == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
        Ok((status, head_end..head_end + length))
    }

    async fn call(
        &mut self,
        method: &str,
        target: &str,
        body: &[u8],
    ) -> std::io::Result<(u16, String)> {
        let mut request = Vec::new();
        self.write_request(&mut request, method, target, body);
        let (status, range) = self.exchange(&request).await?;
        Ok((
            status,
            String::from_utf8_lossy(&self.buf[range]).into_owned(),
        ))
    }
}

// ---------------------------------------------------------------------------------------
// Clients.

async fn poll_client(
    addr: SocketAddr,
    channel: String,
    wait: f64,
    shared: Arc<Shared>,
    sub: Arc<SubState>,
    done: async_channel::Sender<()>,
) {
    let connected = async {
        let mut http = Http::connect(addr).await?;
        let (status, body) = http
            .call("POST", "/ws/handshake", br#"{"client_type":"loadgen"}"#)
            .await?;
        let id = body
            .split("\"client_id\":\"")
            .nth(1)
            .and_then(|s| s.split('"').next())
            .filter(|_| status == 200)
            .ok_or_else(|| std::io::Error::other(format!("handshake: {status} {body}")))?
            .to_string();
        let send = format!(
            r#"{{"client_id":"{id}","message":{{"type":"subscribe","channels":["{channel}"]}}}}"#
        );
        let (status, body) = http.call("POST", "/ws/send", send.as_bytes()).await?;
        if status != 200 {
            return Err(std::io::Error::other(format!("subscribe: {status} {body}")));
        }
        // Take the `connection_established` message out of the queue.
        http.call("GET", &format!("/ws/poll?client_id={id}"), b"")
            .await?;
        Ok::<_, std::io::Error>((http, id))
    }
    .await;
    drop(done);
    let (mut http, id) = match connected {
        Ok(ok) => ok,
        Err(e) => {
            if shared.failed.fetch_add(1, Relaxed) < 5 {
                eprintln!("poll client failed: {e}");
            }
            return;
        }
    };
    shared.ready.fetch_add(1, Relaxed);
    let mut request = Vec::new();
    http.write_request(
        &mut request,
        "GET",
        &format!("/ws/poll?client_id={id}&wait={wait}"),
        b"",
    );
    while !shared.stop.load(Relaxed) {
        let Ok((status, range)) = http.exchange(&request).await else {
            break;
        };
        shared.poll_requests.fetch_add(1, Relaxed);
        if status != 200 {
            break;
        }
        let body = &http.buf[range];
        let now = shared.now_micros();
        let found = scan_events(&shared, &sub, body, now);
        shared.delivered.fetch_add(found, Relaxed);
        sub.drops
            .fetch_add(reported_drops(body, b"],\"dropped\":"), Relaxed);
    }
}

// ---------------------------------------------------------------------------------------
// Progress during the publish phase.

/// A progress bar on a terminal, a line per second in a log, or nothing with `--quiet`.
enum Progress {
    Quiet,
    Lines,
    Bar(indicatif::ProgressBar),
}

impl Progress {
    fn new(quiet: bool, duration_secs: f64) -> Progress {
        use std::io::IsTerminal;
        if quiet {
            return Progress::Quiet;
        }
        if !std::io::stderr().is_terminal() {
            return Progress::Lines;
        }
        let millis = (duration_secs * 1000.0) as u64;
        let bar = indicatif::ProgressBar::new(millis);
        let style = indicatif::ProgressStyle::with_template("{bar:30} {percent:>3}%  {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
        bar.set_style(style);
        Progress::Bar(bar)
    }

    /// How often to refresh: a bar can move smoothly, a log wants one line per second.
    fn interval(&self) -> Duration {
        match self {
            Progress::Bar(_) => Duration::from_millis(250),
            _ => Duration::from_secs(1),
        }
    }

    fn show(&self, elapsed: Duration, status: &str) {
        match self {
            Progress::Quiet => {}
            Progress::Lines => eprintln!("[{:6.1}s] {status}", elapsed.as_secs_f64()),
            Progress::Bar(bar) => {
                bar.set_position(elapsed.as_millis() as u64);
                bar.set_message(status.to_string());
            }
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Progress::Bar(bar) = self {
            bar.finish_and_clear();
        }
    }
}

// ---------------------------------------------------------------------------------------
// /proc readings of the server.

fn clock_ticks_per_second() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// (user + system CPU seconds, RSS in KiB, system CPU seconds) of `pid`.
fn proc_sample(pid: u32, ticks: f64) -> Option<(f64, u64, f64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    // Fields 14 and 15 of stat; `after` starts at field 3.
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some(((utime + stime) / ticks, rss, stime / ticks))
}

fn spawn_server(path: &str, extra: &[String]) -> (Child, SocketAddr) {
    let mut child = Command::new(path)
        .arg("serve")
        .args(["--bind", "127.0.0.1:0", "--log", "warn"])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {path}: {e}"));
    let stdout = child.stdout.take().expect("piped stdout");
    let mut lines = BufReader::new(stdout).lines();
    let addr = loop {
        let line = lines
            .next()
            .expect("server exited before listening")
            .expect("server stdout");
        if let Some(rest) = line.split("listening on http://").nth(1) {
            break rest.trim().parse().expect("server address");
        }
    };
    // Keep draining stdout so the server never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    (child, addr)
}

/// Checks the combinations clap cannot express; the message names the flag.
fn validate(args: &Args) -> Result<(), String> {
    if args.publishers == 0 {
        return Err("--publishers must be at least 1".into());
    }
    if args.batch == 0 {
        return Err("--batch must be at least 1".into());
    }
    if args.publish_path == PublishPath::WsBroadcast && args.batch > 1 {
        return Err(
            "--publish-path ws-broadcast sends one event per request: --batch must be 1".into(),
        );
    }
    if args.peer == wsreader::Peer::Socketio
        && (args.poll_clients > 0 || args.publish_path != PublishPath::ApiEvents)
    {
        return Err("--peer socketio has WebSocket subscribers and POST /api/events only".into());
    }
    if args.compare.is_some() && args.rounds == 0 {
        return Err("--rounds must be at least 1".into());
    }
    Ok(())
}

fn stop_server(child: Option<Child>) {
    if let Some(mut child) = child {
        let _ = child.kill();
        let _ = child.wait();
    }
}

fn main() {
    let args = Args::parse();
    if let Err(problem) = validate(&args) {
        eprintln!("livebridge-load: {problem}");
        std::process::exit(2);
    }
    if let Some([a, b]) = args.compare.as_deref() {
        let summary = compare::compare(a, b, args.rounds, |binary| {
            let (child, addr) = spawn_server(binary, &args.server_args);
            let result = measure(&args, addr, Some(child.id()));
            stop_server(Some(child));
            result
        });
        println!("{summary}");
        return;
    }
    let (child, addr) = match &args.spawn {
        Some(path) => {
            let (child, addr) = spawn_server(path, &args.server_args);
            (Some(child), addr)
        }
        None => (
            None,
            args.addr
                .parse::<SocketAddr>()
                .expect("--addr must be host:port (an IP address)"),
        ),
    };
    let pid = child.as_ref().map(Child::id).or(args.server_pid);
    if let Some(events) = args.recover {
        let result = smol::block_on(measure_recovery(
            addr,
            &args.channel,
            events,
            args.admin_token.clone(),
        ));
        stop_server(child);
        println!("{}", result.expect("recovery measurement"));
        return;
    }
    let result = measure(&args, addr, pid);
    stop_server(child);
    println!("{result}");
}

/// One load run against the server at `addr`: the subscriber readers on `--threads`
/// executor threads, the publishers on their own (see [`publish`]).
fn measure(args: &Args, addr: SocketAddr, pid: Option<u32>) -> serde_json::Value {
    let ex = Arc::new(smol::Executor::new());
    let (stop_tx, stop_rx) = async_channel::bounded::<()>(1);
    let threads: Vec<_> = (0..args.threads.max(1))
        .map(|i| {
            let ex = Arc::clone(&ex);
            let stop_rx = stop_rx.clone();
            std::thread::Builder::new()
                .name(format!("readers-{i}"))
                .spawn(move || smol::block_on(ex.run(stop_rx.recv())))
                .expect("reader thread")
        })
        .collect();
    let result = smol::block_on(run(&ex, args, addr, pid));
    drop(stop_tx);
    for t in threads {
        let _ = t.join();
    }
    result
}

/// The server's `/api/websocket/stats`, if it answers.
async fn server_stats(addr: SocketAddr, args: &Args) -> Option<serde_json::Value> {
    let mut http = Http::connect(addr).await.ok()?;
    http.auth = args.admin_token.clone();
    let (_, body) = http.call("GET", "/api/websocket/stats", b"").await.ok()?;
    serde_json::from_str::<serde_json::Value>(&body).ok()
}

/// `--recover N`: the time from a `subscribe` with `since` to the last of N replayed events.
async fn measure_recovery(
    addr: SocketAddr,
    channel: &str,
    events: u64,
    admin_token: Option<String>,
) -> std::io::Result<serde_json::Value> {
    let mut http = Http::connect(addr).await?;
    http.auth = admin_token;
    let mut request = Vec::new();
    let mut published = 0;
    while published < events {
        let batch = (events - published).min(200);
        let body: Vec<String> = (0..batch)
            .map(|i| {
                format!(
                    r#"{{"type":"job_progress","job_id":{},"stage":"s","progress":1}}"#,
                    published + i
                )
            })
            .collect();
        http.write_request(
            &mut request,
            "POST",
            "/api/events",
            format!("[{}]", body.join(",")).as_bytes(),
        );
        let (status, _) = http.exchange(&request).await?;
        assert_eq!(status, 200, "publishing for --recover");
        published += batch;
    }
    http.write_request(
        &mut request,
        "GET",
        &format!("/api/history/{channel}?limit=0"),
        b"",
    );
    let (_, range) = http.exchange(&request).await?;
    let history: serde_json::Value =
        serde_json::from_slice(&http.buf[range]).map_err(std::io::Error::other)?;
    let (latest, epoch) = (
        history["offset"].as_u64().unwrap_or(0),
        history["epoch"].clone(),
    );
    let mut times = Vec::new();
    for _ in 0..20 {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let (mut ws, _) = async_tungstenite::client_async(format!("ws://{addr}/ws"), stream)
            .await
            .map_err(std::io::Error::other)?;
        let since = serde_json::json!({"type": "subscribe", "channels": [channel],
            "since": {channel: {"offset": latest - events, "epoch": epoch}}});
        let started = Instant::now();
        ws.send(Message::text(since.to_string()))
            .await
            .map_err(std::io::Error::other)?;
        let needle = format!("\"offset\":{latest},");
        while let Some(message) = ws.next().await {
            if let Ok(Message::Text(text)) = message
                && text.as_str().contains(&needle)
                && text.as_str().starts_with(r#"{"type":"job_progress""#)
            {
                break;
            }
        }
        times.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    times.sort_by(f64::total_cmp);
    Ok(serde_json::json!({
        "recovered_events": events,
        "runs": times.len(),
        "ms_p50": times[times.len() / 2],
        "ms_p95": times[times.len() * 95 / 100],
        "ms_max": times[times.len() - 1],
    }))
}

async fn run(
    ex: &Arc<smol::Executor<'static>>,
    args: &Args,
    addr: SocketAddr,
    pid: Option<u32>,
) -> serde_json::Value {
    let ticks = clock_ticks_per_second();
    let shared = Arc::new(Shared::new(args.publishers));
    let self_pid = std::process::id();
    // Let the server finish starting before the baseline.
    smol::Timer::after(Duration::from_millis(300)).await;
    let base = pid.and_then(|p| proc_sample(p, ticks));

    // Connect the subscribers: the WebSocket ones on their reader threads, the long-polling
    // ones on the executor, `connect_concurrency` at a time.
    let total = args.ws_clients + args.poll_clients;
    let connect_start = Instant::now();
    let subs: Vec<Arc<SubState>> = (0..total)
        .map(|_| Arc::new(SubState::new(args.publishers)))
        .collect();
    let readers = wsreader::spawn_readers(
        args.peer,
        addr,
        &args.channel,
        subs[..args.ws_clients].to_vec(),
        args.threads,
        &shared,
    );
    let mut tasks = Vec::with_capacity(args.poll_clients);
    let (permit_tx, permit_rx) = async_channel::bounded::<()>(args.connect_concurrency.max(1));
    for sub in &subs[args.ws_clients..] {
        let sub = Arc::clone(sub);
        permit_tx.send(()).await.expect("permits");
        let (done_tx, done_rx) = async_channel::bounded::<()>(1);
        let permits = permit_rx.clone();
        ex.spawn(async move {
            let _ = done_rx.recv().await;
            let _ = permits.recv().await;
        })
        .detach();
        let shared = Arc::clone(&shared);
        let channel = args.channel.clone();
        tasks.push(ex.spawn(poll_client(
            addr,
            channel,
            args.poll_wait,
            shared,
            sub,
            done_tx,
        )));
    }
    while shared.ready.load(Relaxed) + shared.failed.load(Relaxed) < total as u64 {
        smol::Timer::after(Duration::from_millis(20)).await;
    }
    let connect_secs = connect_start.elapsed().as_secs_f64();
    let ready = shared.ready.load(Relaxed);
    eprintln!(
        "connected {ready}/{total} subscribers in {connect_secs:.2}s ({} failed)",
        shared.failed.load(Relaxed)
    );
    smol::Timer::after(Duration::from_secs_f64(args.settle)).await;
    let idle = pid.and_then(|p| proc_sample(p, ticks));
    let rss_per_conn = match (base, idle) {
        (Some((_, b, _)), Some((_, i, _))) if ready > 0 => {
            Some((i as f64 - b as f64) * 1024.0 / ready as f64)
        }
        _ => None,
    };

    // Publish.
    let mut published_total = 0u64;
    let mut publish_secs = 0.0;
    let mut drain_secs = 0.0;
    let stats_before = server_stats(addr, args).await;
    let mut publisher_thread_cpu = None;
    let before = pid.and_then(|p| proc_sample(p, ticks));
    let self_before = proc_sample(self_pid, ticks);
    let delivered_before = shared.delivered.load(Relaxed);
    if args.rate > 0.0 && args.duration > 0.0 {
        let (started_tx, started_rx) = async_channel::bounded(1);
        let publish_to = args.publish_addr.unwrap_or(addr);
        let publishers =
            publish::spawn_publishers(publish_to, args, Arc::clone(&shared), started_tx);
        let start = started_rx.recv().await.unwrap_or_else(|_| Instant::now());
        let progress = {
            let shared = Arc::clone(&shared);
            let progress = Progress::new(args.quiet, args.duration);
            ex.spawn(async move {
                let mut last = 0;
                let mut tick = Instant::now();
                loop {
                    smol::Timer::after(progress.interval()).await;
                    let delivered = shared.delivered.load(Relaxed);
                    let published: u64 = shared.published.iter().map(|p| p.load(Relaxed)).sum();
                    let secs = tick.elapsed().as_secs_f64();
                    tick = Instant::now();
                    progress.show(
                        start.elapsed(),
                        &format!(
                            "published {published:>9}  delivered {delivered:>11}  {:>10.0} deliveries/s  p50 {:>6} µs  p99 {:>7} µs",
                            (delivered - last) as f64 / secs,
                            shared.latency.quantile(0.5),
                            shared.latency.quantile(0.99),
                        ),
                    );
                    last = delivered;
                }
            })
        };
        // The publisher thread ends with the schedule; wait for it without blocking this
        // executor thread.
        let (done_tx, done_rx) = async_channel::bounded(1);
        std::thread::spawn(move || {
            let _ = done_tx.send_blocking(publishers.join());
        });
        match done_rx.recv().await {
            Ok(Ok(outcome)) => publisher_thread_cpu = outcome.thread_cpu_secs,
            _ => eprintln!("the publisher thread failed"),
        }
        publish_secs = start.elapsed().as_secs_f64();
        published_total = shared.published.iter().map(|p| p.load(Relaxed)).sum();
        // Wait for stragglers: until everything expected arrived, or nothing moved for a
        // while, or the grace period ends.
        let expected = published_total * ready;
        let drain_start = Instant::now();
        let mut last = shared.delivered.load(Relaxed);
        let mut still = Instant::now();
        while drain_start.elapsed().as_secs_f64() < args.grace {
            smol::Timer::after(Duration::from_millis(20)).await;
            let now = shared.delivered.load(Relaxed);
            if now - delivered_before >= expected {
                break;
            }
            if now != last {
                last = now;
                still = Instant::now();
            } else if still.elapsed() > Duration::from_millis(1000) {
                break;
            }
        }
        drain_secs = drain_start.elapsed().as_secs_f64();
        drop(progress);
    }
    let after = pid.and_then(|p| proc_sample(p, ticks));
    let self_after = proc_sample(self_pid, ticks);
    let delivered = shared.delivered.load(Relaxed) - delivered_before;

    // Loss accounting per subscriber: gaps plus a missing tail, against reported drops.
    let published: Vec<u64> = shared.published.iter().map(|p| p.load(Relaxed)).collect();
    let (mut gaps, mut tail, mut dups, mut drops, mut unexplained, mut lossy_subs) =
        (0u64, 0u64, 0u64, 0u64, 0u64, 0u64);
    for sub in subs.iter().take(total) {
        let sub_gaps = sub.gaps.load(Relaxed);
        let sub_tail: u64 = sub
            .last
            .iter()
            .zip(&published)
            .map(|(last, &p)| p.saturating_sub(last.load(Relaxed)))
            .sum();
        let sub_drops = sub.drops.load(Relaxed);
        gaps += sub_gaps;
        tail += sub_tail;
        dups += sub.dups.load(Relaxed);
        drops += sub_drops;
        let lost = (sub_gaps + sub_tail).saturating_sub(sub_drops);
        unexplained += lost;
        if sub_gaps + sub_tail > 0 {
            lossy_subs += 1;
        }
    }
    // Subscribers that never connected would count everything as lost: exclude them.
    let failed = shared.failed.load(Relaxed);
    if failed > 0 {
        let missing_each: u64 = published.iter().sum();
        tail = tail.saturating_sub(missing_each * failed);
        unexplained = unexplained.saturating_sub(missing_each * failed);
    }
    shared.stop.store(true, Relaxed);
    for reader in readers {
        let _ = reader.join();
    }

    let server_stats = server_stats(addr, args).await;
    // The server's own count of what it handed to clients over the same phase (it includes
    // replies and notices, a handful here): a check of `delivered` that does not depend on
    // this tool's readers.
    let server_delivered = match (&stats_before, &server_stats) {
        (Some(b), Some(a)) => a["messages_delivered"]
            .as_u64()
            .zip(b["messages_delivered"].as_u64())
            .map(|(a, b)| a.saturating_sub(b)),
        _ => None,
    };
    let cpu = match (before, after) {
        (Some((b, _, _)), Some((a, _, _))) => Some(a - b),
        _ => None,
    };
    let sys_cpu = match (before, after) {
        (Some((_, _, b)), Some((_, _, a))) => Some(a - b),
        _ => None,
    };
    let tool_cpu = match (self_before, self_after) {
        (Some((b, _, _)), Some((a, _, _))) => Some(a - b),
        _ => None,
    };
    let wall = publish_secs + drain_secs;
    let lat = &shared.latency;
    let result = json!({
        "ws_clients": args.ws_clients,
        "poll_clients": args.poll_clients,
        "connected": ready,
        "connect_failed": failed,
        "connect_secs": connect_secs,
        "publishers": args.publishers,
        "rate": args.rate,
        "batch": args.batch,
        "payload": args.payload,
        "duration": args.duration,
        "publish_secs": publish_secs,
        "drain_secs": drain_secs,
        "published": published_total,
        "publish_rate": if publish_secs > 0.0 { published_total as f64 / publish_secs } else { 0.0 },
        "publish_errors": shared.publish_errors.load(Relaxed),
        "expected_deliveries": published_total * ready,
        "delivered": delivered,
        "deliveries_per_sec": if publish_secs > 0.0 { delivered as f64 / publish_secs } else { 0.0 },
        "latency_us": {
            "p50": lat.quantile(0.5), "p90": lat.quantile(0.9), "p99": lat.quantile(0.99),
            "p999": lat.quantile(0.999), "max": lat.max.load(Relaxed), "count": lat.count.load(Relaxed),
        },
        "ack_latency_us": {
            "p50": shared.ack_latency.quantile(0.5), "p99": shared.ack_latency.quantile(0.99),
            "max": shared.ack_latency.max.load(Relaxed), "count": shared.ack_latency.count.load(Relaxed),
        },
        "gaps": gaps,
        "missing_tail": tail,
        "reported_drops": drops,
        "lost_unexplained": unexplained,
        "subscribers_with_loss": lossy_subs,
        "duplicates": dups,
        "poll_requests": shared.poll_requests.load(Relaxed),
        "server_pid": pid,
        "server_rss_base_kib": base.map(|b| b.1),
        "server_rss_idle_kib": idle.map(|i| i.1),
        "server_rss_after_kib": after.map(|a| a.1),
        "rss_bytes_per_conn": rss_per_conn,
        "server_cpu_secs": cpu,
        "server_sys_cpu_secs": sys_cpu,
        "server_cpu_util": cpu.map(|c| if wall > 0.0 { c / wall } else { 0.0 }),
        "server_cpu_ns_per_delivery": cpu.filter(|_| delivered > 0).map(|c| c * 1e9 / delivered as f64),
        "tool_cpu_secs": tool_cpu,
        "tool_cpu_ns_per_delivery": tool_cpu.filter(|_| delivered > 0).map(|c| c * 1e9 / delivered as f64),
        "tool_publisher_cpu_secs": publisher_thread_cpu,
        "tool_reader_threads": args.threads.max(1),
        "publish_path": args.publish_path.name(),
        "peer": format!("{:?}", args.peer).to_lowercase(),
        "server_messages_delivered": server_delivered,
        "server_stats": server_stats,
    });
    for t in tasks {
        drop(t);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn shared(publishers: usize) -> Shared {
        Shared::new(publishers)
    }

    fn parse(line: &[&str]) -> Result<Args, clap::Error> {
        Args::try_parse_from(std::iter::once("livebridge-load").chain(line.iter().copied()))
    }

    #[test]
    fn existing_flags_still_parse() {
        let args = parse(&[
            "--spawn",
            "target/release/livebridge",
            "--server-arg=--threads=2",
            "--ws",
            "1000",
            "--rate",
            "1000",
            "--publishers",
            "32",
            "--batch",
            "10",
            "--threads",
            "2",
            "--quiet",
        ])
        .unwrap();
        assert_eq!(args.server_args, ["--threads=2"]);
        assert_eq!(
            (args.ws_clients, args.publishers, args.batch),
            (1000, 32, 10)
        );
        assert_eq!(args.publish_path, PublishPath::ApiEvents);
        assert!(args.compare.is_none());
        let args = parse(&[
            "--addr",
            "127.0.0.1:5100",
            "--server-pid",
            "7",
            "--recover",
            "1000",
        ])
        .unwrap();
        assert_eq!((args.server_pid, args.recover), (Some(7), Some(1000)));
    }

    #[test]
    fn compare_takes_two_binaries_and_rounds() {
        let args = parse(&[
            "--compare",
            "old/livebridge",
            "new/livebridge",
            "--ws",
            "10",
        ])
        .unwrap();
        assert_eq!(
            args.compare.as_deref().unwrap(),
            ["old/livebridge", "new/livebridge"]
        );
        assert_eq!(args.rounds, 2);
        let args = parse(&["--compare", "a", "b", "--rounds", "3"]).unwrap();
        assert_eq!(args.rounds, 3);
        assert!(parse(&["--compare", "only-one"]).is_err());
        assert!(parse(&["--compare", "a", "b", "--spawn", "c"]).is_err());
        assert!(
            parse(&["--rounds", "3"]).is_err(),
            "--rounds without --compare"
        );
        assert!(validate(&parse(&["--compare", "a", "b", "--rounds", "0"]).unwrap()).is_err());
    }

    #[test]
    fn broadcast_publishing_is_one_event_per_request() {
        let args = parse(&["--publish-path", "ws-broadcast"]).unwrap();
        assert_eq!(args.publish_path, PublishPath::WsBroadcast);
        assert_eq!(args.publish_path.target(), "/ws/broadcast");
        assert!(validate(&args).is_ok());
        let batched = parse(&["--publish-path", "ws-broadcast", "--batch", "10"]).unwrap();
        assert!(validate(&batched).unwrap_err().contains("--batch"));
        assert!(parse(&["--publish-path", "nowhere"]).is_err());
    }

    #[test]
    fn requests_carry_the_bearer_token_when_given() {
        smol::block_on(async {
            let listener = smol::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let mut http = Http::connect(listener.local_addr().unwrap()).await.unwrap();
            let mut out = Vec::new();
            http.write_request(&mut out, "POST", "/ws/broadcast", b"{}");
            assert!(!String::from_utf8_lossy(&out).contains("Authorization"));
            http.auth = Some("secret".into());
            http.write_request(&mut out, "POST", "/ws/broadcast", b"{}");
            let text = String::from_utf8(out).unwrap();
            assert!(text.contains("\r\nAuthorization: Bearer secret\r\n"));
            assert!(text.ends_with("Content-Length: 2\r\n\r\n{}"));
        });
    }
}
