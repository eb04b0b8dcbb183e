//! # livebridge-runtime-support
//!
//! What every livebridge runtime needs and `livebridge-core` must not contain, written once:
//! client ids from the operating system's generator ([`OsRandomIds`]), the monotonic clock in
//! engine time ([`MonotonicClock`]), the log lines of session events
//! ([`log_session_event`]), the engine input of a WebSocket message ([`Incoming`]), the bound
//! on lingering closes after early replies ([`linger`]), and the
//! durable event log behind `--data-dir` ([`store`]: SQLite,
//! one writer thread with group commit, read back at start-up). `livebridge-smol` and `livebridge-axum` use it; an embedder with
//! its own runtime can too (`examples/plain_thread.rs`, `docs/embedding.md`).

mod clock;
mod ids;
mod incoming;
pub mod linger;
mod session_log;
pub mod store;

pub use clock::MonotonicClock;
pub use ids::OsRandomIds;
pub use incoming::Incoming;
pub use session_log::log_session_event;
