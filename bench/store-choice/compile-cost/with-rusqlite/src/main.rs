//! Minimal use of rusqlite (bundled SQLite): create, write one row in a transaction, read it.
use rusqlite::{Connection, params};

fn main() -> rusqlite::Result<()> {
    let mut conn = Connection::open(std::env::temp_dir().join("cc-rusqlite.sqlite"))?;
    conn.execute_batch(
        "PRAGMA journal_mode=WAL; CREATE TABLE IF NOT EXISTS events(channel TEXT, seq INTEGER, frame TEXT, PRIMARY KEY(channel, seq)) WITHOUT ROWID;",
    )?;
    let tx = conn.transaction()?;
    tx.execute("INSERT OR REPLACE INTO events VALUES (?1, ?2, ?3)", params!["room-00", 1, "hello"])?;
    tx.commit()?;
    let frame: String = conn.query_row("SELECT frame FROM events WHERE channel='room-00' AND seq=1", [], |r| r.get(0))?;
    println!("{frame}");
    Ok(())
}
