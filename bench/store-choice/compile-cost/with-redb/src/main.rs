//! Minimal use of redb: create, write one entry in a transaction, read it back.
use redb::{Database, ReadableDatabase, TableDefinition};

const EVENTS: TableDefinition<(&str, u64), (u64, &str)> = TableDefinition::new("events");

fn main() -> Result<(), redb::Error> {
    let db = Database::create(std::env::temp_dir().join("cc-redb.redb"))?;
    let txn = db.begin_write()?;
    txn.open_table(EVENTS)?.insert(("room-00", 1), (0, "hello"))?;
    txn.commit()?;
    let read = db.begin_read()?;
    let t = read.open_table(EVENTS)?;
    println!("{}", t.get(("room-00", 1))?.unwrap().value().1);
    Ok(())
}
