//! # livebridge-core
//!
//! The deterministic, sans-IO protocol engine of livebridge, a real-time event hub. It holds
//! client sessions, their subscriptions and bounded queues, and implements every rule of the
//! protocol (handshake, long poll, WebSocket messages, the event catalogue, delivery,
//! overflow, resume, eviction, management). It does no I/O: the caller owns the sockets and
//! the clock.
//!
//! ```
//! use livebridge_core::{Config, Engine, HttpRequest, Input, Output, RequestId, SeededIds, Time};
//!
//! let mut now = Time::ZERO;
//! let mut engine = Engine::new(Config::default(), SeededIds::new(1), now, 1_764_000_000_000);
//! let handshake = HttpRequest::new("POST", "/ws/handshake", r#"{"client_type":"lightroom"}"#)
//!     .with_host("localhost:5100")
//!     .with_peer("127.0.0.1");
//! engine.handle_input(now, Input::Http { request: RequestId(1), http: handshake });
//! while let Some(output) = engine.poll_output() {
//!     if let Output::Reply { reply, .. } = output {
//!         assert_eq!(reply.status, 200);
//!     }
//! }
//! // Sleep until the next deadline (or the next input), then tell the engine the time.
//! if let Some((deadline, _reason)) = engine.poll_timeout() {
//!     now = deadline;
//!     engine.handle_timeout(now);
//! }
//! ```
//!
//! The calling pattern, as in quinn-proto and str0m:
//!
//! 1. feed one [`Input`] with [`Engine::handle_input`] (or a deadline with
//!    [`Engine::handle_timeout`]), passing the current [`Time`];
//! 2. drain [`Engine::poll_output`] until it returns `None`, carrying out each [`Output`];
//! 3. arm one timer at [`Engine::poll_timeout`] and wait for it or for the next input.
//!
//! Every HTTP request gets exactly one [`Output::Reply`] (every [`Input::Command`] one
//! [`Output::CommandDone`]), possibly later (a long poll is
//! answered when a message arrives or its wait ends). WebSocket frames are handed out within a
//! per-connection write window; report written frames with [`Engine::frames_written`] (or
//! [`Input::WsWritten`], the same as a recordable input) to open it again. Nothing in the engine reads a clock or draws random numbers: client ids come from
//! the [`IdSource`] given to [`Engine::new`].
//!
//! The helpers a runtime needs from the operating system — `OsRandomIds`, the production
//! [`IdSource`], and `MonotonicClock`, which turns `std::time::Instant` into [`Time`] — live
//! outside this crate, in `livebridge-runtime-support`. See `docs/embedding.md` for the loop
//! an embedder writes.

#![warn(missing_docs)]

mod access;
mod assets;
mod auth;
mod broker;
mod catalogue;
mod catalogue_schema;
mod channel;
pub mod client_types;
mod command;
mod config;
mod engine;
mod events;
mod failure;
#[doc(hidden)]
pub mod fuzzing;
mod history;
pub mod http_api;
mod ids;
mod input;
mod output;
mod queue;
mod rate;
mod session;
mod stats;
mod storage;
mod time;
mod timer_queue;

pub use access::MISSING_HOST;
pub use assets::Asset;
pub use auth::{ClientClaims, TokenError, sign_client_token, verify_client_token};
pub use broker::{
    BrokerCommand, BrokerError, BrokerEvent, ChannelHead, DirectAudience, EventOrigin, NodePart,
    OutgoingEvent,
};
pub use catalogue::{
    Catalogue, CatalogueError, EncodedEvent, EventSpec, FieldError, FieldKind, FieldSpec, Rule,
};
pub use command::{CommandError, CommandResult};
pub use config::{Config, ConfigError, SlowConsumerPolicy};
pub use engine::{Engine, PROTOCOL_VERSION, SessionView, close_code};
pub use events::{
    ApprovalQueueUpdated, ErrorOccurred, Event, ExportCompleted, ExportFailed, ExportStarted, Id,
    JobCompleted, JobCreated, JobFailed, JobProgress, JobStarted, PhotoAnalyzed, PhotoApproved,
    PhotoImported, PhotoRejected, PhotoSelected, Priority, PriorityChanged, QueueStatus,
    ResourceWarning, SessionCompleted, SessionCreated, SessionUpdated, SystemStatus,
};
pub use failure::TransportFailure;
pub use history::Position;
pub use ids::{ClientId, ConnId, IdSource, RequestId, SeededIds};
pub use input::{Command, HttpRequest, Initiator, Input, RequestBody, TransportEvent};
pub use output::{
    CloseReason, ContentType, Output, Reply, SessionEvent, TimeoutReason, TimerKind, TransportKind,
};
pub use rate::RateLimit;
pub use storage::{BatchId, PersistBatch, StoreError, StoreErrorKind, StoredChannel, StoredEvent};
pub use time::{Time, format_unix_millis};
