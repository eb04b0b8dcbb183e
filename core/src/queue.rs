//! A session's bounded outbound queue: holds encoded messages until a poll or a WebSocket
//! write window takes them; when full, drops the oldest and counts what it dropped.
//!
//! Messages of a channel remember their channel and offset, so that a recovery can take them
//! out and replay them from history in order. A recovery itself waits in the queue as one
//! item, a [`Replay`] of a range of offsets that is read from history as it is delivered: it
//! keeps its place among the messages around it (after the `subscribed` reply, before what is
//! published later), and a replay of a thousand events costs one slot, not a thousand.

use crate::history::ChannelId;
use std::collections::VecDeque;
use std::sync::Arc;

/// Where a queued message came from: its channel and offset, for channel events.
pub(crate) type Origin = Option<(ChannelId, u64)>;

/// Events of one channel a recovering client still has to be sent, from history.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Replay {
    pub(crate) channel: ChannelId,
    /// The next offset to send.
    pub(crate) next: u64,
    /// The last offset to send.
    pub(crate) last: u64,
}

impl Replay {
    pub(crate) fn remaining(&self) -> u64 {
        self.last + 1 - self.next
    }
}

/// What waits in a queue.
#[derive(Debug)]
pub(crate) enum Item {
    /// One message, encoded.
    Frame { frame: Arc<str>, origin: Origin },
    /// Channel events to read from history.
    Replay(Replay),
}

impl Item {
    /// Messages the item stands for.
    fn messages(&self) -> u64 {
        match self {
            Item::Frame { .. } => 1,
            Item::Replay(replay) => replay.remaining(),
        }
    }
}

/// Encoded messages waiting for delivery, oldest first, never more than `limit` items.
#[derive(Debug)]
pub(crate) struct MessageQueue {
    items: VecDeque<Item>,
    limit: usize,
    /// Dropped since the client was last told.
    unreported_drops: u64,
    /// Dropped since the session began (for listings).
    dropped_total: u64,
}

impl MessageQueue {
    pub(crate) fn new(limit: usize) -> Self {
        MessageQueue {
            items: VecDeque::new(),
            limit: limit.max(1),
            unreported_drops: 0,
            dropped_total: 0,
        }
    }

    /// Appends an item; when the queue was full, the oldest item is dropped first (a replay
    /// drops every event it stood for) and the number of messages dropped is returned.
    fn push_item(&mut self, item: Item) -> u64 {
        let mut dropped = 0;
        if self.items.len() >= self.limit
            && let Some(oldest) = self.items.pop_front()
        {
            dropped = oldest.messages();
            self.unreported_drops += dropped;
            self.dropped_total += dropped;
        }
        self.items.push_back(item);
        dropped
    }

    /// Appends `frame`; returns how many messages the full queue dropped to make room.
    pub(crate) fn push(&mut self, frame: Arc<str>, origin: Origin) -> u64 {
        self.push_item(Item::Frame { frame, origin })
    }

    /// Appends a replay, after taking out the channel's queued events it covers and any
    /// earlier replay of the channel (the client's newer position supersedes it).
    pub(crate) fn push_replay(&mut self, replay: Replay) -> u64 {
        self.items.retain(|item| match item {
            Item::Frame {
                origin: Some((channel, offset)),
                ..
            } => !(*channel == replay.channel && *offset <= replay.last),
            Item::Replay(earlier) => earlier.channel != replay.channel,
            Item::Frame { origin: None, .. } => true,
        });
        self.push_item(Item::Replay(replay))
    }

    /// The oldest item.
    pub(crate) fn pop(&mut self) -> Option<Item> {
        self.items.pop_front()
    }

    /// Puts back what is left of a replay that was being delivered, at the front.
    pub(crate) fn resume_replay(&mut self, replay: Replay) {
        self.items.push_front(Item::Replay(replay));
    }

    /// Items waiting (a replay counts as one).
    pub(crate) fn len(&self) -> usize {
        self.items.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Messages waiting, a replay counting each of its events.
    pub(crate) fn messages(&self) -> u64 {
        self.items.iter().map(Item::messages).sum()
    }

    /// Drops not yet reported to the client; reading them resets the count.
    pub(crate) fn take_unreported_drops(&mut self) -> u64 {
        std::mem::take(&mut self.unreported_drops)
    }

    pub(crate) fn unreported_drops(&self) -> u64 {
        self.unreported_drops
    }

    /// Counts messages lost outside the queue (in a socket that died, or trimmed from history
    /// before a replay reached them), to be reported with the queue's own drops.
    pub(crate) fn add_unreported_drops(&mut self, count: u64) {
        self.unreported_drops += count;
        self.dropped_total += count;
    }

    /// Drops already counted whose report never reached the client (a `messages_dropped`
    /// notice that died unwritten): they are reported again.
    pub(crate) fn report_again(&mut self, count: u64) {
        self.unreported_drops += count;
    }

    /// Messages this session lost since it began, reported or not.
    pub(crate) fn dropped_total(&self) -> u64 {
        self.dropped_total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(queue: &mut MessageQueue) -> Option<String> {
        match queue.pop()? {
            Item::Frame { frame, .. } => Some(frame.to_string()),
            Item::Replay(replay) => Some(format!("replay {}..={}", replay.next, replay.last)),
        }
    }

    #[test]
    fn drops_oldest_when_full_and_reports_once() {
        let mut queue = MessageQueue::new(2);
        assert_eq!(queue.push("a".into(), None), 0);
        assert_eq!(queue.push("b".into(), None), 0);
        assert_eq!(queue.push("c".into(), None), 1);
        assert_eq!(queue.len(), 2);
        assert_eq!(queue.take_unreported_drops(), 1);
        assert_eq!(queue.take_unreported_drops(), 0);
        assert_eq!(frame(&mut queue).as_deref(), Some("b"));
        assert_eq!(frame(&mut queue).as_deref(), Some("c"));
    }

    #[test]
    fn a_replay_replaces_the_queued_events_it_covers_and_keeps_its_place() {
        let jobs = ChannelId::for_tests(0);
        let photos = ChannelId::for_tests(1);
        let mut queue = MessageQueue::new(10);
        queue.push("jobs 4".into(), Some((jobs, 4)));
        queue.push("photos 9".into(), Some((photos, 9)));
        queue.push("reply".into(), None);
        queue.push_replay(Replay {
            channel: jobs,
            next: 2,
            last: 5,
        });
        queue.push("jobs 6".into(), Some((jobs, 6)));
        assert_eq!(queue.messages(), 7);
        // A newer position replaces the replay still waiting.
        queue.push_replay(Replay {
            channel: jobs,
            next: 4,
            last: 6,
        });
        assert_eq!(queue.messages(), 5);
        let order: Vec<_> = std::iter::from_fn(|| frame(&mut queue)).collect();
        assert_eq!(order, ["photos 9", "reply", "replay 4..=6"]);
    }

    #[test]
    fn a_replay_pushed_out_of_a_full_queue_counts_every_event_it_stood_for() {
        let jobs = ChannelId::for_tests(0);
        let mut queue = MessageQueue::new(1);
        queue.push_replay(Replay {
            channel: jobs,
            next: 1,
            last: 30,
        });
        assert_eq!(queue.push("live".into(), Some((jobs, 31))), 30);
        assert_eq!(queue.unreported_drops(), 30);
    }
}
