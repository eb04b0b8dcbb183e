//! The event log on SQLite (rusqlite, `bundled` feature: SQLite is compiled in, no system lib).
//!
//! Layout: two WITHOUT ROWID tables, so rows are stored in primary-key order (one channel's
//! entries are contiguous and in offset order; trims and recovery reads are PK range scans).
//! The offset column is called `seq` because OFFSET is an SQL keyword.

use super::EventLog;
use crate::model::{ChannelHead, ChannelState, Entry, Record, Result, Retention};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use std::path::Path;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS channels (
    name   TEXT    NOT NULL PRIMARY KEY,
    epoch  TEXT    NOT NULL,
    latest INTEGER NOT NULL      -- kept explicitly: TTL trimming may remove every entry
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS events (
    channel TEXT    NOT NULL,
    seq     INTEGER NOT NULL,    -- the channel offset
    ts      INTEGER NOT NULL,    -- unix millis
    frame   TEXT    NOT NULL,
    PRIMARY KEY (channel, seq)
) WITHOUT ROWID;
";

// Statements used on the hot path; `prepare_cached` compiles each once per connection.
const INSERT_EVENT: &str = "INSERT INTO events (channel, seq, ts, frame) VALUES (?1, ?2, ?3, ?4)";
const UPSERT_HEAD: &str = "INSERT INTO channels (name, epoch, latest) VALUES (?1, ?2, ?3)
     ON CONFLICT (name) DO UPDATE SET epoch = excluded.epoch, latest = excluded.latest";
/// First entry that is not expired. Walks the PK from the oldest entry: timestamps grow with
/// offsets, so in steady state the first row already qualifies (one step).
const FIRST_LIVE: &str =
    "SELECT seq FROM events WHERE channel = ?1 AND ts >= ?2 ORDER BY seq LIMIT 1";
const TRIM: &str = "DELETE FROM events WHERE channel = ?1 AND seq <= ?2";
const RANGE: &str =
    "SELECT seq, ts, frame FROM events WHERE channel = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3";

pub struct SqliteLog {
    conn: Connection,
}

impl SqliteLog {
    /// `full_sync`: `synchronous=FULL` (fsync the WAL at every commit) or `NORMAL` (fsync only
    /// at checkpoints: a power loss can drop the last commits, a process crash cannot).
    pub fn open(path: &Path, full_sync: bool) -> Result<Self> {
        let conn = Connection::open(path)?;
        // journal_mode returns the resulting mode as a row, so read it rather than `execute`.
        let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(format!("could not enable WAL, journal_mode={mode}").into());
        }
        conn.pragma_update(None, "synchronous", if full_sync { "FULL" } else { "NORMAL" })?;
        // Defaults kept on purpose (and visible here): wal_autocheckpoint=1000 pages (~4 MiB),
        // journal_size_limit=-1 (the WAL file is reused, not truncated, after a checkpoint),
        // auto_vacuum=NONE (freed pages are reused, the file never shrinks by itself).
        conn.execute_batch(SCHEMA)?;
        Ok(SqliteLog { conn })
    }
}

impl EventLog for SqliteLog {
    fn append_group(
        &mut self,
        records: &[Record],
        heads: &[ChannelHead],
        retention: &Retention,
        now_millis: u64,
    ) -> Result<()> {
        // IMMEDIATE takes the write lock up front (no deferred-to-write upgrade that could hit
        // SQLITE_BUSY if another connection ever appears).
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        {
            let mut insert = tx.prepare_cached(INSERT_EVENT)?;
            for r in records {
                insert.execute(params![&*r.channel, sql_int(r.offset), sql_int(r.unix_millis), r.frame])?;
            }
            let mut upsert = tx.prepare_cached(UPSERT_HEAD)?;
            let mut first_live = tx.prepare_cached(FIRST_LIVE)?;
            let mut trim = tx.prepare_cached(TRIM)?;
            let ttl_cutoff = retention.ttl_cutoff(now_millis);
            for h in heads {
                upsert.execute(params![&*h.channel, &*h.epoch, sql_int(h.latest)])?;
                let mut cut = retention.count_cut(h.latest);
                let live: Option<i64> = first_live
                    .query_row(params![&*h.channel, sql_int(ttl_cutoff)], |r| r.get(0))
                    .optional()?;
                cut = cut.max(match live {
                    Some(first) => first as u64 - 1,
                    None => h.latest, // everything expired
                });
                if cut > 0 {
                    trim.execute(params![&*h.channel, sql_int(cut)])?;
                }
            }
        }
        // With synchronous=FULL the WAL is fsynced before commit returns.
        tx.commit()?;
        Ok(())
    }

    fn load_all(&self, max_entries: u64) -> Result<Vec<ChannelState>> {
        let mut heads = self.conn.prepare_cached("SELECT name, epoch, latest FROM channels ORDER BY name")?;
        let heads: Vec<(String, String, u64)> = heads
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get::<_, i64>(2)? as u64)))?
            .collect::<rusqlite::Result<_>>()?;
        // A read transaction around the per-channel queries gives one consistent snapshot
        // (and avoids re-acquiring the read lock per statement).
        self.conn.execute_batch("BEGIN")?;
        let mut out = Vec::with_capacity(heads.len());
        let result = (|| -> Result<()> {
            for (channel, epoch, latest) in heads {
                let after = latest.saturating_sub(max_entries);
                let entries = read_range(&self.conn, &channel, after, max_entries as usize)?;
                out.push(ChannelState { channel, epoch, latest, entries });
            }
            Ok(())
        })();
        self.conn.execute_batch("COMMIT")?;
        result?;
        Ok(out)
    }

    fn read_after(&self, channel: &str, after: u64, limit: usize) -> Result<Vec<Entry>> {
        read_range(&self.conn, channel, after, limit)
    }

    fn check_integrity(&mut self) -> Result<bool> {
        let mut stmt = self.conn.prepare("PRAGMA integrity_check")?;
        let rows: Vec<String> = stmt.query_map([], |r| r.get(0))?.collect::<rusqlite::Result<_>>()?;
        Ok(rows == ["ok"])
    }

    fn compact(&mut self) -> Result<()> {
        // VACUUM rewrites the database through the WAL; the checkpoint moves it into the file.
        self.conn.execute_batch("VACUUM; PRAGMA wal_checkpoint(TRUNCATE);")?;
        Ok(())
    }

    fn space_report(&mut self) -> Result<String> {
        let q = |sql: &str| -> Result<u64> { Ok(self.conn.query_row(sql, [], |r| r.get::<_, i64>(0))? as u64) };
        let rows = q("SELECT count(*) FROM events")?;
        let pages = q("PRAGMA page_count")?;
        let free = q("PRAGMA freelist_count")?;
        let page = q("PRAGMA page_size")?;
        Ok(format!("rows={rows} page_count={pages} freelist={free} pages ({} KiB free inside file)", free * page / 1024))
    }
}

fn read_range(conn: &Connection, channel: &str, after: u64, limit: usize) -> Result<Vec<Entry>> {
    let mut stmt = conn.prepare_cached(RANGE)?;
    let rows = stmt.query_map(params![channel, sql_int(after), limit as i64], |r| {
        Ok(Entry {
            offset: r.get::<_, i64>(0)? as u64,
            unix_millis: r.get::<_, i64>(1)? as u64,
            frame: r.get(2)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// SQLite integers are i64. rusqlite only converts u64 with its `fallible_uint` feature, so
/// convert explicitly; offsets and millisecond timestamps stay far below i64::MAX.
fn sql_int(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}
