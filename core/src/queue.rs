//! A session's bounded outbound queue: holds encoded messages until a poll or a WebSocket
//! write window takes them; when full, drops the oldest and counts what it dropped.

use std::collections::VecDeque;
use std::sync::Arc;

/// Encoded messages waiting for delivery, oldest first, never more than `limit`.
#[derive(Debug)]
pub(crate) struct MessageQueue {
    items: VecDeque<Arc<str>>,
    limit: usize,
    /// Dropped since the client was last told.
    unreported_drops: u64,
}

impl MessageQueue {
    pub(crate) fn new(limit: usize) -> Self {
        MessageQueue {
            items: VecDeque::new(),
            limit: limit.max(1),
            unreported_drops: 0,
        }
    }

    /// Appends `message`; when the queue was full, the oldest message is dropped first and
    /// `true` is returned.
    pub(crate) fn push(&mut self, message: Arc<str>) -> bool {
        let dropped = self.items.len() >= self.limit;
        if dropped {
            self.items.pop_front();
            self.unreported_drops += 1;
        }
        self.items.push_back(message);
        dropped
    }

    pub(crate) fn pop(&mut self) -> Option<Arc<str>> {
        self.items.pop_front()
    }

    pub(crate) fn len(&self) -> usize {
        self.items.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Takes every queued message.
    pub(crate) fn drain(&mut self) -> std::collections::vec_deque::Drain<'_, Arc<str>> {
        self.items.drain(..)
    }

    /// Drops not yet reported to the client; reading them resets the count.
    pub(crate) fn take_unreported_drops(&mut self) -> u64 {
        std::mem::take(&mut self.unreported_drops)
    }

    pub(crate) fn unreported_drops(&self) -> u64 {
        self.unreported_drops
    }

    /// Counts messages lost outside the queue (in a socket that died), to be reported with
    /// the queue's own drops.
    pub(crate) fn add_unreported_drops(&mut self, count: u64) {
        self.unreported_drops += count;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drops_oldest_when_full_and_reports_once() {
        let mut queue = MessageQueue::new(2);
        assert!(!queue.push("a".into()));
        assert!(!queue.push("b".into()));
        assert!(queue.push("c".into()));
        assert_eq!(queue.len(), 2);
        assert_eq!(queue.take_unreported_drops(), 1);
        assert_eq!(queue.take_unreported_drops(), 0);
        let left: Vec<_> = queue.drain().map(|m| m.to_string()).collect();
        assert_eq!(left, ["b", "c"]);
    }
}
