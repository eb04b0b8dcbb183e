//! An echo service for the Autobahn|Testsuite fuzzing client on this runtime's WebSocket
//! code: [`websocket::serve`] (the function that serves `/ws`) with an echo [`Peer`] instead
//! of the hub.
//!
//! ```text
//! cargo run --release -p livebridge-axum --example axum-autobahn-echo -- --bind 127.0.0.1:9001 --max-frame 16MiB
//! ```

use axum::extract::ws::WebSocketUpgrade;
use axum::response::Response;
use clap::Parser;
use livebridge_axum::outbox::{ConnCommand, Outbox};
use livebridge_axum::websocket::{self, Incoming, Peer};
use livebridge_core::ConnId;
use std::collections::HashMap;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// WebSocket echo service for Autobahn|Testsuite, on livebridge-axum's WebSocket code.
#[derive(Debug, Parser)]
#[command(name = "autobahn-echo")]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:9001")]
    bind: SocketAddr,
    /// Largest WebSocket message: bytes, or with a `KiB`/`MiB` suffix (default: the server
    /// default, 64 KiB).
    #[arg(long, default_value = "64KiB", value_parser = parse_size)]
    max_frame: usize,
}

fn parse_size(text: &str) -> Result<usize, String> {
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(at) => text.split_at(at),
        None => (text, ""),
    };
    let number: usize = number.parse().map_err(|_| format!("not a size: {text}"))?;
    let unit = match unit {
        "" => 1,
        "KiB" => 1024,
        "MiB" => 1024 * 1024,
        _ => return Err(format!("unknown unit in {text} (use KiB or MiB)")),
    };
    Ok(number * unit)
}

/// Echoes every text and binary message back on the same connection.
#[derive(Default)]
struct Echo {
    next_conn: AtomicU64,
    conns: Mutex<HashMap<ConnId, Arc<Outbox>>>,
}

impl Echo {
    fn send(&self, conn: ConnId, command: ConnCommand) {
        let outbox = self.conns.lock().unwrap().get(&conn).cloned();
        if let Some(outbox) = outbox {
            outbox.push(command);
        }
    }
}

impl Peer for Echo {
    fn on_message(&self, conn: ConnId, message: Incoming) {
        match message {
            Incoming::Text(text) => self.send(conn, ConnCommand::Text(text.into())),
            Incoming::Binary(bytes) => self.send(conn, ConnCommand::Binary(bytes)),
            Incoming::Pong => {}
        }
    }

    fn on_written(&self, _conn: ConnId, _frames: usize) {}

    fn on_closed(&self, conn: ConnId, _code: Option<u16>) {
        self.conns.lock().unwrap().remove(&conn);
    }
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let args = Args::parse();
    let echo = Arc::new(Echo::default());
    let max_frame = args.max_frame;
    let app = axum::Router::new().fallback(move |ws: WebSocketUpgrade| {
        let echo = Arc::clone(&echo);
        async move {
            let conn = ConnId(echo.next_conn.fetch_add(1, Ordering::Relaxed));
            let outbox = Outbox::new();
            echo.conns.lock().unwrap().insert(conn, Arc::clone(&outbox));
            let response: Response = ws
                .max_message_size(max_frame)
                .max_frame_size(max_frame)
                .on_upgrade(move |socket| {
                    websocket::serve(socket, conn, outbox, echo, Duration::from_secs(2))
                });
            response
        }
    });
    let listener = tokio::net::TcpListener::bind(args.bind).await?;
    println!("autobahn-echo listening on ws://{}", listener.local_addr()?);
    std::io::stdout().flush()?;
    axum::serve(listener, app).await
}
