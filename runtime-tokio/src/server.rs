//! A standalone server: the router on its own thread and tokio runtime, with a graceful
//! shutdown (WebSockets closed with 1001, pending polls answered, then the listener stops).

use crate::listener;
use crate::{DataDir, Livebridge, Settings};
use livebridge_runtime_support::linger::LingerSettings;
use std::io;
use std::net::SocketAddr;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// What a standalone server needs.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Address to listen on. Default `127.0.0.1:5100`.
    pub bind: SocketAddr,
    /// Protocol settings and transport limits.
    pub settings: Settings,
    /// Runtime worker threads. Default: one per available core.
    pub threads: usize,
    /// How long shutdown waits for WebSockets to close. Default 5 s.
    pub shutdown_grace: Duration,
    /// Largest request head (request line and headers) accepted; larger ones get 431.
    /// Default 16 KiB (as the smol server's `--max-head-size`).
    pub max_head_bytes: usize,
    /// How long a client may take to send a request head; the connection is closed after
    /// it. It also ends keep-alive connections idle that long. Default 10 s.
    pub header_timeout: Duration,
    /// Where channel history is stored durably; `None` keeps it in memory only (lost at
    /// restart). Default: none.
    pub data_dir: Option<DataDir>,
    /// How long, and how many at once, connections keep reading after a reply sent before
    /// the request's body was read, so the client reads the reply. Default 5 s, 256 (as the
    /// smol server's `--linger-timeout`, `--max-lingering`).
    pub linger: LingerSettings,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            bind: SocketAddr::from(([127, 0, 0, 1], 5100)),
            settings: Settings::default(),
            threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
            shutdown_grace: Duration::from_secs(5),
            max_head_bytes: 16 * 1024,
            header_timeout: Duration::from_secs(10),
            data_dir: None,
            linger: LingerSettings::default(),
        }
    }
}

/// A running server.
pub struct Server {
    addr: SocketAddr,
    livebridge: Livebridge,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    /// Checks the settings are safe to serve on `config.bind` (`Config::check_exposure`: no
    /// empty secret, an admin token beyond loopback), opens the store (with `data_dir`), binds
    /// `config.bind` and serves on a background thread. Errors say what failed: the settings,
    /// the data dir (naming its path) or the address.
    pub fn start(config: ServerConfig) -> io::Result<Server> {
        config
            .settings
            .engine
            .check_exposure(config.bind.ip())
            .map_err(|problem| io::Error::new(io::ErrorKind::InvalidInput, problem))?;
        let livebridge = match config.data_dir.clone() {
            Some(data_dir) => Livebridge::durable(config.settings.clone(), data_dir)?,
            None => Livebridge::new(config.settings.clone()),
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(config.threads.max(1))
            .enable_all()
            .thread_name("livebridge-axum")
            .build()?;
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind(config.bind))
            .map_err(|error| {
                io::Error::new(
                    error.kind(),
                    format!("cannot listen on {}: {error}", config.bind),
                )
            })?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = oneshot::channel::<()>();
        let serving = livebridge.clone();
        let serving_store = livebridge.clone();
        let grace = config.shutdown_grace;
        let limits = listener::HttpLimits {
            max_head_bytes: config.max_head_bytes,
            header_timeout: config.header_timeout,
            linger: config.linger,
        };
        let thread = std::thread::Builder::new()
            .name("livebridge-axum".to_string())
            .spawn(move || {
                runtime.block_on(async move {
                    let timers = tokio::spawn(serving.run_timers());
                    let router = serving.router();
                    let draining = serving.clone();
                    let shutdown = async move {
                        let _ = stopped.await;
                        draining.shutdown();
                        let deadline = Instant::now() + grace;
                        while draining.open_websockets() > 0 && Instant::now() < deadline {
                            tokio::time::sleep(Duration::from_millis(10)).await;
                        }
                    };
                    listener::serve(listener, router, limits, shutdown).await;
                    timers.abort();
                });
                runtime.shutdown_timeout(grace);
                // Publishes were refused since the shutdown: what the store's writer holds
                // is all there is to store.
                serving_store.close_store();
            })?;
        Ok(Server {
            addr,
            livebridge,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The hub, to publish in-process.
    pub fn livebridge(&self) -> &Livebridge {
        &self.livebridge
    }

    /// Shuts down gracefully and waits for the server thread.
    pub fn shutdown(mut self) -> io::Result<()> {
        self.stop_and_join()
    }

    fn stop_and_join(&mut self) -> io::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
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
        let _ = self.stop_and_join();
    }
}
