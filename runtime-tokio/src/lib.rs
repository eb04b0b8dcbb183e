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
//! This runtime keeps channel history in memory only (the durable store is the smol
//! server's `--data-dir`).

mod close_codes;
mod handle;
mod http;
mod hub;
pub mod outbox;
mod server;
pub mod websocket;

pub use handle::Handle;
pub use server::{Server, ServerConfig};

use std::sync::Arc;
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

/// One livebridge hub: the engine, its router and its in-process handle.
#[derive(Clone)]
pub struct Livebridge {
    hub: Arc<hub::Hub>,
    settings: Settings,
}

impl Livebridge {
    /// A hub with these settings. Its timers run once [`Livebridge::run_timers`] is spawned.
    pub fn new(mut settings: Settings) -> Livebridge {
        // History lives in the engine's memory here; there is no store to confirm writes.
        settings.engine.durable = false;
        Livebridge {
            hub: hub::Hub::new(settings.engine.clone()),
            settings,
        }
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

    /// WebSockets not yet closed.
    pub fn open_websockets(&self) -> usize {
        self.hub.open_websockets()
    }
}
