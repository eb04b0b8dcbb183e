//! The engine's deadlines in time order, with the earliest one cached.
//!
//! Every input first fires the timers that are due, so "is anything due?" is asked once per
//! input, acknowledgements of written frames included. With a ping timer per WebSocket, a
//! B-tree descent for that question cost as much as delivering a frame; the cached earliest
//! deadline answers it with one comparison.

use crate::output::TimerKind;
use crate::session::SessionKey;
use crate::time::Time;
use std::collections::BTreeSet;

/// One armed timer: when, what for, whose.
pub(crate) type TimerEntry = (Time, TimerKind, SessionKey);

/// Armed timers, ordered by deadline (then kind and session, for a deterministic order).
#[derive(Debug, Default)]
pub(crate) struct TimerQueue {
    entries: BTreeSet<TimerEntry>,
    /// The deadline of the first entry, kept in step with `entries`.
    earliest: Option<Time>,
}

impl TimerQueue {
    pub(crate) fn insert(&mut self, entry: TimerEntry) {
        self.entries.insert(entry);
        if self.earliest.is_none_or(|earliest| entry.0 < earliest) {
            self.earliest = Some(entry.0);
        }
    }

    pub(crate) fn remove(&mut self, entry: &TimerEntry) {
        if self.entries.remove(entry) && self.earliest == Some(entry.0) {
            self.earliest = self.entries.first().map(|first| first.0);
        }
    }

    /// The first timer whose deadline is at or before `now`.
    #[inline]
    pub(crate) fn first_due(&self, now: Time) -> Option<TimerEntry> {
        if self.earliest.is_none_or(|earliest| earliest > now) {
            return None;
        }
        self.entries.first().copied()
    }

    /// The timer that is due first.
    pub(crate) fn first(&self) -> Option<TimerEntry> {
        self.entries.first().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(millis: u64) -> Time {
        Time::from_millis(millis)
    }

    #[test]
    fn the_cached_earliest_follows_inserts_and_removals() {
        let mut queue = TimerQueue::default();
        let key = SessionKey::for_tests(1, 0);
        let ping = |ms| (at(ms), TimerKind::Ping, key);
        let stale = |ms| (at(ms), TimerKind::StaleEviction, key);
        assert_eq!(queue.first_due(at(1_000)), None);
        queue.insert(ping(30));
        queue.insert(stale(10));
        queue.insert(ping(20));
        assert_eq!(queue.first_due(at(9)), None);
        assert_eq!(queue.first_due(at(10)), Some(stale(10)));
        queue.remove(&ping(20));
        assert_eq!(
            queue.first_due(at(10)),
            Some(stale(10)),
            "a later removal keeps the earliest"
        );
        queue.remove(&stale(10));
        assert_eq!(queue.first_due(at(29)), None);
        assert_eq!(queue.first_due(at(30)), Some(ping(30)));
        queue.remove(&ping(99));
        assert_eq!(
            queue.first(),
            Some(ping(30)),
            "removing an absent entry changes nothing"
        );
        queue.remove(&ping(30));
        assert_eq!(queue.first_due(at(1_000_000)), None);
        assert_eq!(queue.first(), None);
    }
}
