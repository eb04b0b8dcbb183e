//! 6. Crash test.
//!
//! A child process appends committed groups ("batches") as fast as it can and prints each
//! batch id on stdout right after its commit returned (= after the ack point). The parent
//! SIGKILLs it after about a second, reopens the database and checks:
//!
//! - the store's own integrity check passes;
//! - every batch the child printed is there: the last committed batch is >= the last printed
//!   one, and at most one batch (committed, killed before printing) is beyond it;
//! - the content is exactly right: the batches are deterministic, so the parent replays them
//!   and compares every channel's latest offset (no holes: all acked events were appended) and
//!   every retained entry (offset, frame) with what it must be after trimming to N=1000.
//!
//! Rounds 2..5 reopen the same database, so the child also recovers and continues after a kill.

use crate::model::{ChannelState, Retention, Rng, Sequencer, channel_names, make_frame, now_millis};
use crate::stats::ms;
use crate::store::StoreKind;
use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const CHANNELS: usize = 7;
/// The count limit applies as in production; the TTL never fires, so the replay is exact.
const RETENTION: Retention = Retention { max_entries: 1000, ttl_millis: u64::MAX };

/// The events of batch `b`: 1..=16 events on random channels. Deterministic in `b`.
fn batch_events(b: u64) -> Vec<(usize, String)> {
    let mut rng = Rng::new(b ^ 0x00C0_FFEE);
    let n = rng.range(1, 17);
    (0..n)
        .map(|k| {
            let ch = rng.range(0, CHANNELS as u64) as usize;
            let inner = make_frame(&mut rng, &format!("room-{ch:02}"), k);
            (ch, format!(r#"{{"b":{b},"k":{k},"e":{inner}}}"#))
        })
        .collect()
}

/// The batch id a frame belongs to.
fn frame_batch(frame: &str) -> Option<u64> {
    let rest = frame.strip_prefix(r#"{"b":"#)?;
    rest[..rest.find(',')?].parse().ok()
}

/// The last batch committed in the database: the newest entry of every channel names one.
fn last_committed(states: &[ChannelState]) -> Option<u64> {
    states.iter().filter_map(|s| s.entries.last()).filter_map(|e| frame_batch(&e.frame)).max()
}

/// Child process body: append batches forever, printing each id once committed.
pub fn child(store: StoreKind, dir: &Path) -> crate::model::Result<()> {
    let mut log = store.open(dir)?;
    let states = log.load_all(RETENTION.max_entries)?;
    let mut seq = Sequencer::from_loaded(&states);
    let mut next = last_committed(&states).map_or(0, |b| b + 1);
    let names = channel_names(CHANNELS);
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    loop {
        let now = now_millis();
        let incoming = batch_events(next).into_iter().map(|(ch, f)| (names[ch].clone(), f));
        let (recs, heads) = seq.sequence(incoming, now);
        log.append_group(&recs, &heads, &RETENTION, now)?;
        writeln!(out, "{next}")?;
        out.flush()?;
        next += 1;
    }
}

/// Replay batches `0..=last` and compare with what was loaded. Returns entries compared.
fn verify_content(states: &[ChannelState], last: Option<u64>) -> Result<usize, String> {
    let n = RETENTION.max_entries as usize;
    let mut expected: Vec<(u64, VecDeque<String>)> = vec![(0, VecDeque::new()); CHANNELS];
    if let Some(last) = last {
        for b in 0..=last {
            for (ch, frame) in batch_events(b) {
                let (latest, tail) = &mut expected[ch];
                *latest += 1;
                tail.push_back(frame);
                if tail.len() > n {
                    tail.pop_front();
                }
            }
        }
    }
    let mut compared = 0;
    for (ch, (latest, tail)) in expected.iter().enumerate() {
        let name = format!("room-{ch:02}");
        let state = states.iter().find(|s| s.channel == name);
        let Some(state) = state else {
            if *latest == 0 {
                continue;
            }
            return Err(format!("{name}: missing, expected latest={latest}"));
        };
        if state.latest != *latest {
            return Err(format!("{name}: latest={} expected {latest}", state.latest));
        }
        if state.epoch.is_empty() {
            return Err(format!("{name}: empty epoch"));
        }
        if state.entries.len() != tail.len() {
            return Err(format!("{name}: {} entries retained, expected {}", state.entries.len(), tail.len()));
        }
        let first = latest - tail.len() as u64 + 1;
        for (i, (e, want)) in state.entries.iter().zip(tail).enumerate() {
            if e.offset != first + i as u64 || &e.frame != want {
                return Err(format!("{name}: entry at offset {} differs from the replay", e.offset));
            }
            compared += 1;
        }
    }
    Ok(compared)
}

/// Leave the store in `dir` as after a crash: run a crash child against it, wait until it has
/// committed a few batches, SIGKILL it. Used to time reopening after an unclean shutdown.
pub fn kill_writer_mid_flight(store: StoreKind, dir: &Path) -> crate::model::Result<()> {
    let mut child = Command::new(std::env::current_exe()?)
        .args(["crash-child", "--store", store.name(), "--dir"])
        .arg(dir)
        .stdout(Stdio::piped())
        .spawn()?;
    let mut lines = BufReader::new(child.stdout.take().expect("piped")).lines();
    for _ in 0..10 {
        if lines.next().is_none() {
            return Err("crash child stopped early".into());
        }
    }
    child.kill()?;
    child.wait()?;
    Ok(())
}

pub fn crash_test(cfg: &crate::bench::Config) -> crate::model::Result<()> {
    let rounds = 5;
    println!(
        "\n## 6. Crash test: child commits batches (1-16 events, 7 channels, N=1000) as fast as it \
         can, printing each id after commit; SIGKILL after ~1 s; reopen and verify. {rounds} rounds \
         per store on the same database"
    );
    println!(
        "| store | round | batches acked (this round) | last acked | last in db | acked but lost | \
         committed not acked | entries verified | integrity | reopen ms | integrity check ms |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    let exe = std::env::current_exe()?;
    for &store in &cfg.stores {
        let dir = cfg.fresh_dir("crash", store)?;
        let mut last_acked: Option<u64> = None;
        for round in 1..=rounds {
            let mut child = Command::new(&exe)
                .args(["crash-child", "--store", store.name(), "--dir"])
                .arg(&dir)
                .stdout(Stdio::piped())
                .spawn()?;
            let stdout = child.stdout.take().expect("piped");
            let reader = std::thread::spawn(move || -> Vec<u64> {
                BufReader::new(stdout).lines().map_while(|l| l.ok()).filter_map(|l| l.parse().ok()).collect()
            });
            // Vary the moment of the kill a little between rounds.
            std::thread::sleep(Duration::from_millis(800 + 100 * round as u64));
            if let Some(status) = child.try_wait()? {
                return Err(format!("{}: child exited by itself: {status}", store.name()).into());
            }
            child.kill()?; // SIGKILL on Unix
            let status = child.wait()?;
            let printed = reader.join().expect("reader thread");
            if status.signal() != Some(9) {
                return Err(format!("child was not killed by SIGKILL: {status}").into());
            }
            if let Some(&l) = printed.last() {
                last_acked = Some(l);
            }

            // Reopen (this is where redb repairs after an unclean shutdown, and SQLite
            // recovers the WAL), then check.
            let t = Instant::now();
            let mut log = store.open(&dir)?;
            let reopen = ms(t.elapsed());
            let t = Instant::now();
            let integrity = log.check_integrity()?;
            let check_ms = ms(t.elapsed());
            let states = log.load_all(RETENTION.max_entries)?;
            drop(log);
            let in_db = last_committed(&states);
            let lost = match (last_acked, in_db) {
                (Some(a), Some(c)) if c < a => a - c,
                (Some(a), None) => a + 1,
                _ => 0,
            };
            let extra = match (last_acked, in_db) {
                (Some(a), Some(c)) if c > a => c - a,
                (None, Some(c)) => c + 1,
                _ => 0,
            };
            let verified = match verify_content(&states, in_db) {
                Ok(n) => n.to_string(),
                Err(e) => format!("MISMATCH: {e}"),
            };
            let show = |o: Option<u64>| o.map_or("-".to_string(), |v| v.to_string());
            println!(
                "| {} | {round} | {} | {} | {} | {lost} | {extra} | {verified} | {} | {reopen:.1} | {check_ms:.1} |",
                store.name(),
                printed.len(),
                show(last_acked),
                show(in_db),
                if integrity { "ok" } else { "FAILED" },
            );
            // The child of the next round continues after what is in the database, so the
            // "acked" baseline moves to it (a committed-but-unprinted batch is not re-sent).
            if in_db > last_acked {
                last_acked = in_db;
            }
        }
    }
    Ok(())
}
