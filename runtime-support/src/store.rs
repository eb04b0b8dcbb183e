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

/// What the store keeps, and how much disk it may use.
#[derive(Clone, Debug)]
pub struct StoreSettings {
    /// The data dir (created if missing).
    pub dir: PathBuf,
    /// Events kept per channel (the engine's `history_size`).
    pub history_size: usize,
    /// Oldest event kept (the engine's `history_ttl`).
    pub history_ttl: Duration,
    /// Largest the database may grow; beyond it publishes fail as on a full disk. `None`:
    /// the disk is the limit.
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
    /// Held for as long as the log is open: a second hub on the same data dir would
    /// interleave its offsets and epochs with this one's.
    _lock: DataDirLock,
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
    let setup = || -> Result<(), String> {
        let sql = |e: rusqlite::Error| e.to_string();
        let mode: String = conn
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
            .map_err(sql)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(format!("the journal mode is {mode}, not WAL"));
        }
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(sql)?;
        if let Some(max) = settings.max_bytes {
            let page: i64 = conn
                .query_row("PRAGMA page_size", [], |r| r.get(0))
                .map_err(sql)?;
            let pages = (max / page.max(1) as u64).max(1);
            conn.pragma_update(None, "max_page_count", pages as i64)
                .map_err(sql)?;
        }
        conn.execute_batch(SCHEMA).map_err(sql)?;
        let check: String = conn
            .query_row("PRAGMA quick_check", [], |r| r.get(0))
            .map_err(sql)?;
        if check != "ok" {
            return Err(format!("corrupt: {check}"));
        }
        Ok(())
    };
    setup().map_err(|e| {
        fail(
            &format!("{} is not a usable livebridge database", path.display()),
            &e,
        )
    })?;
    let log = EventLog {
        conn,
        path,
        settings,
        epoch_stored: false,
        _lock: lock,
    };
    let loaded = log
        .load()
        .map_err(|e| fail("cannot read the database", &e))?;
    Ok(Opened { loaded, log })
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
        Ok(())
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
        if to_write.is_empty() {
            continue;
        }
        match log.commit(&to_write) {
            Ok(()) => {
                for batch in &to_write {
                    report(Input::Persisted { batch: batch.batch });
                }
            }
            Err(error) => {
                let kind = match error.sqlite_error_code() {
                    Some(ErrorCode::DiskFull) => StoreErrorKind::Full,
                    _ => StoreErrorKind::Failed,
                };
                let message = format!("{}: {error}", log.path.display());
                warn!(%message, ?kind, batches = to_write.len(), "could not store channel events");
                failed_generation = to_write.iter().map(|b| b.generation).max();
                for batch in &to_write {
                    report(Input::PersistFailed {
                        batch: batch.batch,
                        error: StoreError {
                            kind,
                            message: message.clone(),
                        },
                    });
                }
            }
        }
    }
}

/// The path of the database in a data dir.
pub fn database_path(dir: &Path) -> PathBuf {
    dir.join(DATABASE_FILE)
}
