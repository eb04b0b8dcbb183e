//! The `livebridge` binary: parses settings, starts the server, and shuts it down gracefully
//! on SIGINT or SIGTERM.

use clap::Parser;
use futures_lite::StreamExt;
use livebridge_smol::Server;
use livebridge_smol::cli::{Cli, Command, ServeArgs};
use std::io::{IsTerminal, Write};
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let args = match cli.command {
        Some(Command::Serve(args)) => *args,
        Some(Command::Token(args)) => {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            println!("{}", args.token(now));
            return ExitCode::SUCCESS;
        }
        None => ServeArgs::defaults(),
    };
    if let Err(problem) = args.check() {
        eprintln!("livebridge: {problem}");
        return ExitCode::FAILURE;
    }
    init_logging(&args.log);
    livebridge_smol::panics::install_hook();
    let config = match args.server_config() {
        Ok(config) => config,
        Err(problem) => {
            eprintln!("livebridge: {problem}");
            return ExitCode::FAILURE;
        }
    };
    if !config.bind.ip().is_loopback() && config.engine.allowed_hosts.is_empty() {
        tracing::warn!(
            bind = %config.bind,
            "listening beyond loopback, but only loopback Host names are accepted; \
             add the names clients use with --allowed-host"
        );
    }
    // Listen for signals before starting, so none is missed.
    let mut signals =
        match async_signal::Signals::new([async_signal::Signal::Int, async_signal::Signal::Term]) {
            Ok(signals) => signals,
            Err(error) => {
                eprintln!("livebridge: cannot watch for signals: {error}");
                return ExitCode::FAILURE;
            }
        };
    let server = match Server::start(config.clone()) {
        Ok(server) => server,
        Err(error) => {
            eprintln!("livebridge: {error}");
            return ExitCode::FAILURE;
        }
    };
    println!("livebridge listening on http://{}", server.local_addr());
    let _ = std::io::stdout().flush();
    let signal = smol::block_on(signals.next());
    tracing::info!(?signal, "signal received");
    match server.shutdown() {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("livebridge: {error}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .init();
}
