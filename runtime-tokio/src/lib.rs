//! # livebridge-axum
//!
//! The livebridge protocol on tokio and axum, from the same `livebridge-core` engine as the
//! smol server: the engine decides every answer, so the two runtimes serve the same protocol
//! (the conformance suite replays every recorded session against both).
//!
//! Two ways to use it:
//!
//! - [`Livebridge::router`]: an axum [`Router`](axum::Router) serving the whole protocol
//!   (`/ws`, the long-poll routes, the management API, `/`, `/client.js`), to merge into an
//!   application's own router; [`Livebridge::handle`] publishes from the same process without
//!   HTTP (`handle.publish(Event::JobProgress(..))`).
//! - [`Server`]: a standalone server on its own thread and tokio runtime
//!   (`examples/server.rs`).
//!
//! ```no_run
//! # async fn run() -> std::io::Result<()> {
//! use livebridge_axum::{Livebridge, Settings};
//! let livebridge = Livebridge::new(Settings::default());
//! let app = axum::Router::new().merge(livebridge.router());
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:5100").await?;
//! tokio::spawn(livebridge.run_timers());
//! axum::serve(listener, app.into_make_service_with_connect_info::<std::net::SocketAddr>()).await
//! # }
//! ```
//!
//! Serve the router with `into_make_service_with_connect_info::<SocketAddr>()`, so that the
//! engine learns each client's address for its per-address handshake limit.
//!
//! Channel history is kept in memory ([`Livebridge::new`]) or, to survive restarts and
//! crashes, in a data dir ([`Livebridge::durable`]: the smol server's `--data-dir` store).

mod close_codes;
mod handle;
mod http;
mod hub;
mod listener;
pub mod outbox;
mod server;
pub mod websocket;

pub use handle::Handle;
pub use server::{Server, ServerConfig};

use livebridge_runtime_support::store;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// Protocol settings and the limits of this runtime's transport.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The engine's settings (limits, origins, tokens, history...).
    pub engine: livebridge_core::Config,
    /// How long a closing WebSocket may take to exchange close frames. Default 2 s.
    pub close_timeout: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            engine: livebridge_core::Config::default(),
            close_timeout: Duration::from_secs(2),
        }
    }
}

/// Where channel history is stored durably (see [`Livebridge::durable`]).
#[derive(Clone, Debug)]
pub struct DataDir {
    /// The directory (created if missing); the database is `livebridge.db` in it.
    pub path: PathBuf,
    /// Largest the store's database and write-ahead log may grow together; beyond it
    /// publishes fail with 507 as on a full disk.
    /// `None`: the disk is the limit.
    pub max_bytes: Option<u64>,
}

/// One livebridge hub: the engine, its router and its in-process handle.
#[derive(Clone)]
pub struct Livebridge {
    hub: Arc<hub::Hub>,
    settings: Settings,
    /// The store's writer thread, when history is durable.
    writer: Arc<Mutex<Option<JoinHandle<()>>>>,
}

impl Livebridge {
    /// A hub with these settings, its channel history in memory (lost at restart). Its
    /// timers run once [`Livebridge::run_timers`] is spawned.
    pub fn new(mut settings: Settings) -> Livebridge {
        // Nothing stores the history, so nothing may wait for it to be stored.
        settings.engine.durable = false;
        Livebridge {
            hub: hub::Hub::new(settings.engine.clone()),
            settings,
            writer: Arc::default(),
        }
    }

    /// A hub whose channel history survives restarts and crashes: stored in `data_dir`
    /// (SQLite, as the smol server's `--data-dir`; the same files), read back now, written
    /// by one thread with group commit. A publish is acknowledged only once it is stored; a
    /// full disk (or `max_bytes`) makes publishes fail with 507 while reads go on. Fails,
    /// naming the path, when the directory cannot be used or its database is unreadable.
    pub fn durable(mut settings: Settings, data_dir: DataDir) -> std::io::Result<Livebridge> {
        settings.engine.durable = true;
        let opened = store::open(store::StoreSettings {
            dir: data_dir.path,
            history_size: settings.engine.history_size,
            history_ttl: settings.engine.history_ttl,
            max_bytes: data_dir.max_bytes,
        })
        .map_err(std::io::Error::other)?;
        let hub = hub::Hub::new(settings.engine.clone());
        // What the store holds is the engine's first input.
        hub.input(opened.loaded);
        let reporting_to = Arc::downgrade(&hub);
        let report = move |input| {
            if let Some(hub) = reporting_to.upgrade() {
                hub.input(input);
            }
        };
        let (handle, writer) = store::spawn_writer(opened.log, report)?;
        hub.use_store(handle);
        Ok(Livebridge {
            hub,
            settings,
            writer: Arc::new(Mutex::new(Some(writer))),
        })
    }

    /// The axum router serving the protocol on every path.
    pub fn router(&self) -> axum::Router {
        http::router(http::Shared {
            hub: Arc::clone(&self.hub),
            max_body_bytes: self.settings.engine.max_body_bytes,
            max_message_bytes: self.settings.engine.max_frame_bytes,
            close_timeout: self.settings.close_timeout,
        })
    }

    /// Publishes and manages from the same process, without HTTP.
    pub fn handle(&self) -> Handle {
        Handle::new(Arc::clone(&self.hub))
    }

    /// The engine's timers (heartbeats, long-poll ends, evictions): spawn this once.
    pub fn run_timers(&self) -> impl Future<Output = ()> + Send + 'static {
        Arc::clone(&self.hub).run_timers()
    }

    /// Closes every WebSocket with 1001 and answers pending polls.
    pub fn shutdown(&self) {
        self.hub.shutdown();
    }

    /// After [`Livebridge::shutdown`] and once the server stopped: lets the store's writer
    /// store what is queued and waits for it, so nothing handed to it is left behind. Nothing
    /// is stored after this (publishes were refused since the shutdown). Does nothing for an
    /// in-memory hub.
    pub fn close_store(&self) {
        drop(self.hub.take_store());
        let writer = self
            .writer
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        if let Some(writer) = writer {
            let _ = writer.join();
        }
    }

    /// WebSockets not yet closed.
    pub fn open_websockets(&self) -> usize {
        self.hub.open_websockets()
    }
}
