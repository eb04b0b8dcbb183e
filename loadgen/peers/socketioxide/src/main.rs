//! The peer livebridge is measured against: socketioxide on axum and tokio with as many worker
//! threads as livebridge's executor (`--threads`, default 2). Every Socket.IO client that
//! connects to `/` joins the room `jobs`; `POST /api/events` with one event (a JSON object) or
//! several (a JSON array) emits each to the room as a `job_progress` event, as livebridge's
//! `POST /api/events` publishes to the channel `jobs`. `GET /api/websocket/stats` answers how many
//! emits socketioxide refused, which the load tool prints.

use axum::Json;
use axum::extract::State;
use axum::routing::{get, post};
use axum::serve::ListenerExt;
use serde_json::{Value, json};
use socketioxide::extract::SocketRef;
use socketioxide::{BroadcastError, SocketIo};
use std::sync::atomic::{AtomicU64, Ordering};

/// Emits socketioxide refused (a socket's buffer full, or it closed): the drops it does not
/// tell the client about, for comparison with the tool's count of lost events.
static EMIT_ERRORS: AtomicU64 = AtomicU64::new(0);

fn main() {
    let mut bind = "127.0.0.1:5800".to_string();
    let mut threads = 2;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--bind" => bind = args.next().expect("--bind ADDR"),
            "--threads" => {
                threads = args
                    .next()
                    .and_then(|n| n.parse().ok())
                    .expect("--threads N")
            }
            // The load tool's --spawn passes these to livebridge; they mean nothing here.
            "serve" | "--log" => {
                if arg == "--log" {
                    args.next();
                }
            }
            other => panic!("unknown argument {other}"),
        }
    }
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
        .expect("tokio runtime")
        .block_on(serve(bind));
}

async fn serve(bind: String) {
    let (layer, io) = SocketIo::new_layer();
    io.ns("/", async |socket: SocketRef| {
        socket.join("jobs");
    });
    let app = axum::Router::new()
        .route("/api/events", post(publish))
        .route("/api/websocket/stats", get(stats))
        .with_state(io)
        .layer(layer);
    let listener = tokio::net::TcpListener::bind(&bind).await.expect("bind");
    println!(
        "socketioxide peer listening on http://{}",
        listener.local_addr().expect("local address")
    );
    // As livebridge does: without TCP_NODELAY a small frame behind an unacknowledged one waits
    // for the client's delayed ACK (~40 ms).
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, app).await.expect("serve");
}

async fn publish(State(io): State<SocketIo>, Json(body): Json<Value>) -> Json<Value> {
    let events = match body {
        Value::Array(events) => events,
        event => vec![event],
    };
    let mut sent = 0;
    for event in &events {
        match io.to("jobs").emit("job_progress", event).await {
            Ok(()) => sent += 1,
            Err(error) => {
                let refused = match error {
                    BroadcastError::Socket(sockets) => sockets.len(),
                    _ => 1,
                };
                EMIT_ERRORS.fetch_add(refused as u64, Ordering::Relaxed);
            }
        }
    }
    Json(json!({"success": true, "events": sent}))
}

async fn stats() -> Json<Value> {
    let emit_errors = EMIT_ERRORS.load(Ordering::Relaxed);
    Json(json!({"success": true, "emit_errors": emit_errors}))
}
