//! The `livebridge` binary: parses settings (flags, `LIVEBRIDGE_*` variables, the
//! configuration file), starts the server, tells a service manager when it is ready, and shuts
//! down gracefully on SIGINT or SIGTERM. Its exit codes are `StartFailure::exit_code`'s
//! (docs/operations.md, "Exit codes").

use futures_lite::StreamExt;
use livebridge_smol::cli::Command;
use livebridge_smol::config_file::{self, ResolveError};
use livebridge_smol::{Server, StartFailure};
use std::io::{IsTerminal, Write};
use std::process::ExitCode;

fn main() -> ExitCode {
    let resolved = match config_file::resolve(std::env::args_os()) {
        Ok(resolved) => resolved,
        Err(ResolveError::Usage(error)) => error.exit(),
        Err(ResolveError::File(problem)) => return fail(StartFailure::Config, &problem),
    };
    let args = match resolved.cli.command {
        Some(Command::Serve(args)) => *args,
        Some(Command::Token(args)) => {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            println!("{}", args.token(now));
            return ExitCode::SUCCESS;
        }
        Some(Command::Config(args)) => {
            if args.reference {
                print!("{}", config_file::reference_table());
                return ExitCode::SUCCESS;
            }
            if let Err(problem) = args.serve.check().and(args.serve.server_config().map(drop)) {
                return fail(StartFailure::Config, &problem);
            }
            print!("{}", config_file::effective_settings(&resolved.settings));
            return ExitCode::SUCCESS;
        }
        Some(Command::Catalogue(args)) => {
            return match args.run() {
                Ok(text) => {
                    print!("{}", text.unwrap_or_default());
                    ExitCode::SUCCESS
                }
                Err(problem) => fail(StartFailure::Config, &problem),
            };
        }
        None => unreachable!("resolve makes `serve` the default subcommand"),
    };
    if let Err(problem) = args.check() {
        return fail(StartFailure::Config, &problem);
    }
    init_logging(&args.log);
    livebridge_smol::panics::install_hook();
    let config = match args.server_config() {
        Ok(config) => config,
        Err(problem) => return fail(StartFailure::Config, &problem),
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
                let problem = format!("cannot watch for signals: {error}");
                return fail(StartFailure::Runtime, &problem);
            }
        };
    let server = match Server::start(config.clone()) {
        Ok(server) => server,
        Err(error) => return fail(error.failure, &error.message),
    };
    println!("livebridge listening on http://{}", server.local_addr());
    let _ = std::io::stdout().flush();
    // A no-op unless a service manager gave $NOTIFY_SOCKET (systemd's Type=notify).
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
    let signal = smol::block_on(signals.next());
    tracing::info!(?signal, "signal received");
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
    match server.shutdown() {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => fail(StartFailure::Runtime, &error.to_string()),
    }
}

/// Prints `problem` and gives the exit code of its kind.
fn fail(failure: StartFailure, problem: &str) -> ExitCode {
    eprintln!("livebridge: {problem}");
    ExitCode::from(failure.exit_code())
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
