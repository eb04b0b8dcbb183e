//! The durable event log behind `--data-dir`: channel events in an SQLite database
//! (`DATA_DIR/livebridge.db`, through rusqlite with SQLite compiled in), written by one thread
//! with group commit — every batch the engine asked to store while the previous commit was
//! being written goes into the next transaction, with one `fsync` for all of them — and read
//! back at start-up.
//!
//! Why SQLite, and these settings, is measured in `docs/performance.md` ("Choosing the
//! store"). WAL journal with `synchronous = FULL`: a commit returns only once its WAL frames
//! are on disk, so an acknowledged publish survives a process crash and a power loss. Tables
//! are `WITHOUT ROWID`, keyed by (channel, offset): a channel's events are contiguous, trims
//! and reads are range scans. The engine says which offsets a channel may drop
//! (`keep_from`); the store also drops events older than the history's age limit.
//!
//! A lost tail is detected, not served. SQLite recovers a damaged write-ahead log by keeping
//! the frames before the first bad checksum, which is a consistent but *shorter* history: the
//! events acknowledged in the lost frames would be gone while the channels kept their epoch,
//! and a client that had seen them would be told `recovered: true` over a hole (and, once new
//! events take the lost offsets, be handed different events under offsets it already has).
//! So after every commit the writer records, in a small file beside the database
//! (`livebridge.acked`), how many offsets the store holds in all (the sum of every channel's
//! latest offset, which only grows); at start-up a database that holds fewer than that record
//! says has lost acknowledged events, and every channel starts a new epoch (clients are told
//! `recovered: false`, never handed a silently shortened history under the old epoch). The
//! record is written after the commit's `fsync` and is not itself synced: a crash can only
//! leave it behind the database, never ahead of it.
//!
//! `max_bytes` (`--data-max-size`) counts the database file and its write-ahead log together.
//! SQLite's own `max_page_count` bounds the database file alone; the write-ahead log grows
//! until a checkpoint copies it back (by default past 4 MB), so under a cap the log gets a
//! fixed share of it ([`WAL_SHARE_DIVISOR`]) and is checkpointed and truncated before a commit
//! that could pass that share.

use livebridge_core::{
    Input, PersistBatch, StoreError, StoreErrorKind, StoredChannel, StoredEvent,
};
use rusqlite::{Connection, ErrorCode, OptionalExtension, TransactionBehavior, params};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, Sender, channel};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tracing::{info, warn};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT NOT NULL PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS channels (
    name   TEXT    NOT NULL PRIMARY KEY,
    epoch  TEXT    NOT NULL,
    latest INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS events (
    channel TEXT    NOT NULL,
    seq     INTEGER NOT NULL,
    ts      INTEGER NOT NULL,
    frame   TEXT    NOT NULL,
    PRIMARY KEY (channel, seq)
) WITHOUT ROWID;
";

/// The database file in a data dir.
pub const DATABASE_FILE: &str = "livebridge.db";

/// The record of how many offsets the store held at its last commit, in a data dir.
pub const ACKED_FILE: &str = "livebridge.acked";

/// Under `--data-max-size`, the write-ahead log may take `1 / WAL_SHARE_DIVISOR` of the cap
/// and the database file the rest: a commit's frames must fit in the log's share, so the
/// share is large enough for a commit of a few events even under a cap of a few pages.
pub const WAL_SHARE_DIVISOR: u64 = 2;

/// What the store keeps, and how much disk it may use.
#[derive(Clone, Debug)]
pub struct StoreSettings {
    /// The data dir (created if missing).
    pub dir: PathBuf,
    /// Events kept per channel (the engine's `history_size`).
    pub history_size: usize,
    /// Oldest event kept (the engine's `history_ttl`).
    pub history_ttl: Duration,
    /// Largest the database file and its write-ahead log may grow, together; beyond it
    /// publishes fail as on a full disk. `None`: the disk is the limit.
    pub max_bytes: Option<u64>,
}

/// Why the store cannot open: the message names the path.
#[derive(Debug)]
pub struct OpenError(pub String);

impl std::fmt::Display for OpenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for OpenError {}

/// An open store: its history, to hand to the engine before anything else, and the log to
/// write to.
pub struct Opened {
    /// The stored channels and epoch, as the engine's first input.
    pub loaded: Input,
    /// The log, for [`spawn_writer`].
    pub log: EventLog,
}

/// The database connection and what to keep in it.
pub struct EventLog {
    conn: Connection,
    path: PathBuf,
    settings: StoreSettings,
    /// The epoch is stored once.
    epoch_stored: bool,
    /// Every channel's latest stored offset, and their sum (what [`ACKED_FILE`] records).
    latest: BTreeMap<String, u64>,
    stored_offsets: u64,
    /// [`ACKED_FILE`], rewritten after every commit.
    acked: AckedRecord,
    /// Under `--data-max-size`: the write-ahead log's share of it.
    wal_limit: Option<WalLimit>,
    /// Held for as long as the log is open: a second hub on the same data dir would
    /// interleave its offsets and epochs with this one's.
    _lock: DataDirLock,
}

/// The write-ahead log's share of `--data-max-size`, and what a commit takes of it.
struct WalLimit {
    /// `DATA_DIR/livebridge.db-wal`.
    path: PathBuf,
    /// Bytes the log file may take.
    bytes: u64,
    /// The database's page size: the log holds one frame (a page and 24 bytes) per page a
    /// commit changes.
    page: u64,
}

impl WalLimit {
    /// The log bytes a commit of `batches` may add, erring high: its events' bytes half
    /// again (leaf pages are not full after splits), and the pages every commit touches
    /// besides (the channels' heads, the b-trees' inner pages, the free list of a trim).
    fn estimate(&self, batches: &[Batch]) -> u64 {
        let bytes: u64 = batches
            .iter()
            .flat_map(|b| &b.events)
            .map(|e| (e.frame.len() + e.channel.len() + 24) as u64)
            .sum();
        let pages = (bytes * 3 / 2).div_ceil(self.page) + 4;
        pages * (self.page + 24) + 32
    }

    fn used(&self) -> u64 {
        std::fs::metadata(&self.path).map_or(0, |m| m.len())
    }
}

/// What [`ACKED_FILE`] says.
#[derive(Debug, PartialEq)]
enum AckedState {
    /// No file: a new data dir, or one from before the record existed.
    Missing,
    /// The sum of the channels' latest offsets at the last commit that completed.
    Offsets(u64),
    /// Something that is not a record (damaged): nothing can be proven from it.
    Unreadable,
}

/// [`ACKED_FILE`], open for rewriting in place: one fixed-width line, so a rewrite never
/// leaves a longer old one's tail behind.
struct AckedRecord {
    file: std::fs::File,
}

impl AckedRecord {
    fn read(dir: &Path) -> AckedState {
        match std::fs::read_to_string(dir.join(ACKED_FILE)) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => AckedState::Missing,
            Err(_) => AckedState::Unreadable,
            Ok(text) => text
                .strip_prefix("stored-offsets ")
                .and_then(|rest| rest.strip_suffix('\n'))
                .and_then(|n| n.parse().ok())
                .map_or(AckedState::Unreadable, AckedState::Offsets),
        }
    }

    fn open(dir: &Path) -> std::io::Result<AckedRecord> {
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(dir.join(ACKED_FILE))?;
        Ok(AckedRecord { file })
    }

    fn write(&mut self, offsets: u64) -> std::io::Result<()> {
        use std::io::{Seek, Write};
        let line = format!("stored-offsets {offsets:020}\n");
        self.file.rewind()?;
        self.file.write_all(line.as_bytes())?;
        self.file.set_len(line.len() as u64)
    }
}

/// A fresh epoch for a store that lost acknowledged events: eight random bytes as 16 hex
/// digits, like the engine's own.
fn fresh_epoch() -> String {
    let mut bytes = [0u8; 8];
    if getrandom::fill(&mut bytes).is_err() {
        // No generator: the time still makes it differ from the epoch it replaces.
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        bytes = (nanos ^ u64::from(std::process::id()).rotate_left(32)).to_be_bytes();
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The lock file in a data dir.
pub const LOCK_FILE: &str = "livebridge.lock";

/// An exclusive lock on `DATA_DIR/livebridge.lock`, released when dropped (or when the
/// process dies, however it dies: the operating system releases it, so a `kill -9` leaves no
/// stale lock behind). The file holds the owner's process id, for the refusal's message.
struct DataDirLock {
    _file: std::fs::File,
}

impl DataDirLock {
    fn acquire(dir: &Path) -> Result<DataDirLock, String> {
        use std::io::{Read, Seek, Write};
        let path = dir.join(LOCK_FILE);
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| format!("data dir {}: cannot open {LOCK_FILE}: {e}", dir.display()))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut owner = String::new();
                let _ = file.read_to_string(&mut owner);
                let owner = match owner.trim() {
                    "" => String::new(),
                    pid => format!(" (process {pid})"),
                };
                return Err(format!(
                    "data dir {}: in use by another livebridge{owner}; stop it, or give this \
                     one another --data-dir",
                    dir.display()
                ));
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(format!(
                    "data dir {}: cannot lock {LOCK_FILE}: {e}",
                    dir.display()
                ));
            }
        }
        let pid = std::process::id().to_string();
        let written = file
            .set_len(0)
            .and_then(|()| file.rewind())
            .and_then(|()| file.write_all(pid.as_bytes()));
        if let Err(e) = written {
            warn!(error = %e, "could not write the process id into {LOCK_FILE}");
        }
        Ok(DataDirLock { _file: file })
    }
}

/// Opens (or creates) the store in `settings.dir` and reads back what it holds.
pub fn open(settings: StoreSettings) -> Result<Opened, OpenError> {
    let dir = settings.dir.clone();
    let fail = |what: &str, error: &dyn std::fmt::Display| {
        OpenError(format!("data dir {}: {what}: {error}", dir.display()))
    };
    if dir.exists() && !dir.is_dir() {
        return Err(OpenError(format!(
            "data dir {}: is not a directory (--data-dir names a directory the hub keeps its \
             files in)",
            dir.display()
        )));
    }
    std::fs::create_dir_all(&dir).map_err(|e| fail("cannot create it", &e))?;
    let lock = DataDirLock::acquire(&dir).map_err(OpenError)?;
    let path = dir.join(DATABASE_FILE);
    let conn = Connection::open(&path).map_err(|e| fail("cannot open the database", &e))?;
    let setup = || -> Result<Option<WalLimit>, String> {
        let sql = |e: rusqlite::Error| e.to_string();
        let mode: String = conn
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
            .map_err(sql)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(format!("the journal mode is {mode}, not WAL"));
        }
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(sql)?;
        let mut wal_limit = None;
        if let Some(max) = settings.max_bytes {
            let page: i64 = conn
                .query_row("PRAGMA page_size", [], |r| r.get(0))
                .map_err(sql)?;
            let page = page.max(512) as u64;
            // The database file gets what the log's share leaves (SQLite refuses a commit
            // that needs more pages with SQLITE_FULL); the log is kept within its share by
            // the writer (`EventLog::make_room`), and SQLite truncates it to that share
            // after any checkpoint of its own.
            let wal_bytes = max / WAL_SHARE_DIVISOR;
            let pages = ((max - wal_bytes) / page).max(1);
            conn.pragma_update(None, "max_page_count", pages as i64)
                .map_err(sql)?;
            conn.pragma_update(None, "journal_size_limit", wal_bytes as i64)
                .map_err(sql)?;
            wal_limit = Some(WalLimit {
                path: dir.join(format!("{DATABASE_FILE}-wal")),
                bytes: wal_bytes,
                page,
            });
        }
        conn.execute_batch(SCHEMA).map_err(sql)?;
        let check: String = conn
            .query_row("PRAGMA quick_check", [], |r| r.get(0))
            .map_err(sql)?;
        if check != "ok" {
            return Err(format!("corrupt: {check}"));
        }
        Ok(wal_limit)
    };
    let wal_limit = setup().map_err(|e| {
        fail(
            &format!("{} is not a usable livebridge database", path.display()),
            &e,
        )
    })?;
    let damaged = drop_damaged_events(&conn).map_err(|e| fail("cannot read the database", &e))?;
    let latest = read_latest(&conn).map_err(|e| fail("cannot read the database", &e))?;
    let stored_offsets: u64 = latest.values().sum();
    let lost = match AckedRecord::read(&dir) {
        _ if !damaged.is_empty() => Some(format!(
            "{} holds damaged events (zeroed or cut short: SQLite keeps no checksum of a \
             page's content), dropped with every later event of their channel: {}",
            path.display(),
            damaged.join(", ")
        )),
        AckedState::Offsets(acked) if acked <= stored_offsets => None,
        AckedState::Missing if stored_offsets == 0 => None,
        AckedState::Offsets(acked) => Some(format!(
            "{ACKED_FILE} records {acked} offsets acknowledged but {} holds {stored_offsets}: \
             acknowledged events were lost (a truncated or damaged {DATABASE_FILE}-wal or \
             {DATABASE_FILE}, or an older copy of it)",
            path.display()
        )),
        AckedState::Missing => Some(format!(
            "{ACKED_FILE} is missing beside {}: nothing proves that no acknowledged event was \
             lost",
            path.display()
        )),
        AckedState::Unreadable => Some(format!(
            "{ACKED_FILE} is damaged: nothing proves that {} lost no acknowledged event",
            path.display()
        )),
    };
    if let Some(why) = lost {
        let epoch = fresh_epoch();
        warn!(
            data_dir = %dir.display(),
            %epoch,
            "{why}; every channel starts a new epoch (clients are told `recovered: false`)"
        );
        start_new_epoch(&conn, &epoch)
            .map_err(|e| fail("cannot start a new epoch after losing events", &e))?;
    }
    let mut acked = AckedRecord::open(&dir).map_err(|e| fail(ACKED_FILE, &e))?;
    acked
        .write(stored_offsets)
        .map_err(|e| fail(ACKED_FILE, &e))?;
    let log = EventLog {
        conn,
        path,
        settings,
        epoch_stored: false,
        latest,
        stored_offsets,
        acked,
        wal_limit,
        _lock: lock,
    };
    let loaded = log
        .load()
        .map_err(|e| fail("cannot read the database", &e))?;
    Ok(Opened { loaded, log })
}

/// Every channel's latest offset.
fn read_latest(conn: &Connection) -> rusqlite::Result<BTreeMap<String, u64>> {
    let mut heads = conn.prepare("SELECT name, latest FROM channels")?;
    heads
        .query_map([], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as u64)))?
        .collect()
}

/// Finds the events whose stored frame is not whole — it holds a byte no JSON text holds
/// (a zeroed page reads as NULs), or does not end with the channel, offset and epoch the
/// engine appended to it (a page cut short) — and deletes each of them with every later
/// event of its channel, whose latest offset becomes the last whole event's: what is left
/// is contiguous. Says what was dropped (`jobs: from offset 173`); the caller starts a new
/// epoch, so the offsets given again are never taken for the lost ones.
fn drop_damaged_events(conn: &Connection) -> rusqlite::Result<Vec<String>> {
    let mut first_damaged: BTreeMap<String, u64> = BTreeMap::new();
    {
        let mut rows = conn.prepare(
            "SELECT e.channel, e.seq, e.frame, c.epoch FROM events e \
             JOIN channels c ON c.name = e.channel",
        )?;
        let mut rows = rows.query([])?;
        while let Some(row) = rows.next()? {
            let channel: String = row.get(0)?;
            let seq = row.get::<_, i64>(1)? as u64;
            let frame = row.get_ref(2)?.as_bytes().unwrap_or_default();
            let epoch = row.get_ref(3)?.as_bytes().unwrap_or_default();
            let suffix = format!(
                "\"channel\":\"{channel}\",\"offset\":{seq},\"epoch\":\"{}\"}}",
                String::from_utf8_lossy(epoch)
            );
            let whole = frame.first() == Some(&b'{')
                && frame.ends_with(suffix.as_bytes())
                && !frame.iter().any(|&b| b < 0x20);
            if !whole {
                let first = first_damaged.entry(channel).or_insert(seq);
                *first = (*first).min(seq);
            }
        }
    }
    if first_damaged.is_empty() {
        return Ok(Vec::new());
    }
    let tx = conn.unchecked_transaction()?;
    for (channel, first) in &first_damaged {
        tx.execute(
            "DELETE FROM events WHERE channel = ?1 AND seq >= ?2",
            params![channel, sql_int(*first)],
        )?;
        tx.execute(
            "UPDATE channels SET latest = ?2 WHERE name = ?1",
            params![channel, sql_int(first - 1)],
        )?;
    }
    tx.commit()?;
    Ok(first_damaged
        .iter()
        .map(|(channel, first)| format!("{channel}: from offset {first}"))
        .collect())
}

/// Gives every channel, and the channels still to come, `epoch`, in one transaction: the
/// stored events keep their offsets but carry the new epoch (their frames end with it), so
/// what is left is served as a new history, never as the old one with a hole.
fn start_new_epoch(conn: &Connection, epoch: &str) -> rusqlite::Result<()> {
    let tx = conn.unchecked_transaction()?;
    {
        let mut heads = tx.prepare("SELECT name, epoch FROM channels")?;
        let heads: Vec<(String, String)> = heads
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<rusqlite::Result<_>>()?;
        let mut reframe = tx.prepare(
            "UPDATE events SET frame = substr(frame, 1, length(frame) - ?3) || ?4 \
             WHERE channel = ?1 AND substr(frame, -?3) = ?2",
        )?;
        let new_suffix = format!("\"epoch\":\"{epoch}\"}}");
        for (name, old) in &heads {
            let old_suffix = format!("\"epoch\":\"{old}\"}}");
            reframe.execute(params![
                name,
                old_suffix,
                old_suffix.chars().count() as i64,
                new_suffix
            ])?;
        }
        tx.execute("UPDATE channels SET epoch = ?1", params![epoch])?;
        tx.execute(
            "INSERT OR REPLACE INTO meta (key, value) VALUES ('epoch', ?1)",
            params![epoch],
        )?;
    }
    tx.commit()
}

fn sql_int(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

fn now_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl EventLog {
    /// Every channel's epoch, latest offset and the events still within the limits, and the
    /// epoch new channels get.
    fn load(&self) -> rusqlite::Result<Input> {
        let epoch: Option<String> = self
            .conn
            .query_row("SELECT value FROM meta WHERE key = 'epoch'", [], |r| {
                r.get(0)
            })
            .optional()?;
        let cutoff = now_millis().saturating_sub(self.settings.history_ttl.as_millis() as u64);
        let mut heads = self
            .conn
            .prepare("SELECT name, epoch, latest FROM channels ORDER BY name")?;
        let heads: Vec<(String, String, u64)> = heads
            .query_map([], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get::<_, i64>(2)? as u64))
            })?
            .collect::<rusqlite::Result<_>>()?;
        let mut read = self.conn.prepare(
            "SELECT seq, ts, frame FROM events WHERE channel = ?1 AND seq > ?2 AND ts >= ?3 \
             ORDER BY seq",
        )?;
        let mut channels = Vec::with_capacity(heads.len());
        for (name, channel_epoch, latest) in heads {
            let after = latest.saturating_sub(self.settings.history_size as u64);
            let shared_name: Arc<str> = name.as_str().into();
            let shared_epoch: Arc<str> = channel_epoch.as_str().into();
            let events = read
                .query_map(params![name, sql_int(after), sql_int(cutoff)], |r| {
                    Ok(StoredEvent {
                        channel: Arc::clone(&shared_name),
                        epoch: Arc::clone(&shared_epoch),
                        offset: r.get::<_, i64>(0)? as u64,
                        unix_millis: r.get::<_, i64>(1)? as u64,
                        frame: r.get::<_, String>(2)?.into(),
                    })
                })?
                .collect::<rusqlite::Result<_>>()?;
            channels.push(StoredChannel {
                name,
                epoch: channel_epoch,
                latest,
                events,
            });
        }
        Ok(Input::HistoryLoaded { epoch, channels })
    }

    /// Stores a group of batches in one transaction: every event, each channel's head, and the
    /// trims. One `fsync` at commit.
    fn commit(&mut self, batches: &[Batch]) -> rusqlite::Result<()> {
        self.make_room(batches)?;
        let cutoff = now_millis().saturating_sub(self.settings.history_ttl.as_millis() as u64);
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        {
            if !self.epoch_stored
                && let Some(batch) = batches.first()
            {
                tx.execute(
                    "INSERT OR IGNORE INTO meta (key, value) VALUES ('epoch', ?1)",
                    params![&*batch.epoch],
                )?;
            }
            let mut insert = tx.prepare_cached(
                "INSERT OR REPLACE INTO events (channel, seq, ts, frame) VALUES (?1, ?2, ?3, ?4)",
            )?;
            let mut head = tx.prepare_cached(
                "INSERT INTO channels (name, epoch, latest) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (name) DO UPDATE SET epoch = excluded.epoch, \
                 latest = max(latest, excluded.latest)",
            )?;
            let mut trim =
                tx.prepare_cached("DELETE FROM events WHERE channel = ?1 AND seq < ?2")?;
            let mut first_live = tx.prepare_cached(
                "SELECT seq FROM events WHERE channel = ?1 AND ts >= ?2 ORDER BY seq LIMIT 1",
            )?;
            // Per channel touched: its epoch, latest offset, and the first offset to keep.
            let mut touched: BTreeMap<&str, (&str, u64, u64)> = BTreeMap::new();
            for batch in batches {
                for event in &batch.events {
                    insert.execute(params![
                        &*event.channel,
                        sql_int(event.offset),
                        sql_int(event.unix_millis),
                        &*event.frame
                    ])?;
                    let entry = touched
                        .entry(&event.channel)
                        .or_insert((&event.epoch, 0, 0));
                    entry.0 = &event.epoch;
                    entry.1 = entry.1.max(event.offset);
                }
                for (channel, keep_from) in &batch.keep_from {
                    if let Some(entry) = touched.get_mut(&**channel) {
                        entry.2 = entry.2.max(*keep_from);
                    }
                }
            }
            for (channel, (epoch, latest, keep_from)) in touched {
                head.execute(params![channel, epoch, sql_int(latest)])?;
                // Events older than the age limit go too (timestamps grow with offsets).
                let live: Option<i64> = first_live
                    .query_row(params![channel, sql_int(cutoff)], |r| r.get(0))
                    .optional()?;
                let from = live.map_or(keep_from, |first| (first as u64).max(keep_from));
                trim.execute(params![channel, sql_int(from)])?;
            }
        }
        tx.commit()?;
        self.epoch_stored = true;
        for batch in batches {
            for event in &batch.events {
                let latest = self.latest.entry(event.channel.to_string()).or_insert(0);
                if event.offset > *latest {
                    self.stored_offsets += event.offset - *latest;
                    *latest = event.offset;
                }
            }
        }
        if let Err(error) = self.acked.write(self.stored_offsets) {
            // The events are stored; a record left behind only makes the next start-up
            // begin a new epoch it might not have needed.
            warn!(%error, "could not update {ACKED_FILE}");
        }
        Ok(())
    }

    /// Under `--data-max-size`: refuses (as a full disk) a commit whose log frames could not
    /// fit in the log's share, and checkpoints the log into the database, truncating it,
    /// when this commit's frames could take it past its share.
    fn make_room(&mut self, batches: &[Batch]) -> rusqlite::Result<()> {
        let Some(limit) = &self.wal_limit else {
            return Ok(());
        };
        let needed = limit.estimate(batches);
        if needed > limit.bytes {
            return Err(rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_FULL),
                Some(format!(
                    "a commit of about {needed} bytes does not fit in the write-ahead log's \
                     share of --data-max-size ({} bytes)",
                    limit.bytes
                )),
            ));
        }
        if limit.used() + needed > limit.bytes {
            self.conn
                .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
        }
        Ok(())
    }

    /// `batches` cut into groups that each fit in one commit: all of them, unless
    /// `--data-max-size` leaves the log too small a share for all of them at once.
    fn groups<'b>(&self, batches: &'b [Batch]) -> Vec<&'b [Batch]> {
        let Some(limit) = &self.wal_limit else {
            return vec![batches];
        };
        let mut groups = Vec::new();
        let mut start = 0;
        for end in 1..=batches.len() {
            if end - start > 1 && limit.estimate(&batches[start..end]) > limit.bytes {
                groups.push(&batches[start..end - 1]);
                start = end - 1;
            }
        }
        if start < batches.len() {
            groups.push(&batches[start..]);
        }
        groups
    }
}

/// A batch to store, as the engine asked.
pub type Batch = Box<PersistBatch>;

/// The way to the writer thread.
#[derive(Clone)]
pub struct StoreHandle {
    batches: Sender<Batch>,
}

impl StoreHandle {
    /// Queues a batch; the writer stores it with whatever else is queued and reports back.
    pub fn store(&self, batch: Batch) {
        // The writer only stops after every handle is gone.
        let _ = self.batches.send(batch);
    }
}

/// Starts the writer thread. Each outcome goes to `report` (the hub's input): `Persisted`
/// once a batch is on disk, `PersistFailed` when it is not; after a failure, the batches of
/// the same generation that follow are refused without being written, so no later offset is
/// stored after one that is missing.
pub fn spawn_writer(
    mut log: EventLog,
    report: impl Fn(Input) + Send + 'static,
) -> std::io::Result<(StoreHandle, std::thread::JoinHandle<()>)> {
    let (batches, receiver) = channel::<Batch>();
    let thread = std::thread::Builder::new()
        .name("livebridge-store".to_string())
        .spawn(move || write_batches(&mut log, &receiver, &report))?;
    Ok((StoreHandle { batches }, thread))
}

fn write_batches(log: &mut EventLog, receiver: &Receiver<Batch>, report: &impl Fn(Input)) {
    info!(path = %log.path.display(), "durable history: storing channel events");
    let mut failed_generation: Option<u64> = None;
    while let Ok(first) = receiver.recv() {
        // Group commit: everything that arrived while the last commit was being written.
        let mut group = vec![first];
        group.extend(receiver.try_iter());
        let (refused, to_write): (Vec<Batch>, Vec<Batch>) = group
            .into_iter()
            .partition(|b| failed_generation.is_some_and(|g| b.generation <= g));
        for batch in refused {
            report(Input::PersistFailed {
                batch: batch.batch,
                error: StoreError {
                    kind: StoreErrorKind::Failed,
                    message: "an earlier event could not be stored".to_string(),
                },
            });
        }
        let groups = log.groups(&to_write);
        let mut failed: Option<(usize, StoreError)> = None;
        for (index, group) in groups.iter().enumerate() {
            match log.commit(group) {
                Ok(()) => {
                    for batch in *group {
                        report(Input::Persisted { batch: batch.batch });
                    }
                }
                Err(error) => {
                    let kind = match error.sqlite_error_code() {
                        Some(ErrorCode::DiskFull) => StoreErrorKind::Full,
                        _ => StoreErrorKind::Failed,
                    };
                    let message = format!("{}: {error}", log.path.display());
                    warn!(%message, ?kind, batches = group.len(), "could not store channel events");
                    failed = Some((index, StoreError { kind, message }));
                    break;
                }
            }
        }
        // A group that failed, and the ones after it, are refused: no later offset is
        // stored after one that is missing.
        if let Some((index, error)) = failed {
            let refused = groups[index..].iter().flat_map(|g| g.iter());
            failed_generation = to_write.iter().map(|b| b.generation).max();
            for batch in refused {
                report(Input::PersistFailed {
                    batch: batch.batch,
                    error: error.clone(),
                });
            }
        }
    }
}

/// The path of the database in a data dir.
pub fn database_path(dir: &Path) -> PathBuf {
    dir.join(DATABASE_FILE)
}
