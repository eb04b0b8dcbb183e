//! # livebridge-smol
//!
//! The livebridge server: the `livebridge-core` engine wired to real sockets on one port.
//! HTTP requests go through [`framer`] and async-h1; `GET /ws` upgrades go to
//! async-tungstenite ([`websocket`]); the engine lives in the [`hub`]. Everything runs on a
//! smol executor with one thread per core.
//!
//! ```no_run
//! use livebridge_smol::{Server, ServerConfig};
//! let server = Server::start(ServerConfig::default())?;
//! println!("listening on {}", server.local_addr());
//! server.shutdown()?;
//! # Ok::<(), std::io::Error>(())
//! ```

pub mod cli;
pub mod clock;
pub mod connection;
pub mod framer;
#[doc(hidden)]
pub mod fuzzing;
pub mod hub;
pub mod outbox;
pub mod websocket;

use connection::{ConnectionLimits, serve_connection};
use framer::HttpLimits;
use hub::Hub;
use smol::net::TcpListener;
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
            },
            ws: WsLimits {
                max_message_bytes: self.engine.max_frame_bytes,
                close_timeout: self.close_timeout,
            },
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
    /// Binds `config.bind` and starts serving on background threads.
    pub fn start(config: ServerConfig) -> io::Result<Server> {
        let listener = smol::block_on(TcpListener::bind(config.bind))?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = async_channel::bounded::<()>(1);
        let thread = std::thread::Builder::new()
            .name("livebridge".to_string())
            .spawn(move || run(listener, config, stopped))?;
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

fn run(listener: TcpListener, config: ServerConfig, stopped: async_channel::Receiver<()>) {
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
    smol::block_on(executor.run(async {
        let hub = Hub::new(config.engine.clone());
        executor.spawn(hub.clone().run_timers()).detach();
        info!(addr = %listener.local_addr().map(|a| a.to_string()).unwrap_or_default(), "livebridge listening");
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
                    debug!(%peer, "connection accepted");
                    executor
                        .spawn(serve_connection(stream, hub.clone(), limits))
                        .detach();
                }
                Some(Err(error)) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    warn!(%error, "accept failed");
                    smol::Timer::after(Duration::from_millis(50)).await;
                }
                None => break,
            }
        }
        info!("shutting down");
        drop(listener);
        hub.shutdown();
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
}
