//! The event log on redb (pure Rust, copy-on-write B-trees, one fsync per commit by default).
//!
//! Layout: two tables.
//! - `events`:   key `(channel, offset)`  -> value `(unix_millis, frame)`.
//!   Tuple keys compare element by element, so one channel's entries are contiguous and in
//!   offset order: trimming and recovery reads are range operations.
//! - `channels`: key `channel` -> value `(epoch, latest_offset)`. The latest offset is kept here
//!   rather than derived from `events`, because TTL trimming may remove every entry.

use super::EventLog;
use crate::model::{ChannelHead, ChannelState, Entry, Record, Result, Retention};
use redb::{
    Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition, TableError,
};
use std::path::Path;

const EVENTS: TableDefinition<(&str, u64), (u64, &str)> = TableDefinition::new("events");
const CHANNELS: TableDefinition<&str, (&str, u64)> = TableDefinition::new("channels");

pub struct RedbLog {
    db: Database,
    /// redb "quick repair": saves the allocator state at every commit and uses 2-phase commit,
    /// so reopening after a crash does not walk the whole file. Costs extra work per commit.
    quick_repair: bool,
}

impl RedbLog {
    pub fn open(path: &Path, quick_repair: bool) -> Result<Self> {
        // `create` opens an existing database or initialises a new one. After an unclean
        // shutdown it repairs the file first (walks every page unless quick repair was on).
        let db = Database::builder().create(path)?;
        // Tables are created by opening them in a write transaction. Do it once, on a new file
        // only (an empty write commit would still cost an fsync at every start-up), so that
        // read transactions never see "table does not exist".
        let exists = match db.begin_read()?.open_table(CHANNELS) {
            Ok(_) => true,
            Err(TableError::TableDoesNotExist(_)) => false,
            Err(e) => return Err(e.into()),
        };
        if !exists {
            let txn = db.begin_write()?;
            txn.open_table(EVENTS)?;
            txn.open_table(CHANNELS)?;
            txn.commit()?;
        }
        Ok(RedbLog { db, quick_repair })
    }
}

impl EventLog for RedbLog {
    fn append_group(
        &mut self,
        records: &[Record],
        heads: &[ChannelHead],
        retention: &Retention,
        now_millis: u64,
    ) -> Result<()> {
        // Durability::Immediate is the default: commit() returns after the fsync.
        let mut txn = self.db.begin_write()?;
        txn.set_quick_repair(self.quick_repair);
        {
            let mut events = txn.open_table(EVENTS)?;
            let mut channels = txn.open_table(CHANNELS)?;
            for r in records {
                events.insert((&*r.channel, r.offset), (r.unix_millis, r.frame.as_str()))?;
            }
            let ttl_cutoff = retention.ttl_cutoff(now_millis);
            for h in heads {
                channels.insert(&*h.channel, (&*h.epoch, h.latest))?;

                // Trim, part 1: the count limit removes every offset <= latest - N.
                let mut cut = retention.count_cut(h.latest);
                // Trim, part 2: the TTL. Timestamps grow with offsets within a channel, so walk
                // from the oldest entry and stop at the first one that is not expired; in steady
                // state that is a single lookup.
                for item in events.range::<(&str, u64)>((&*h.channel, 0)..=(&*h.channel, h.latest))? {
                    let (k, v) = item?;
                    if v.value().0 >= ttl_cutoff {
                        break;
                    }
                    cut = cut.max(k.value().1);
                }
                if cut > 0 {
                    // retain_in walks the range with one cursor and removes in place: much cheaper
                    // than one `remove()` per key. The range starts at the oldest retained entry.
                    events.retain_in::<(&str, u64), _>((&*h.channel, 0)..=(&*h.channel, cut), |_, _| false)?;
                }
            }
        }
        txn.commit()?;
        Ok(())
    }

    fn load_all(&self, max_entries: u64) -> Result<Vec<ChannelState>> {
        let txn = self.db.begin_read()?;
        let channels = match txn.open_table(CHANNELS) {
            Ok(t) => t,
            Err(TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        };
        let events = txn.open_table(EVENTS)?;
        let mut out = Vec::new();
        for item in channels.iter()? {
            let (name, head) = item?;
            let name = name.value().to_string();
            let (epoch, latest) = head.value();
            let first = latest.saturating_sub(max_entries) + 1;
            let mut entries = Vec::with_capacity(max_entries.min(latest) as usize);
            for item in events.range::<(&str, u64)>((name.as_str(), first)..=(name.as_str(), latest))? {
                let (k, v) = item?;
                let (unix_millis, frame) = v.value();
                entries.push(Entry { offset: k.value().1, unix_millis, frame: frame.to_string() });
            }
            out.push(ChannelState { channel: name, epoch: epoch.to_string(), latest, entries });
        }
        Ok(out)
    }

    fn read_after(&self, channel: &str, after: u64, limit: usize) -> Result<Vec<Entry>> {
        let txn = self.db.begin_read()?;
        let events = txn.open_table(EVENTS)?;
        let mut out = Vec::with_capacity(limit);
        for item in events.range::<(&str, u64)>((channel, after + 1)..=(channel, u64::MAX))?.take(limit) {
            let (k, v) = item?;
            let (unix_millis, frame) = v.value();
            out.push(Entry { offset: k.value().1, unix_millis, frame: frame.to_string() });
        }
        Ok(out)
    }

    fn check_integrity(&mut self) -> Result<bool> {
        Ok(self.db.check_integrity()?)
    }

    fn compact(&mut self) -> Result<()> {
        // Needs `&mut Database` and no live read transaction; moves pages down and truncates.
        while self.db.compact()? {}
        Ok(())
    }

    fn space_report(&mut self) -> Result<String> {
        let txn = self.db.begin_write()?;
        let s = txn.stats()?;
        let rows = txn.open_table(EVENTS)?.len()?;
        txn.abort()?;
        Ok(format!(
            "rows={rows} stored={}KiB metadata={}KiB fragmented(free inside file)={}KiB allocated_pages={}",
            s.stored_bytes() / 1024,
            s.metadata_bytes() / 1024,
            s.fragmented_bytes() / 1024,
            s.allocated_pages()
        ))
    }
}
