//! livebridge on tokio and axum, standalone:
//! `cargo run --release -p livebridge-axum --example server -- --bind 127.0.0.1:5100`.
//!
//! The flags are the protocol's main settings and the durable store; the smol binary
//! (`livebridge serve`) has the full set.

use clap::Parser;
use livebridge_axum::{DataDir, Server, ServerConfig, Settings};
use std::net::SocketAddr;
use std::time::Duration;

#[derive(Parser)]
#[command(about = "livebridge on tokio and axum")]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:5100")]
    bind: SocketAddr,
    /// How long a session without a transport is kept.
    #[arg(long, value_parser = humantime::parse_duration)]
    stale_after: Option<Duration>,
    /// An origin allowed besides the hub's own (repeatable).
    #[arg(long)]
    allowed_origin: Vec<String>,
    /// A host name allowed in `Host` besides loopback names (repeatable).
    #[arg(long)]
    allowed_host: Vec<String>,
    /// Token for the management API.
    #[arg(long, env = "LIVEBRIDGE_ADMIN_TOKEN")]
    admin_token: Option<String>,
    /// Runtime worker threads.
    #[arg(long)]
    threads: Option<usize>,
    /// Store channel history durably in this directory (survives restarts and crashes).
    #[arg(long, env = "LIVEBRIDGE_DATA_DIR")]
    data_dir: Option<std::path::PathBuf>,
}

fn main() -> std::io::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    let args = Args::parse();
    let mut settings = Settings::default();
    if let Some(stale_after) = args.stale_after {
        settings.engine.stale_after = stale_after;
    }
    settings.engine.allowed_origins = args.allowed_origin;
    settings.engine.allowed_hosts = args.allowed_host;
    settings.engine.admin_token = args.admin_token;
    let mut config = ServerConfig {
        bind: args.bind,
        settings,
        data_dir: args.data_dir.map(|path| DataDir {
            path,
            max_bytes: None,
        }),
        ..ServerConfig::default()
    };
    if let Some(threads) = args.threads {
        config.threads = threads;
    }
    let server = Server::start(config)?;
    println!(
        "livebridge (tokio/axum) listening on http://{}",
        server.local_addr()
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(tokio::signal::ctrl_c())?;
    server.shutdown()
}
