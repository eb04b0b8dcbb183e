//! The narrow interface livebridge needs from a durable event log, and the two candidates.

pub mod redb_log;
pub mod sqlite_log;

use crate::model::{ChannelHead, ChannelState, Entry, Record, Result, Retention};
use std::path::{Path, PathBuf};

pub trait EventLog: Send {
    /// Write a group of sequenced records and the touched channel heads, trim the touched
    /// channels, and commit durably: all in ONE transaction. When this returns `Ok`, the
    /// group is on disk (subject to the store's durability setting) and may be acknowledged.
    fn append_group(
        &mut self,
        records: &[Record],
        heads: &[ChannelHead],
        retention: &Retention,
        now_millis: u64,
    ) -> Result<()>;

    /// Start-up: every channel's epoch, latest offset and retained entries (at most
    /// `max_entries`, in offset order).
    fn load_all(&self, max_entries: u64) -> Result<Vec<ChannelState>>;

    /// Recovery read: entries of `channel` with offset > `after`, in order, at most `limit`.
    fn read_after(&self, channel: &str, after: u64, limit: usize) -> Result<Vec<Entry>>;

    /// Full structural check of the file (used after the crash test).
    fn check_integrity(&mut self) -> Result<bool>;

    /// Give free space inside the file back (redb `compact()`, SQLite `VACUUM`).
    fn compact(&mut self) -> Result<()>;

    /// Store-specific space accounting, for the file-size section.
    fn space_report(&mut self) -> Result<String>;
}

/// The store variants compared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreKind {
    /// redb, every commit with `Durability::Immediate` (the default).
    Redb,
    /// redb with "quick repair" on each commit (2-phase commit + allocator state saved), which
    /// makes reopening after a crash fast at the cost of slower commits.
    RedbQuickRepair,
    /// SQLite, WAL mode, `synchronous=FULL`: every commit fsyncs the WAL.
    SqliteFull,
    /// SQLite, WAL mode, `synchronous=NORMAL`: commits do not fsync; the WAL is synced at
    /// checkpoints. Survives a process crash, but NOT a power loss / kernel crash (the last
    /// transactions can be lost; the database stays consistent).
    SqliteNormal,
}

impl StoreKind {
    pub const ALL: [StoreKind; 4] = [
        StoreKind::Redb,
        StoreKind::RedbQuickRepair,
        StoreKind::SqliteFull,
        StoreKind::SqliteNormal,
    ];

    pub fn name(self) -> &'static str {
        match self {
            StoreKind::Redb => "redb",
            StoreKind::RedbQuickRepair => "redb-qr",
            StoreKind::SqliteFull => "sqlite-full",
            StoreKind::SqliteNormal => "sqlite-normal",
        }
    }

    pub fn parse(s: &str) -> Option<StoreKind> {
        StoreKind::ALL.into_iter().find(|k| k.name() == s)
    }

    /// The main database file for a store kept in `dir`.
    pub fn db_path(self, dir: &Path) -> PathBuf {
        match self {
            StoreKind::Redb | StoreKind::RedbQuickRepair => dir.join("events.redb"),
            _ => dir.join("events.sqlite"),
        }
    }

    /// Every file the store keeps (for size accounting): SQLite adds `-wal` and `-shm`.
    pub fn files(self, dir: &Path) -> Vec<PathBuf> {
        let db = self.db_path(dir);
        match self {
            StoreKind::Redb | StoreKind::RedbQuickRepair => vec![db],
            _ => {
                let s = db.to_string_lossy().to_string();
                vec![db, PathBuf::from(format!("{s}-wal")), PathBuf::from(format!("{s}-shm"))]
            }
        }
    }

    /// Open (creating if missing) the store kept in `dir`.
    pub fn open(self, dir: &Path) -> Result<Box<dyn EventLog>> {
        std::fs::create_dir_all(dir)?;
        let path = self.db_path(dir);
        Ok(match self {
            StoreKind::Redb => Box::new(redb_log::RedbLog::open(&path, false)?),
            StoreKind::RedbQuickRepair => Box::new(redb_log::RedbLog::open(&path, true)?),
            StoreKind::SqliteFull => Box::new(sqlite_log::SqliteLog::open(&path, true)?),
            StoreKind::SqliteNormal => Box::new(sqlite_log::SqliteLog::open(&path, false)?),
        })
    }
}

/// Size of a file, 0 if missing.
pub fn file_len(p: &Path) -> u64 {
    std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)
}
