//! What the hub hands one WebSocket connection: frames and pings in order, and the close,
//! which may overtake queued frames (a slow consumer's close must not wait behind the frames
//! its socket cannot take).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::Notify;

/// One thing to write.
#[derive(Debug)]
pub enum ConnCommand {
    /// A text frame; the same text is shared by every recipient of a publish.
    Text(Arc<str>),
    /// A binary frame (the Autobahn echo example only: the protocol sends text).
    Binary(Vec<u8>),
    /// A ping.
    Ping,
}

/// The server's close of a connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Close {
    /// RFC 6455 code.
    pub code: u16,
    /// Reason text.
    pub reason: String,
}

#[derive(Default)]
struct Queued {
    commands: VecDeque<ConnCommand>,
    close: Option<Close>,
}

/// A connection's queue, filled under the hub's lock and drained by the connection's task.
#[derive(Default)]
pub struct Outbox {
    queued: Mutex<Queued>,
    ready: Notify,
}

impl Outbox {
    /// An empty outbox.
    pub fn new() -> Arc<Outbox> {
        Arc::new(Outbox::default())
    }

    fn lock(&self) -> MutexGuard<'_, Queued> {
        self.queued
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Queues a command and wakes the connection.
    pub fn push(&self, command: ConnCommand) {
        self.lock().commands.push_back(command);
        self.ready.notify_one();
    }

    /// Ends the connection after what is queued, or at once dropping it when
    /// `abandon_unwritten` (the engine counts frames never reported written as lost).
    pub fn close(&self, code: u16, reason: String, abandon_unwritten: bool) {
        let mut queued = self.lock();
        if abandon_unwritten {
            queued.commands.clear();
        }
        queued.close = Some(Close { code, reason });
        drop(queued);
        self.ready.notify_one();
    }

    /// Takes everything queued, and the close if one is queued after it.
    pub fn take(&self, into: &mut Vec<ConnCommand>) -> Option<Close> {
        let mut queued = self.lock();
        into.extend(queued.commands.drain(..));
        queued.close.take()
    }

    /// Whether a close is waiting (checked while a write is blocked).
    pub fn closing(&self) -> bool {
        self.lock().close.is_some()
    }

    /// Waits until something is pushed or a close is queued.
    pub async fn wait(&self) {
        self.ready.notified().await;
    }
}
