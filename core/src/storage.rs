//! What the engine and a store exchange when channel history is durable (`--data-dir`): the
//! events to store before they are delivered, their acknowledgement or failure, and what a
//! store hands back at start-up. The engine decides what is stored and when a publish is
//! acknowledged; the runtime owns the store and does the I/O (group commit: one write and one
//! flush for every batch that arrived meanwhile).

use serde::{Deserialize, Serialize};
use std::fmt;
use std::sync::Arc;

/// A batch of events to store, named so its outcome can be reported.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct BatchId(pub u64);

impl fmt::Display for BatchId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "batch#{}", self.0)
    }
}

/// What [`crate::Output::Persist`] asks a store to write, in one transaction.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PersistBatch {
    /// The batch, for its outcome.
    pub batch: BatchId,
    /// Increases after every failure.
    pub generation: u64,
    /// The epoch channels created from now on get (for a store to keep across restarts).
    pub epoch: Arc<str>,
    /// The events, in order.
    pub events: Vec<StoredEvent>,
    /// Per channel, the first offset still to keep: older ones may be deleted.
    pub keep_from: Vec<(Arc<str>, u64)>,
}

/// One channel event as a store keeps it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredEvent {
    /// Its channel.
    pub channel: Arc<str>,
    /// The channel's epoch.
    pub epoch: Arc<str>,
    /// Its offset in the channel.
    pub offset: u64,
    /// When it was published, in Unix milliseconds.
    pub unix_millis: u64,
    /// The frame subscribers get (JSON text, with `channel`, `offset` and `epoch`).
    pub frame: Arc<str>,
}

/// A channel as a store hands it back at start-up.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredChannel {
    /// Its name.
    pub name: String,
    /// Its epoch.
    pub epoch: String,
    /// Its latest offset (events up to it may have been trimmed).
    pub latest: u64,
    /// The events retained, oldest first.
    pub events: Vec<StoredEvent>,
}

/// Why a store could not store a batch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreError {
    /// What kind of failure, which decides what publishers are told.
    pub kind: StoreErrorKind,
    /// What the store said (a path and an OS error, typically).
    pub message: String,
}

/// The kinds of store failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StoreErrorKind {
    /// The disk is full: publishers get 507 until it has room again.
    Full,
    /// Any other failure to write: publishers get 503.
    Failed,
}

impl StoreError {
    /// The HTTP status publishers get.
    pub fn status(&self) -> u16 {
        match self.kind {
            StoreErrorKind::Full => 507,
            StoreErrorKind::Failed => 503,
        }
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}
