//! `record`: an HTTP proxy that turns a live exchange into a conformance transcript.
//!
//! ```text
//! cargo run -p livebridge-conformance --bin record -- --out conformance/sessions/new.json \
//!     [--listen 127.0.0.1:5101] (--upstream 127.0.0.1:5100 | --serve) [--settings '{"queue_limit":3}'] \
//!     [--name NAME] [--max-exchanges N]
//! ```
//!
//! Point clients at `--listen`. Every request and its answer becomes a step (time offset from
//! the first request; actor from the `X-Actor` request header, else `http`). Requests that
//! overlap another request (long polls) become a `pending` step and a later `await` step.
//! Client ids are replaced by variables (`$c1`, ...), timestamps by `@time`, durations by
//! `@number`. The file is rewritten after every exchange; stop with Ctrl-C or
//! `--max-exchanges`. HTTP only: WebSocket traffic is not recorded (add `ws_*` steps by hand).
//! `--serve` starts the real server in-process with `--settings`; with `--upstream` the
//! settings are only written into the transcript and must match that server.

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use livebridge_conformance::live_backend::{http_exchange, read_response};
use livebridge_conformance::matcher::parse_time;
use livebridge_conformance::{Answer, Expect, HttpStep, Step, Transcript};
use livebridge_smol::{Server, ServerConfig};
use serde_json::{Map, Value};
use smol::net::{TcpListener, TcpStream};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

struct Exchange {
    actor: String,
    start_ms: u64,
    end_ms: u64,
    method: String,
    path: String,
    body: Option<Vec<u8>>,
    chunked: bool,
    answer: Answer,
}

struct Args {
    out: PathBuf,
    listen: SocketAddr,
    upstream: Option<SocketAddr>,
    serve: bool,
    settings: Map<String, Value>,
    name: String,
    max_exchanges: Option<usize>,
}

fn usage() -> ! {
    eprintln!(
        "usage: record --out FILE [--listen ADDR] (--upstream ADDR | --serve) [--settings JSON] [--name NAME] [--max-exchanges N]"
    );
    std::process::exit(2)
}

fn parse_args() -> Args {
    let mut args = Args {
        out: PathBuf::new(),
        listen: "127.0.0.1:5101".parse().unwrap(),
        upstream: None,
        serve: false,
        settings: Map::new(),
        name: String::new(),
        max_exchanges: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| usage());
        match flag.as_str() {
            "--out" => args.out = value().into(),
            "--listen" => args.listen = value().parse().unwrap_or_else(|_| usage()),
            "--upstream" => args.upstream = Some(value().parse().unwrap_or_else(|_| usage())),
            "--serve" => args.serve = true,
            "--settings" => {
                args.settings = serde_json::from_str(&value()).unwrap_or_else(|e| {
                    eprintln!("--settings: {e}");
                    usage()
                })
            }
            "--name" => args.name = value(),
            "--max-exchanges" => args.max_exchanges = value().parse().ok(),
            _ => usage(),
        }
    }
    if args.out.as_os_str().is_empty() || (args.upstream.is_none() != args.serve) {
        usage();
    }
    if args.name.is_empty() {
        args.name = args
            .out
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "recorded".to_string());
    }
    args
}

fn main() {
    let args = parse_args();
    let config: livebridge_core::Config =
        serde_json::from_value(Value::Object(args.settings.clone())).unwrap_or_else(|e| {
            eprintln!("--settings: {e}");
            usage()
        });
    let _server;
    let upstream = match args.upstream {
        Some(addr) => addr,
        None => {
            let server = Server::start(ServerConfig {
                bind: "127.0.0.1:0".parse().unwrap(),
                engine: config,
                ..ServerConfig::default()
            })
            .expect("server starts");
            let addr = server.local_addr();
            _server = server;
            addr
        }
    };
    let exchanges: Arc<Mutex<Vec<Exchange>>> = Arc::default();
    let args = Arc::new(args);
    smol::block_on(async {
        let listener = TcpListener::bind(args.listen).await.expect("bind --listen");
        println!(
            "recording http://{} -> http://{upstream} into {}",
            listener.local_addr().unwrap(),
            args.out.display()
        );
        let mut origin: Option<Instant> = None;
        let (done_tx, done_rx) = async_channel::unbounded::<()>();
        loop {
            let accepted =
                futures_lite::future::or(async { Some(listener.accept().await) }, async {
                    let _ = done_rx.recv().await;
                    None
                })
                .await;
            let Some(Ok((stream, _))) = accepted else {
                break;
            };
            let origin = *origin.get_or_insert_with(Instant::now);
            let (exchanges, args, done) = (exchanges.clone(), args.clone(), done_tx.clone());
            smol::spawn(async move {
                if let Some(exchange) = proxy(stream, upstream, origin).await {
                    let mut all = exchanges.lock().unwrap();
                    all.push(exchange);
                    let transcript = build(&args, &all);
                    let text = serde_json::to_string_pretty(&transcript).unwrap() + "\n";
                    if let Err(e) = std::fs::write(&args.out, text) {
                        eprintln!("{}: {e}", args.out.display());
                    }
                    if args.max_exchanges.is_some_and(|max| all.len() >= max) {
                        let _ = done.try_send(());
                    }
                }
            })
            .detach();
        }
    });
    println!("wrote {}", args.out.display());
}

/// Reads one request from the client, forwards it, answers the client, returns the exchange.
async fn proxy(mut client: TcpStream, upstream: SocketAddr, origin: Instant) -> Option<Exchange> {
    let mut data = Vec::new();
    let mut buf = [0u8; 4096];
    let head_end = loop {
        if let Some(pos) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            break pos;
        }
        let n = client.read(&mut buf).await.ok()?;
        if n == 0 {
            return None;
        }
        data.extend_from_slice(&buf[..n]);
    };
    let start_ms = origin.elapsed().as_millis() as u64;
    let head = String::from_utf8_lossy(&data[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut request_line = lines.next()?.split(' ');
    let method = request_line.next()?.to_string();
    let path = request_line.next()?.to_string();
    let headers: BTreeMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let mut body = data[head_end + 4..].to_vec();
    let chunked = headers
        .get("transfer-encoding")
        .is_some_and(|v| v.contains("chunked"));
    if let Some(len) = headers
        .get("content-length")
        .and_then(|v| v.parse::<usize>().ok())
    {
        while body.len() < len {
            let n = client.read(&mut buf).await.ok()?;
            if n == 0 {
                break;
            }
            body.extend_from_slice(&buf[..n]);
        }
        body.truncate(len);
    } else if chunked {
        while !body.ends_with(b"0\r\n\r\n") {
            let n = client.read(&mut buf).await.ok()?;
            if n == 0 {
                break;
            }
            body.extend_from_slice(&buf[..n]);
        }
        // Forward the decoded body, chunked again.
        let mut reader = futures_lite::io::Cursor::new(
            [
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".as_slice(),
                &body,
            ]
            .concat(),
        );
        body = read_response(&mut reader).await.ok()?.body.into_bytes();
    }
    let body = (!body.is_empty() || chunked).then_some(body);
    let answer = match http_exchange(upstream, &method, &path, body.clone(), chunked).await {
        Ok(answer) => answer,
        Err(e) => Answer {
            status: 502,
            headers: Vec::new(),
            body: serde_json::json!({"success": false, "error": e}).to_string(),
            at_ms: None,
        },
    };
    let end_ms = origin.elapsed().as_millis() as u64;
    let mut reply = format!("HTTP/1.1 {} Recorded\r\n", answer.status);
    for (name, value) in &answer.headers {
        if !matches!(
            name.as_str(),
            "content-length" | "transfer-encoding" | "connection"
        ) {
            reply.push_str(&format!("{name}: {value}\r\n"));
        }
    }
    reply.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n",
        answer.body.len()
    ));
    let _ = client.write_all(reply.as_bytes()).await;
    let _ = client.write_all(answer.body.as_bytes()).await;
    let _ = client.flush().await;
    Some(Exchange {
        actor: headers
            .get("x-actor")
            .cloned()
            .unwrap_or_else(|| "http".to_string()),
        start_ms,
        end_ms,
        method,
        path,
        body,
        chunked,
        answer,
    })
}

fn is_uuid(text: &str) -> bool {
    text.len() == 36 && text.parse::<livebridge_core::ClientId>().is_ok()
}

/// Names client ids (`$c1`...) and masks volatile values.
#[derive(Default)]
struct Volatile {
    ids: BTreeMap<String, String>,
}

impl Volatile {
    fn request_text(&self, text: &str) -> String {
        let mut out = text.to_string();
        for (id, var) in &self.ids {
            out = out.replace(id.as_str(), &format!("${var}"));
        }
        out
    }

    fn request_value(&self, value: &Value) -> Value {
        match value {
            Value::String(s) => match self.ids.get(s) {
                Some(var) => Value::String(format!("${var}")),
                None => Value::String(s.clone()),
            },
            Value::Array(items) => {
                Value::Array(items.iter().map(|v| self.request_value(v)).collect())
            }
            Value::Object(map) => Value::Object(
                map.iter()
                    .map(|(k, v)| (k.clone(), self.request_value(v)))
                    .collect(),
            ),
            other => other.clone(),
        }
    }

    fn pattern(&mut self, key: &str, value: &Value) -> Value {
        match value {
            Value::String(s) if is_uuid(s) => match self.ids.get(s) {
                Some(var) => Value::String(format!("${var}")),
                None => {
                    let var = format!("c{}", self.ids.len() + 1);
                    self.ids.insert(s.clone(), var.clone());
                    Value::String(format!("${var}@uuid"))
                }
            },
            Value::String(s) if parse_time(s).is_some() => Value::String(
                if matches!(key, "connected_at" | "last_activity" | "last_poll") {
                    "@timefmt"
                } else {
                    "@time"
                }
                .to_string(),
            ),
            Value::Number(_) if key.ends_with("_seconds") => Value::String("@number".to_string()),
            Value::Array(items) => {
                Value::Array(items.iter().map(|v| self.pattern(key, v)).collect())
            }
            Value::Object(map) => Value::Object(
                map.iter()
                    .map(|(k, v)| (k.clone(), self.pattern(k, v)))
                    .collect(),
            ),
            other => other.clone(),
        }
    }
}

fn build(args: &Args, exchanges: &[Exchange]) -> Transcript {
    // (time, order, exchange index, is the answer)
    let mut events: Vec<(u64, usize, usize, bool)> = Vec::new();
    let mut pending = vec![false; exchanges.len()];
    for (i, e) in exchanges.iter().enumerate() {
        pending[i] = exchanges.iter().enumerate().any(|(j, o)| {
            j != i
                && o.start_ms >= e.start_ms
                && o.start_ms < e.end_ms
                && (o.start_ms, j) > (e.start_ms, i)
        });
        events.push((e.start_ms, 0, i, false));
        if pending[i] {
            events.push((e.end_ms, 1, i, true));
        }
    }
    events.sort();
    let mut volatile = Volatile::default();
    let mut steps = Vec::new();
    for (at, _, i, is_answer) in events {
        let e = &exchanges[i];
        let name = format!("p{}", i + 1);
        let mut step = Step {
            at,
            actor: e.actor.clone(),
            ..Step::default()
        };
        if !is_answer {
            let body = e.body.as_ref().map(|b| {
                let text = String::from_utf8_lossy(b).into_owned();
                match serde_json::from_str::<Value>(&text) {
                    Ok(json) if text.trim_end().len() == text.len() => {
                        volatile.request_value(&json)
                    }
                    _ => Value::String(volatile.request_text(&text)),
                }
            });
            step.http = Some(HttpStep {
                method: e.method.clone(),
                path: volatile.request_text(&e.path),
                body,
                pad: None,
                chunked: e.chunked,
            });
            if pending[i] {
                step.pending = Some(name);
                steps.push(step);
                continue;
            }
        } else {
            step.await_ = Some(name);
        }
        let mut expect = Expect {
            status: e.answer.status,
            ..Expect::default()
        };
        match serde_json::from_str::<Value>(&e.answer.body) {
            Ok(json) => expect.body = Some(volatile.pattern("", &json)),
            Err(_) => {
                expect.text_contains = e.answer.body.lines().take(3).map(str::to_string).collect()
            }
        }
        if let Some((_, allow)) = e.answer.headers.iter().find(|(k, _)| k == "allow") {
            expect.headers.insert("allow".to_string(), allow.clone());
        }
        step.expect = Some(expect);
        steps.push(step);
    }
    Transcript {
        name: args.name.clone(),
        description: "Recorded by `record` (HTTP only).".to_string(),
        settings: args.settings.clone(),
        steps,
    }
}
