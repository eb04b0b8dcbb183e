//! Channel history: every event published on a channel gets the channel's next offset (no
//! holes), and the latest ones are kept, bounded by count and age, so that a client that
//! missed some can get them again (recovery) and operators can read them
//! (`GET /api/history/<channel>`).
//!
//! Each channel has an epoch: the identity of its sequence of offsets. It changes when the
//! sequence starts over, which is when its history was lost (a restart without a data dir), so
//! a client that comes back with an offset of another epoch is told it cannot recover instead
//! of being given events that are not the ones it missed. Entries share the frame every
//! recipient got (one `Arc` per event), so history costs one small record per event beyond
//! the frame itself.

use crate::time::Time;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

/// A channel's place in the engine's history tables.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct ChannelId(u32);

#[cfg(test)]
impl ChannelId {
    pub(crate) fn for_tests(index: u32) -> ChannelId {
        ChannelId(index)
    }
}

/// Where a channel stands: its latest offset (0 before its first event) and its epoch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    /// The latest offset, or the one a client has seen.
    pub offset: u64,
    /// The epoch the offset belongs to.
    pub epoch: String,
}

/// What a client asks to recover: the position it saw, per channel.
pub(crate) type Since = BTreeMap<String, Position>;

/// Reads a `since` field: `{"jobs": {"offset": 41, "epoch": "…"}}`. Every channel it names must
/// be one of `channels`, when that list is given.
pub(crate) fn parse_since(
    value: Option<&Value>,
    channels: Option<&[String]>,
) -> Result<Since, String> {
    let Some(value) = value.filter(|v| !v.is_null()) else {
        return Ok(Since::new());
    };
    let invalid = || {
        "field `since` must map channels to positions: {\"jobs\": {\"offset\": 41, \"epoch\": \"…\"}}"
            .to_string()
    };
    let Value::Object(map) = value else {
        return Err(invalid());
    };
    let mut since = Since::new();
    for (channel, position) in map {
        if let Some(channels) = channels
            && !channels.contains(channel)
        {
            return Err(format!(
                "`since` names channel {channel:?}, which is not in `channels`"
            ));
        }
        let offset = position.get("offset").and_then(Value::as_u64);
        let epoch = position.get("epoch").and_then(Value::as_str);
        let (Some(offset), Some(epoch)) = (offset, epoch) else {
            return Err(invalid());
        };
        since.insert(
            channel.clone(),
            Position {
                offset,
                epoch: epoch.to_string(),
            },
        );
    }
    Ok(since)
}

/// One retained event.
#[derive(Clone, Debug)]
pub(crate) struct Entry {
    pub(crate) offset: u64,
    /// When it was published, on the engine's clock (for the age limit).
    pub(crate) at: Time,
    pub(crate) frame: Arc<str>,
}

#[derive(Debug)]
struct ChannelLog {
    name: Arc<str>,
    epoch: Arc<str>,
    /// The offset of the latest event published (0 before the first).
    latest: u64,
    /// The retained events, oldest first, with contiguous offsets ending at `latest`.
    entries: VecDeque<Entry>,
}

/// Why a position cannot be recovered: the client is told `recovered: false` and reloads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Unrecoverable {
    /// The epoch differs: the channel's history was lost since.
    EpochChanged,
    /// The offset is beyond the channel's latest.
    Ahead,
    /// Events after the offset are no longer retained.
    TooOld,
    /// More events were missed than one recovery replays.
    TooMany,
}

/// Every channel that has had events, with its retained events.
#[derive(Debug)]
pub(crate) struct History {
    /// The epoch of channels that start here (a channel loaded from a store keeps its own).
    epoch: Arc<str>,
    /// Retained events per channel; 0 keeps none (offsets are still given).
    size: usize,
    /// Oldest event retained; zero keeps none.
    ttl: Duration,
    ids: BTreeMap<Arc<str>, ChannelId>,
    logs: Vec<ChannelLog>,
}

impl History {
    pub(crate) fn new(epoch: String, size: usize, ttl: Duration) -> Self {
        History {
            epoch: epoch.into(),
            size,
            ttl,
            ids: BTreeMap::new(),
            logs: Vec::new(),
        }
    }

    /// The epoch new channels get.
    pub(crate) fn epoch(&self) -> &Arc<str> {
        &self.epoch
    }

    /// Sets the epoch new channels get (a store's, kept across restarts).
    pub(crate) fn set_epoch(&mut self, epoch: String) {
        self.epoch = epoch.into();
    }

    /// The channel, if it has had events (or was loaded).
    pub(crate) fn id(&self, name: &str) -> Option<ChannelId> {
        self.ids.get(name).copied()
    }

    /// The channel, created (at offset 0, with the current epoch) if it is new.
    pub(crate) fn id_or_create(&mut self, name: &str) -> ChannelId {
        if let Some(id) = self.ids.get(name) {
            return *id;
        }
        let id = ChannelId(u32::try_from(self.logs.len()).expect("fewer than 2^32 channels"));
        let name: Arc<str> = name.into();
        self.logs.push(ChannelLog {
            name: Arc::clone(&name),
            epoch: Arc::clone(&self.epoch),
            latest: 0,
            entries: VecDeque::new(),
        });
        self.ids.insert(name, id);
        id
    }

    pub(crate) fn name(&self, id: ChannelId) -> &Arc<str> {
        &self.logs[id.0 as usize].name
    }

    pub(crate) fn channel_epoch(&self, id: ChannelId) -> &Arc<str> {
        &self.logs[id.0 as usize].epoch
    }

    /// Where a channel stands; a channel without events is at 0 of the current epoch.
    pub(crate) fn position(&self, name: &str) -> Position {
        match self.id(name) {
            Some(id) => {
                let log = &self.logs[id.0 as usize];
                Position {
                    offset: log.latest,
                    epoch: log.epoch.to_string(),
                }
            }
            None => Position {
                offset: 0,
                epoch: self.epoch.to_string(),
            },
        }
    }

    pub(crate) fn latest(&self, id: ChannelId) -> u64 {
        self.logs[id.0 as usize].latest
    }

    /// Records the event at `offset`, which must be the channel's next, and trims what is now
    /// beyond the limits.
    pub(crate) fn append(&mut self, id: ChannelId, entry: Entry, now: Time) {
        let log = &mut self.logs[id.0 as usize];
        debug_assert_eq!(entry.offset, log.latest + 1, "offsets have no holes");
        log.latest = entry.offset;
        if self.size > 0 && !self.ttl.is_zero() {
            log.entries.push_back(entry);
        }
        Self::trim(log, self.size, self.ttl, now);
    }

    fn trim(log: &mut ChannelLog, size: usize, ttl: Duration, now: Time) {
        while log.entries.len() > size {
            log.entries.pop_front();
        }
        while log
            .entries
            .front()
            .is_some_and(|e| now.saturating_since(e.at) >= ttl)
        {
            log.entries.pop_front();
        }
    }

    /// Cluster mode: the channel continues in `epoch` after `latest`, retaining nothing
    /// before (its sequence started over, or the events up to `latest` are gone).
    pub(crate) fn reset(&mut self, id: ChannelId, epoch: &str, latest: u64) {
        let log = &mut self.logs[id.0 as usize];
        if *log.epoch != *epoch {
            log.epoch = epoch.into();
        }
        log.latest = latest;
        log.entries.clear();
    }

    /// The first offset the channel still retains (after dropping what has aged out), or
    /// `latest + 1` when it retains none.
    pub(crate) fn oldest_retained(&mut self, id: ChannelId, now: Time) -> u64 {
        let log = &mut self.logs[id.0 as usize];
        Self::trim(log, self.size, self.ttl, now);
        log.entries.front().map_or(log.latest + 1, |e| e.offset)
    }

    /// Which offsets a client that saw `since` missed, if they can all be replayed: `Ok(None)`
    /// when it missed nothing, `Ok(Some((first, last)))` otherwise.
    pub(crate) fn missed(
        &mut self,
        name: &str,
        since: &Position,
        max: usize,
        now: Time,
    ) -> Result<Option<(ChannelId, u64, u64)>, Unrecoverable> {
        let current = self.position(name);
        if current.epoch != since.epoch {
            return Err(Unrecoverable::EpochChanged);
        }
        if since.offset > current.offset {
            return Err(Unrecoverable::Ahead);
        }
        if since.offset == current.offset {
            return Ok(None);
        }
        let id = self.id(name).expect("a channel with events has a log");
        if current.offset - since.offset > max as u64 {
            return Err(Unrecoverable::TooMany);
        }
        if self.oldest_retained(id, now) > since.offset + 1 {
            return Err(Unrecoverable::TooOld);
        }
        Ok(Some((id, since.offset + 1, current.offset)))
    }

    /// The retained event at `offset`, unless it has aged out or been trimmed.
    pub(crate) fn entry(&mut self, id: ChannelId, offset: u64, now: Time) -> Option<&Entry> {
        let first = self.oldest_retained(id, now);
        let log = &self.logs[id.0 as usize];
        if offset < first || offset > log.latest {
            return None;
        }
        log.entries.get((offset - first) as usize)
    }

    /// Up to `limit` retained events after `since`, oldest first, and whether they start
    /// right after `since` (nothing in between has been trimmed).
    pub(crate) fn read(
        &mut self,
        id: ChannelId,
        since: u64,
        limit: usize,
        now: Time,
    ) -> (Vec<Arc<str>>, bool) {
        let first = self.oldest_retained(id, now);
        let log = &self.logs[id.0 as usize];
        let start = since.saturating_add(1).max(first);
        let events = log
            .entries
            .iter()
            .skip((start - first) as usize)
            .take(limit)
            .map(|e| Arc::clone(&e.frame))
            .collect();
        (events, start == since.saturating_add(1))
    }

    /// Restores a channel from a store: its epoch, latest offset and retained events (oldest
    /// first, contiguous, ending at `latest`; those beyond the limits are dropped).
    pub(crate) fn restore(
        &mut self,
        name: &str,
        epoch: &str,
        latest: u64,
        entries: Vec<Entry>,
        now: Time,
    ) {
        let id = self.id_or_create(name);
        let (size, ttl) = (self.size, self.ttl);
        let log = &mut self.logs[id.0 as usize];
        log.epoch = epoch.into();
        log.latest = latest;
        log.entries = entries.into_iter().filter(|e| e.offset <= latest).collect();
        // Keep only the contiguous run that ends at `latest`.
        let mut expected = latest;
        let mut keep = log.entries.len();
        for (index, entry) in log.entries.iter().enumerate().rev() {
            if entry.offset != expected {
                keep = log.entries.len() - index - 1;
                break;
            }
            expected = expected.saturating_sub(1);
        }
        let drop = log.entries.len() - keep;
        log.entries.drain(..drop);
        if size == 0 || ttl.is_zero() {
            log.entries.clear();
        }
        Self::trim(log, size, ttl, now);
    }

    /// Every channel that has had events, by name: its latest offset, epoch and the number of
    /// events it retains.
    pub(crate) fn positions(&self) -> impl Iterator<Item = (&str, u64, &str, usize)> {
        self.ids.iter().map(|(name, id)| {
            let log = &self.logs[id.0 as usize];
            (&**name, log.latest, &*log.epoch, log.entries.len())
        })
    }

    /// The first offset to keep in a store for a channel whose latest will be `latest`, so that
    /// a store trims as the engine does (by count; age is trimmed when read).
    pub(crate) fn keep_from(&self, latest: u64) -> u64 {
        if self.size == 0 || self.ttl.is_zero() {
            return latest + 1;
        }
        latest.saturating_sub(self.size as u64 - 1).max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(offset: u64, at_ms: u64) -> Entry {
        Entry {
            offset,
            at: Time::from_millis(at_ms),
            frame: format!("e{offset}").into(),
        }
    }

    fn history(size: usize, ttl_ms: u64) -> History {
        History::new("ep".to_string(), size, Duration::from_millis(ttl_ms))
    }

    #[test]
    fn keeps_the_latest_by_count_and_age_and_answers_what_a_client_missed() {
        let mut h = history(3, 1_000);
        let id = h.id_or_create("jobs");
        for offset in 1..=5 {
            h.append(
                id,
                entry(offset, offset * 100),
                Time::from_millis(offset * 100),
            );
        }
        let now = Time::from_millis(500);
        let at = |offset| Position {
            offset,
            epoch: "ep".to_string(),
        };
        assert_eq!(h.missed("jobs", &at(2), 100, now), Ok(Some((id, 3, 5))));
        assert_eq!(
            h.missed("jobs", &at(1), 100, now),
            Err(Unrecoverable::TooOld)
        );
        assert_eq!(h.missed("jobs", &at(5), 100, now), Ok(None));
        assert_eq!(
            h.missed("jobs", &at(6), 100, now),
            Err(Unrecoverable::Ahead)
        );
        assert_eq!(
            h.missed("jobs", &at(2), 2, now),
            Err(Unrecoverable::TooMany)
        );
        let other = Position {
            offset: 4,
            epoch: "old".to_string(),
        };
        assert_eq!(
            h.missed("jobs", &other, 100, now),
            Err(Unrecoverable::EpochChanged)
        );
        assert_eq!(
            h.entry(id, 4, now).map(|e| e.frame.to_string()),
            Some("e4".into())
        );
        // Events 3 and 4 are older than a second at 1.45 s: only 5 is left.
        let later = Time::from_millis(1_450);
        assert_eq!(h.entry(id, 4, later).map(|e| e.offset), None);
        assert_eq!(
            h.missed("jobs", &at(3), 100, later),
            Err(Unrecoverable::TooOld)
        );
        assert_eq!(h.missed("jobs", &at(4), 100, later), Ok(Some((id, 5, 5))));
    }

    #[test]
    fn a_channel_without_events_is_at_zero_of_the_current_epoch() {
        let mut h = history(10, 60_000);
        assert_eq!(
            h.position("quiet"),
            Position {
                offset: 0,
                epoch: "ep".to_string()
            }
        );
        let zero = h.position("quiet");
        assert_eq!(h.missed("quiet", &zero, 10, Time::ZERO), Ok(None));
    }

    #[test]
    fn reading_says_whether_the_events_start_right_after_since() {
        let mut h = history(3, 60_000);
        let id = h.id_or_create("jobs");
        for offset in 1..=5 {
            h.append(id, entry(offset, 0), Time::ZERO);
        }
        let (events, complete) = h.read(id, 3, 10, Time::ZERO);
        assert_eq!(
            events.iter().map(|e| e.to_string()).collect::<Vec<_>>(),
            ["e4", "e5"]
        );
        assert!(complete);
        let (events, complete) = h.read(id, 0, 2, Time::ZERO);
        assert_eq!(
            events.iter().map(|e| e.to_string()).collect::<Vec<_>>(),
            ["e3", "e4"]
        );
        assert!(!complete, "1 and 2 are gone");
    }

    #[test]
    fn a_restored_channel_keeps_its_epoch_and_the_contiguous_run_ending_at_latest() {
        let mut h = history(10, 60_000);
        let loaded = vec![entry(2, 0), entry(4, 0), entry(5, 0), entry(6, 0)];
        h.restore("jobs", "stored", 6, loaded, Time::ZERO);
        let id = h.id("jobs").unwrap();
        assert_eq!(h.position("jobs").epoch, "stored");
        assert_eq!(h.oldest_retained(id, Time::ZERO), 4);
        assert_eq!(h.latest(id), 6);
    }

    #[test]
    fn without_retention_offsets_are_still_given() {
        let mut h = history(0, 60_000);
        let id = h.id_or_create("jobs");
        h.append(id, entry(1, 0), Time::ZERO);
        assert_eq!(h.latest(id), 1);
        assert_eq!(h.positions().next(), Some(("jobs", 1, "ep", 0)));
        let at = Position {
            offset: 0,
            epoch: "ep".to_string(),
        };
        assert_eq!(
            h.missed("jobs", &at, 10, Time::ZERO),
            Err(Unrecoverable::TooOld)
        );
        assert_eq!(h.keep_from(1), 2);
    }
}
