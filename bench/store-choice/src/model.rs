//! The data model shared by both stores, and the in-memory "sequencer" the writer thread uses
//! to give each event its channel offset (strictly increasing, no holes).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

pub type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// One stored entry of a channel's log, ready to be written (offset already assigned).
#[derive(Clone, Debug)]
pub struct Record {
    pub channel: Arc<str>,
    pub offset: u64,
    pub unix_millis: u64,
    pub frame: String,
}

/// The per-channel head written in the same transaction as the records:
/// the epoch (changes only when history is lost) and the latest offset.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChannelHead {
    pub channel: Arc<str>,
    pub epoch: Arc<str>,
    pub latest: u64,
}

/// One retained entry, as read back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub offset: u64,
    pub unix_millis: u64,
    pub frame: String,
}

/// What start-up loads for one channel.
#[derive(Clone, Debug)]
pub struct ChannelState {
    pub channel: String,
    pub epoch: String,
    pub latest: u64,
    /// Retained entries, in offset order.
    pub entries: Vec<Entry>,
}

/// Retention: keep at most `max_entries` per channel and nothing older than `ttl_millis`.
/// Applied, for the channels a group touches, inside the group's transaction.
#[derive(Clone, Copy, Debug)]
pub struct Retention {
    pub max_entries: u64,
    pub ttl_millis: u64,
}

impl Default for Retention {
    fn default() -> Self {
        // The TTL is long enough never to fire in the benchmarks, but its check (one probe of the
        // oldest entry per touched channel) is still paid on every commit, as in production.
        Retention { max_entries: 1000, ttl_millis: 3_600_000 }
    }
}

impl Retention {
    /// Highest offset that must go because of the count limit (0 = none).
    pub fn count_cut(&self, latest: u64) -> u64 {
        latest.saturating_sub(self.max_entries)
    }
    /// Entries with `unix_millis` below this are expired.
    pub fn ttl_cutoff(&self, now_millis: u64) -> u64 {
        now_millis.saturating_sub(self.ttl_millis)
    }
}

pub fn now_millis() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// The writer's in-memory view of every channel's head. It assigns offsets to a group of
/// incoming events and reports which heads changed.
#[derive(Default)]
pub struct Sequencer {
    heads: BTreeMap<Arc<str>, ChannelHead>,
}

impl Sequencer {
    /// Rebuild from what the store loaded at start-up.
    pub fn from_loaded(states: &[ChannelState]) -> Self {
        let mut s = Sequencer::default();
        for st in states {
            let name: Arc<str> = st.channel.as_str().into();
            s.heads.insert(
                name.clone(),
                ChannelHead { channel: name, epoch: st.epoch.as_str().into(), latest: st.latest },
            );
        }
        s
    }

    /// Give each `(channel, frame)` the next offset of its channel. New channels start at
    /// offset 1 with a fresh epoch. Returns the records and the touched heads.
    pub fn sequence(
        &mut self,
        incoming: impl IntoIterator<Item = (Arc<str>, String)>,
        unix_millis: u64,
    ) -> (Vec<Record>, Vec<ChannelHead>) {
        let mut records = Vec::new();
        let mut touched: BTreeMap<Arc<str>, ()> = BTreeMap::new();
        for (channel, frame) in incoming {
            let head = self.heads.entry(channel.clone()).or_insert_with(|| ChannelHead {
                channel: channel.clone(),
                epoch: format!("e-{unix_millis}").into(),
                latest: 0,
            });
            head.latest += 1;
            records.push(Record { channel: channel.clone(), offset: head.latest, unix_millis, frame });
            touched.insert(channel, ());
        }
        let heads = touched.keys().map(|c| self.heads[c].clone()).collect();
        (records, heads)
    }
}

/// Small deterministic PRNG (xorshift64*), so the benchmark needs no `rand` dependency and the
/// crash test can regenerate exactly what its child wrote.
#[derive(Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        // splitmix64 step so that small seeds give well-mixed states
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        Rng((z ^ (z >> 31)) | 1)
    }
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in `lo..hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo)
    }
}

/// Channel names used by the benchmarks: `room-00`, `room-01`, ...
pub fn channel_names(n: usize) -> Vec<Arc<str>> {
    (0..n).map(|i| Arc::from(format!("room-{i:02}"))).collect()
}

/// A JSON event frame of 150..=400 bytes, like what publishers send.
pub fn make_frame(rng: &mut Rng, channel: &str, id: u64) -> String {
    let target = rng.range(150, 401) as usize;
    let mut s = format!(r#"{{"type":"message","channel":"{channel}","id":{id},"payload":""#);
    let alphabet = b"abcdefghijklmnopqrstuvwxyz0123456789 ";
    while s.len() + 2 < target {
        s.push(alphabet[(rng.next_u64() % alphabet.len() as u64) as usize] as char);
    }
    s.push_str("\"}");
    s
}

/// A pool of pre-built frames, so that frame generation is not part of what is measured.
pub struct FramePool {
    frames: Vec<String>,
    next: usize,
}

impl FramePool {
    pub fn new(seed: u64, size: usize) -> Self {
        let mut rng = Rng::new(seed);
        let frames = (0..size as u64).map(|i| make_frame(&mut rng, "room-xx", i)).collect();
        FramePool { frames, next: 0 }
    }
    pub fn next(&mut self) -> String {
        self.next = (self.next + 1) % self.frames.len();
        self.frames[self.next].clone()
    }
}
