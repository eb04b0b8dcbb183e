//! storage-choice: measure redb and SQLite (rusqlite, bundled) as livebridge's durable
//! per-channel event log. See README.md.
//!
//! Usage:
//!   storage-choice [--quick] [--dir DIR] [--stores a,b,..] [--only s1,s2,..] [--runs N] [--wait-idle]
//! Sections: fsync, commit, publish, startup (includes range reads), size, crash.
//! Stores:   redb, redb-qr (redb with quick repair), sqlite-full, sqlite-normal.

mod bench;
mod crash;
mod machine;
mod model;
mod stats;
mod store;

use bench::Config;
use std::path::PathBuf;
use store::StoreKind;

const SECTIONS: [&str; 6] = ["fsync", "commit", "publish", "startup", "size", "crash"];

fn usage() -> ! {
    eprintln!(
        "usage: storage-choice [--quick] [--dir DIR] [--stores {}] [--only {}] [--runs N] [--wait-idle]",
        StoreKind::ALL.map(|k| k.name()).join(","),
        SECTIONS.join(",")
    );
    std::process::exit(2)
}

fn main() -> model::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();

    // Internal: the process the crash test kills.
    if args.first().map(String::as_str) == Some("crash-child") {
        let store = args.iter().position(|a| a == "--store").and_then(|i| args.get(i + 1));
        let dir = args.iter().position(|a| a == "--dir").and_then(|i| args.get(i + 1));
        let (Some(store), Some(dir)) = (store.and_then(|s| StoreKind::parse(s)), dir) else { usage() };
        return crash::child(store, &PathBuf::from(dir));
    }

    let mut cfg = Config {
        quick: false,
        dir: PathBuf::from("data"),
        stores: StoreKind::ALL.to_vec(),
        runs: 3,
    };
    let mut wait_idle = false;
    let mut only: Vec<String> = SECTIONS.iter().map(|s| s.to_string()).collect();
    let mut it = args.into_iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--quick" => cfg.quick = true,
            "--wait-idle" => wait_idle = true,
            "--dir" => cfg.dir = it.next().unwrap_or_else(|| usage()).into(),
            "--runs" => cfg.runs = it.next().and_then(|n| n.parse().ok()).unwrap_or_else(|| usage()),
            "--stores" => {
                let list = it.next().unwrap_or_else(|| usage());
                cfg.stores = list.split(',').map(|s| StoreKind::parse(s).unwrap_or_else(|| usage())).collect();
            }
            "--only" => {
                only = it.next().unwrap_or_else(|| usage()).split(',').map(str::to_string).collect();
                if !only.iter().all(|s| SECTIONS.contains(&s.as_str())) {
                    usage()
                }
            }
            _ => usage(),
        }
    }
    std::fs::create_dir_all(&cfg.dir)?;

    println!("# storage-choice results{}", if cfg.quick { " (--quick)" } else { "" });
    println!(
        "data dir: {} | stores: {} | SQLite library {} | cells \"a / b\" = best / median over runs",
        std::fs::canonicalize(&cfg.dir)?.display(),
        cfg.stores.iter().map(|k| k.name()).collect::<Vec<_>>().join(", "),
        rusqlite::version(),
    );

    // Each section runs alone; the machine's load around it is printed so that noise from other
    // work on a shared machine is visible. With --wait-idle, a section first waits (up to 10 min)
    // until the other processes leave the CPUs mostly idle.
    for section in SECTIONS.iter().filter(|s| only.iter().any(|o| o == *s)) {
        if wait_idle {
            machine::wait_until_idle(std::time::Duration::from_secs(600));
        }
        let before = machine::load_note();
        match *section {
            "fsync" => bench::fsync_baseline(&cfg)?,
            "commit" => bench::commit_latency(&cfg)?,
            "publish" => bench::group_commit(&cfg)?,
            "startup" => bench::startup_and_reads(&cfg)?,
            "size" => bench::file_size(&cfg)?,
            "crash" => crash::crash_test(&cfg)?,
            _ => unreachable!(),
        }
        println!("\n_machine load: before [{before}], after [{}]_", machine::load_note());
    }
    Ok(())
}
