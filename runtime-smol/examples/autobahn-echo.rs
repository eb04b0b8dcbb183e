//! An echo service for the Autobahn|Testsuite fuzzing client, on exactly the connection code
//! that serves `/ws`: [`serve_connection`] with the server's [`ConnectionLimits`] and close
//! handling, and an echo [`Backend`] instead of the hub.
//!
//! ```text
//! cargo run --release -p livebridge-smol --example autobahn-echo -- --bind 127.0.0.1:9001
//! ```
//!
//! `--max-frame` sets the largest message accepted (default: the server default, 64 KiB);
//! `scripts/autobahn.sh` raises it for the 16 MiB messages of Autobahn's case 9.

use clap::Parser;
use livebridge_core::{ConnId, HttpRequest, Reply};
use livebridge_smol::ServerConfig;
use livebridge_smol::cli::parse_size;
use livebridge_smol::connection::{Backend, BoxFuture, ConnectionLimits, serve_connection};
use livebridge_smol::outbox::{ConnCommand, Handoff, Outbox};
use livebridge_smol::websocket::{Incoming, WsPeer};
use smol::net::TcpListener;
use std::collections::HashMap;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// WebSocket echo service for Autobahn|Testsuite, on livebridge's WebSocket code.
#[derive(Debug, Parser)]
#[command(name = "autobahn-echo")]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:9001")]
    bind: SocketAddr,
    /// Largest WebSocket message (default: the server default).
    #[arg(long, value_parser = parse_size)]
    max_frame: Option<usize>,
}

/// Echoes every text and binary message back on the same connection.
#[derive(Default)]
struct Echo {
    next_conn: AtomicU64,
    conns: Mutex<HashMap<ConnId, Arc<Outbox>>>,
}

impl Echo {
    fn send(&self, conn: ConnId, command: ConnCommand) {
        let Some(outbox) = self.conns.lock().unwrap().get(&conn).cloned() else {
            return;
        };
        // As the hub does: a text frame for a parked connection is written right here.
        match outbox.push(command) {
            Handoff::Nothing => {}
            Handoff::Wake(task) => task.wake(),
            Handoff::WriteDirectly => {
                if let Some(task) = outbox.write_queued().wake {
                    task.wake();
                }
            }
        }
    }
}

impl WsPeer for Echo {
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

impl Backend for Echo {
    fn http<'a>(
        &'a self,
        _http: HttpRequest,
        _peer_gone: BoxFuture<'a, ()>,
    ) -> BoxFuture<'a, Option<Reply>> {
        Box::pin(async { Some(Reply::error(404, "only WebSocket upgrades are served here")) })
    }

    fn open_websocket(&self, _upgrade: HttpRequest) -> Result<(ConnId, Arc<Outbox>), Reply> {
        let conn = ConnId(self.next_conn.fetch_add(1, Ordering::Relaxed));
        let outbox = Outbox::new();
        self.conns.lock().unwrap().insert(conn, Arc::clone(&outbox));
        Ok((conn, outbox))
    }

    fn transport_event(&self, _event: livebridge_core::TransportEvent) {}
}

fn main() -> std::io::Result<()> {
    let args = Args::parse();
    let mut config = ServerConfig {
        bind: args.bind,
        ..ServerConfig::default()
    };
    if let Some(max_frame) = args.max_frame {
        config.engine.max_frame_bytes = max_frame;
    }
    let limits: ConnectionLimits = config.limits();
    let echo = Arc::new(Echo::default());
    smol::block_on(async {
        let listener = TcpListener::bind(config.bind).await?;
        println!(
            "autobahn-echo listening on ws://{} (max message {} bytes)",
            listener.local_addr()?,
            limits.ws.max_message_bytes
        );
        let _ = std::io::stdout().flush();
        loop {
            let (stream, _) = listener.accept().await?;
            smol::spawn(serve_connection(stream, echo.clone(), limits)).detach();
        }
    })
}
