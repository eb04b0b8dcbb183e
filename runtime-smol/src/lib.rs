//! # livebridge-smol
//!
//! The livebridge server: the `livebridge-core` engine wired to real sockets on one port.
//! HTTP requests go through the framer (`framer.rs`) and async-h1; `GET /ws` upgrades go to
//! async-tungstenite ([`websocket`]); the engine lives in the hub (`hub.rs`). Everything runs on a
//! smol executor with one thread per core.
//!
//! ```no_run
//! use livebridge_smol::{Server, ServerConfig};
//! let server = Server::start(ServerConfig::default())?;
//! println!("listening on {}", server.local_addr());
//! server.shutdown()?;
//! # Ok::<(), std::io::Error>(())
//! ```

// The binary's command line and panic hook (main.rs is its own crate).
pub mod cli;
pub mod config_file;
pub mod panics;
// The transport layer, public for servers with another peer than the hub (the Autobahn echo
// example): a connection's HTTP phase and upgrade, the WebSocket task, its queue.
pub mod connection;
pub mod outbox;
pub mod websocket;
// Entry points of the cargo-fuzz targets (fuzz/), not an API.
mod broker;
#[cfg(test)]
mod connection_memory;
mod forward;
mod forward_pool;
mod framer;
#[doc(hidden)]
pub mod fuzzing;
mod hub;
mod socket;
mod start_error;

pub use broker::BrokerSettings;
pub use start_error::{StartError, StartFailure};

use connection::{ConnectionLimits, serve_connection_watched};
use framer::HttpLimits;
use hub::Hub;
use livebridge_runtime_support::linger::LingerSettings;
use livebridge_runtime_support::store;
use smol::net::{TcpListener, TcpStream};
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tracing::{debug, info, warn};
use websocket::WsLimits;

/// Everything the server needs to start.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Address to listen on. Default `127.0.0.1:5100`.
    pub bind: SocketAddr,
    /// Protocol settings.
    pub engine: livebridge_core::Config,
    /// Largest HTTP request head. Default 16 KiB.
    pub max_head_bytes: usize,
    /// Executor threads. Default: one per available core.
    pub threads: usize,
    /// How long shutdown waits for WebSockets to close and replies to be written. Default 5 s.
    pub shutdown_grace: Duration,
    /// How long a closing WebSocket may take to write what is left and exchange close frames
    /// before the socket is dropped. Default 2 s.
    pub close_timeout: Duration,
    /// How long a client may take to send a whole request (from its first byte, or from the
    /// connection's start for the first one); slower clients get 408. Default 10 s.
    pub header_timeout: Duration,
    /// How long a connection may stay idle between requests before it is closed. Default
    /// 60 s.
    pub keep_alive_timeout: Duration,
    /// Where channel history is stored durably; `None` keeps it in memory only (lost at
    /// restart). Default: none.
    pub data_dir: Option<std::path::PathBuf>,
    /// Largest the store's database and write-ahead log may grow together; beyond it
    /// publishes fail with 507 as on a full disk.
    /// Default: none (the disk is the limit).
    pub data_max_bytes: Option<u64>,
    /// Cluster mode: the broker (Redis) shared by every node. Default: none (a single node
    /// that needs nothing but itself).
    pub broker: Option<broker::BrokerSettings>,
    /// How long, and how many at once, connections keep reading after a reply sent before
    /// the request's body was read, so the client reads the reply. Default 5 s, 256.
    pub linger: LingerSettings,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            bind: SocketAddr::from(([127, 0, 0, 1], 5100)),
            engine: livebridge_core::Config::default(),
            max_head_bytes: 16 * 1024,
            threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
            shutdown_grace: Duration::from_secs(5),
            close_timeout: Duration::from_secs(2),
            header_timeout: Duration::from_secs(10),
            keep_alive_timeout: Duration::from_secs(60),
            data_dir: None,
            data_max_bytes: None,
            broker: None,
            linger: LingerSettings::default(),
        }
    }
}

impl ServerConfig {
    /// The per-connection limits these settings give (what `/ws` and the Autobahn echo
    /// example both serve with).
    pub fn limits(&self) -> ConnectionLimits {
        ConnectionLimits {
            http: HttpLimits {
                max_head_bytes: self.max_head_bytes,
                max_body_bytes: self.engine.max_body_bytes,
                header_timeout: self.header_timeout,
                keep_alive_timeout: self.keep_alive_timeout,
            },
            ws: WsLimits {
                max_message_bytes: self.engine.max_frame_bytes,
                close_timeout: self.close_timeout,
            },
            linger: self.linger,
        }
    }
}

/// A running server.
pub struct Server {
    addr: SocketAddr,
    stop: async_channel::Sender<()>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    /// Opens the store (with `data_dir`), binds `config.bind` and starts serving on
    /// background threads. Errors say what failed: the data dir (naming its path) or the
    /// address.
    pub fn start(mut config: ServerConfig) -> Result<Server, StartError> {
        config
            .engine
            .check_exposure(config.bind.ip())
            .map_err(|problem| StartError::new(StartFailure::Config, problem.to_string()))?;
        config.engine.durable = config.data_dir.is_some();
        config.engine.clustered = config.broker.is_some();
        if let Some(broker) = &config.broker {
            if config.data_dir.is_some() {
                return Err(StartError::new(
                    StartFailure::Config,
                    "--data-dir and --broker cannot be used together: in cluster mode the \
                     history lives in Redis",
                ));
            }
            broker
                .check()
                .map_err(|problem| StartError::new(StartFailure::Config, problem))?;
        }
        let opened = match &config.data_dir {
            Some(dir) => Some(
                store::open(store::StoreSettings {
                    dir: dir.clone(),
                    history_size: config.engine.history_size,
                    history_ttl: config.engine.history_ttl,
                    max_bytes: config.data_max_bytes,
                })
                .map_err(|problem| StartError::new(StartFailure::DataDir, problem.0))?,
            ),
            None => None,
        };
        let listener = smol::block_on(TcpListener::bind(config.bind)).map_err(|error| {
            StartError::new(
                StartFailure::Listen,
                format!("cannot listen on {}: {error}", config.bind),
            )
        })?;
        let runtime_failure =
            |error: io::Error| StartError::new(StartFailure::Runtime, error.to_string());
        let addr = listener.local_addr().map_err(runtime_failure)?;
        let (stop, stopped) = async_channel::bounded::<()>(1);
        let thread = std::thread::Builder::new()
            .name("livebridge".to_string())
            .spawn(move || run(listener, config, opened, stopped))
            .map_err(runtime_failure)?;
        Ok(Server {
            addr,
            stop,
            thread: Some(thread),
        })
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Shuts down gracefully: WebSockets get a 1001 close, pending polls their answer, then
    /// the threads stop.
    pub fn shutdown(mut self) -> io::Result<()> {
        let _ = self.stop.try_send(());
        self.join()
    }

    fn join(&mut self) -> io::Result<()> {
        match self.thread.take() {
            Some(thread) => thread
                .join()
                .map_err(|_| io::Error::other("the server thread panicked")),
            None => Ok(()),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.stop.try_send(());
        let _ = self.join();
    }
}

/// Failed accepts in a row: logged once when they start and once when they end, with the
/// count, so a server at its file descriptor limit does not log 20 lines a second.
#[derive(Default)]
struct AcceptFailures {
    count: u64,
    since: Option<Instant>,
}

impl AcceptFailures {
    fn failed(&mut self, error: &io::Error) {
        self.count += 1;
        if self.since.is_none() {
            self.since = Some(Instant::now());
            warn!(%error, "accept failed; retrying every 50 ms (logged again when it recovers)");
        }
    }

    fn recovered(&mut self) {
        if let Some(since) = self.since.take() {
            warn!(
                failures = self.count,
                seconds = since.elapsed().as_secs_f64(),
                "accepting connections again"
            );
        }
        self.count = 0;
    }
}

/// The task the server spawns for one accepted connection: it serves the connection, and a
/// panic in it (a bug) ends that connection only: it is counted, logged (by the panic hook,
/// rate-limited), and an HTTP client still waiting for an answer gets a 500 instead of a reset.
///
/// Chained with a combinator rather than written as an `async fn`: this future is what every
/// idle WebSocket keeps in memory, and an `async fn` awaiting the connection under the panic
/// guard kept room for the connection's future twice (a 1.6 KB task instead of 0.6 KB).
fn connection_task(
    stream: TcpStream,
    hub: Arc<Hub>,
    limits: ConnectionLimits,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    use futures_util::FutureExt;
    let spare: Arc<smol::Async<std::net::TcpStream>> = stream.clone().into();
    let upgraded = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let served = serve_connection_watched(stream, hub.clone(), limits, Some(upgraded.clone()));
    panics::contain(served).then(move |outcome| async move {
        if outcome.is_ok() {
            return;
        }
        hub.input(livebridge_core::Input::Transport(
            livebridge_core::TransportEvent::ConnectionPanicked,
        ));
        if !upgraded.load(std::sync::atomic::Ordering::SeqCst) {
            let reply = livebridge_core::Reply::error(500, "internal error; the hub is still up");
            connection::write_reply_on(&spare, &reply).await;
        }
    })
}

fn run(
    listener: TcpListener,
    config: ServerConfig,
    opened: Option<store::Opened>,
    stopped: async_channel::Receiver<()>,
) {
    let executor = Arc::new(smol::Executor::new());
    let (workers_stop, workers_stopped) = async_channel::bounded::<()>(1);
    let workers: Vec<_> = (1..config.threads.max(1))
        .map(|index| {
            let executor = executor.clone();
            let workers_stopped = workers_stopped.clone();
            std::thread::Builder::new()
                .name(format!("livebridge-{index}"))
                .spawn(move || smol::block_on(executor.run(workers_stopped.recv())))
                .expect("spawn executor thread")
        })
        .collect();
    let limits = config.limits();
    let hub = Hub::new(config.engine.clone());
    hub.fan_out_on(executor.clone(), config.threads.max(1));
    let writer = opened.and_then(|opened| {
        // What the store holds is the engine's first input.
        hub.input(opened.loaded);
        let hub_for_writer = Arc::downgrade(&hub);
        let report = move |input| {
            if let Some(hub) = hub_for_writer.upgrade() {
                hub.input(input);
            }
        };
        match store::spawn_writer(opened.log, report) {
            Ok((handle, thread)) => {
                hub.use_store(handle);
                Some(thread)
            }
            Err(error) => {
                tracing::error!(%error, "cannot start the store's writer thread");
                None
            }
        }
    });
    // Cluster mode: how to leave the registry at a graceful stop.
    let mut leave = None;
    if let Some(mut settings) = config.broker.clone() {
        if settings.advertise.is_none() {
            settings.advertise = listener.local_addr().ok().map(|a| a.to_string());
        }
        let hub_for_broker = Arc::downgrade(&hub);
        let report = move |input| {
            if let Some(hub) = hub_for_broker.upgrade() {
                hub.input(input);
            }
        };
        let identity = Arc::clone(hub.identity());
        let broker = broker::spawn(&executor, settings.clone(), Arc::clone(&identity), report);
        // A forwarded long poll lasts up to long_poll_max; give the owner time beyond it.
        let timeout = config.engine.long_poll_max + settings.timeout + Duration::from_secs(5);
        let forwarder = forward::spawn(
            &executor,
            broker.clone(),
            identity,
            Arc::downgrade(&hub),
            timeout,
        );
        hub.use_broker(broker.clone(), forwarder);
        leave = Some((broker, settings.timeout));
    }
    smol::block_on(executor.run(async {
        executor.spawn(hub.clone().run_timers()).detach();
        info!(addr = %listener.local_addr().map(|a| a.to_string()).unwrap_or_default(), "livebridge listening");
        let mut failing_accepts = AcceptFailures::default();
        loop {
            let accepted = futures_lite::future::or(
                async { Some(listener.accept().await) },
                async {
                    let _ = stopped.recv().await;
                    None
                },
            )
            .await;
            match accepted {
                Some(Ok((stream, peer))) => {
                    failing_accepts.recovered();
                    debug!(%peer, "connection accepted");
                    executor
                        .spawn(connection_task(stream, hub.clone(), limits))
                        .detach();
                }
                Some(Err(error)) => {
                    // Out of file descriptors and the like: back off instead of spinning,
                    // and say so once per episode rather than at every retry.
                    hub.input(livebridge_core::Input::Transport(
                        livebridge_core::TransportEvent::AcceptFailed,
                    ));
                    failing_accepts.failed(&error);
                    smol::Timer::after(Duration::from_millis(50)).await;
                }
                None => break,
            }
        }
        info!("shutting down");
        drop(listener);
        hub.shutdown();
        // The other nodes stop listing this one (and counting its clients) now rather than
        // when its registry entry expires.
        if let Some((broker, timeout)) = &leave
            && let Err(error) = broker.leave(*timeout).await
        {
            warn!(%error, "could not remove this node from the cluster's registry; it expires by itself");
        }
        // WebSockets get the grace period to finish their close handshake. Idle keep-alive
        // connections would never finish by themselves, so HTTP is not waited for; the
        // answers to pending polls were handed to their connections above and only need a
        // moment to be written.
        let deadline = Instant::now() + config.shutdown_grace;
        while hub.open_connections() > 0 && Instant::now() < deadline {
            smol::Timer::after(Duration::from_millis(10)).await;
        }
        smol::Timer::after(Duration::from_millis(50)).await;
        info!("stopped");
    }));
    drop(workers_stop);
    for worker in workers {
        let _ = worker.join();
    }
    // The writer stores what is queued, then stops: no acknowledged publish is left behind.
    drop(hub.take_store());
    if let Some(writer) = writer {
        let _ = writer.join();
    }
}
