//! The measured sections: fsync baseline, commit latency, group commit under concurrent
//! publishers, start-up load, range reads, and file size over time.

use crate::model::{FramePool, Retention, Rng, Sequencer, channel_names, now_millis};
use crate::stats::{Metric, Samples, bytes, ms};
use crate::store::{EventLog, StoreKind, file_len};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

/// Settings shared by all sections.
pub struct Config {
    pub quick: bool,
    /// Where databases are created (must be on the disk being evaluated).
    pub dir: PathBuf,
    pub stores: Vec<StoreKind>,
    /// Repetitions of each measurement; tables show "best / median" over them.
    pub runs: usize,
}

impl Config {
    /// Duration of one timed run of a throughput measurement.
    fn run_time(&self) -> Duration {
        Duration::from_secs_f64(if self.quick { 0.5 } else { 3.0 })
    }

    /// A fresh, empty directory for one store in one section.
    pub fn fresh_dir(&self, section: &str, store: StoreKind) -> std::io::Result<PathBuf> {
        let d = self.dir.join(format!("{section}-{}", store.name()));
        if d.exists() {
            std::fs::remove_dir_all(&d)?;
        }
        std::fs::create_dir_all(&d)?;
        Ok(d)
    }
}

type Res = crate::model::Result<()>;

/// Append `per_channel` events to every channel, in big groups (used to pre-fill).
fn fill(log: &mut dyn EventLog, seq: &mut Sequencer, channels: &[Arc<str>], per_channel: usize) -> Res {
    let mut pool = FramePool::new(7, 256);
    let retention = Retention::default();
    let mut incoming = Vec::new();
    for _ in 0..per_channel {
        for c in channels {
            incoming.push((c.clone(), pool.next()));
        }
        if incoming.len() >= 500 {
            let now = now_millis();
            let (recs, heads) = seq.sequence(incoming.drain(..), now);
            log.append_group(&recs, &heads, &retention, now)?;
        }
    }
    let now = now_millis();
    let (recs, heads) = seq.sequence(incoming.drain(..), now);
    log.append_group(&recs, &heads, &retention, now)
}

// ---------------------------------------------------------------------------------------------
// 0. fsync baseline

/// Raw cost of making 4 KiB durable on this disk, to put the commit latencies in context.
pub fn fsync_baseline(cfg: &Config) -> Res {
    let n = if cfg.quick { 50 } else { 200 };
    let path = cfg.dir.join("fsync-probe.bin");
    let block = vec![0x5au8; 4096];
    println!("\n## 0. Disk baseline: 4 KiB write + sync, {n} iterations ({})", cfg.dir.display());
    println!("| pattern | p50 ms | p99 ms | max ms |\n|---|---|---|---|");
    for (name, append, data_only) in [
        ("overwrite in place + fdatasync", false, true),
        ("overwrite in place + fsync", false, false),
        ("append (file grows) + fsync", true, false),
    ] {
        let _ = std::fs::remove_file(&path);
        let f = std::fs::OpenOptions::new().create(true).truncate(true).read(true).write(true).open(&path)?;
        if !append {
            // Preallocate 1 MiB and sync it, so the loop only rewrites existing blocks.
            f.write_all_at(&vec![0u8; 1 << 20], 0)?;
            f.sync_all()?;
        }
        let mut rng = Rng::new(1);
        let mut s = Samples::with_capacity(n);
        for i in 0..n as u64 {
            let off = if append { i * 4096 } else { rng.range(0, 256) * 4096 };
            let t = Instant::now();
            f.write_all_at(&block, off)?;
            if data_only { f.sync_data()? } else { f.sync_all()? }
            s.push(t.elapsed());
        }
        println!("| {name} | {:.2} | {:.2} | {:.2} |", s.pct_ms(50.0), s.pct_ms(99.0), s.max_ms());
    }
    let _ = std::fs::remove_file(&path);
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// 1. Commit latency vs group size, one thread, steady-state trimming

pub fn commit_latency(cfg: &Config) -> Res {
    let groups = [1usize, 16, 64, 256];
    println!(
        "\n## 1. Commit latency by group size (7 channels pre-filled to 1000, trim N=1000 + TTL probe, \
         {:.1} s per run, cells = best / median of {} runs)",
        cfg.run_time().as_secs_f64(),
        cfg.runs
    );
    println!("| store | events/commit | events/s | commits/s | p50 ms | p99 ms | max ms |");
    println!("|---|---|---|---|---|---|---|");
    let channels = channel_names(7);
    let retention = Retention::default();
    for &store in &cfg.stores {
        let dir = cfg.fresh_dir("commit", store)?;
        let mut log = store.open(&dir)?;
        let mut seq = Sequencer::default();
        fill(log.as_mut(), &mut seq, &channels, 1000)?;
        let mut pool = FramePool::new(11, 512);
        let mut rng = Rng::new(3);
        for &g in &groups {
            let (mut evs, mut cps, mut p50, mut p99, mut max) =
                (Metric::higher(), Metric::higher(), Metric::lower(), Metric::lower(), Metric::lower());
            for _ in 0..cfg.runs {
                let mut lat = Samples::default();
                let start = Instant::now();
                let mut events = 0usize;
                while start.elapsed() < cfg.run_time() {
                    let now = now_millis();
                    let incoming =
                        (0..g).map(|_| (channels[rng.range(0, 7) as usize].clone(), pool.next()));
                    let (recs, heads) = seq.sequence(incoming, now);
                    let t = Instant::now();
                    log.append_group(&recs, &heads, &retention, now)?;
                    lat.push(t.elapsed());
                    events += g;
                }
                let secs = start.elapsed().as_secs_f64();
                evs.add(events as f64 / secs);
                cps.add(lat.len() as f64 / secs);
                p50.add(lat.pct_ms(50.0));
                p99.add(lat.pct_ms(99.0));
                max.add(lat.max_ms());
            }
            println!(
                "| {} | {g} | {} | {} | {} | {} | {} |",
                store.name(),
                evs.show(0),
                cps.show(0),
                p50.show(2),
                p99.show(2),
                max.show(2)
            );
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// 2. Group commit with concurrent publishers

/// A publish request: events for the writer, and where to send the ack.
struct Request {
    events: Vec<(Arc<str>, String)>,
    ack: mpsc::Sender<()>,
}

struct PublishRun {
    acked_per_s: f64,
    latency: Samples,
    commits: usize,
    events: usize,
}

/// One writer thread (owns the store) and `publishers` threads that each send a request of
/// `per_request` events and wait for its ack, in a loop, for `dur`.
fn publish_run(
    log: &mut dyn EventLog,
    seq: &mut Sequencer,
    channels: &[Arc<str>],
    publishers: usize,
    per_request: usize,
    dur: Duration,
) -> crate::model::Result<PublishRun> {
    let retention = Retention::default();
    let (tx, rx) = mpsc::channel::<Request>();
    let start = Instant::now();
    std::thread::scope(|s| {
        // The writer: take whatever is queued, commit it in ONE transaction, ack everything.
        let writer = s.spawn(move || -> crate::model::Result<(usize, usize)> {
            let (mut commits, mut events) = (0, 0);
            while let Ok(first) = rx.recv() {
                let mut batch = vec![first];
                batch.extend(rx.try_iter());
                let now = now_millis();
                let (recs, heads) =
                    seq.sequence(batch.iter_mut().flat_map(|r| r.events.drain(..)), now);
                log.append_group(&recs, &heads, &retention, now)?;
                for r in &batch {
                    let _ = r.ack.send(());
                }
                commits += 1;
                events += recs.len();
            }
            Ok((commits, events))
        });
        // The publishers.
        let handles: Vec<_> = (0..publishers)
            .map(|p| {
                let tx = tx.clone();
                s.spawn(move || {
                    let mut pool = FramePool::new(100 + p as u64, 64);
                    let mut rng = Rng::new(p as u64);
                    let (ack_tx, ack_rx) = mpsc::channel();
                    let mut lat = Samples::default();
                    let mut acked = 0usize;
                    while start.elapsed() < dur {
                        let events = (0..per_request)
                            .map(|_| (channels[rng.range(0, channels.len() as u64) as usize].clone(), pool.next()))
                            .collect();
                        let t = Instant::now();
                        tx.send(Request { events, ack: ack_tx.clone() }).expect("writer gone");
                        ack_rx.recv().expect("writer died");
                        lat.push(t.elapsed());
                        acked += per_request;
                    }
                    (lat, acked)
                })
            })
            .collect();
        drop(tx); // the writer stops once every publisher is done
        let mut latency = Samples::default();
        let mut acked = 0;
        for h in handles {
            let (l, a) = h.join().expect("publisher panicked");
            latency.extend(l);
            acked += a;
        }
        let elapsed = start.elapsed().as_secs_f64();
        let (commits, events) = writer.join().expect("writer panicked")?;
        Ok(PublishRun { acked_per_s: acked as f64 / elapsed, latency, commits, events })
    })
}

pub fn group_commit(cfg: &Config) -> Res {
    let publishers = 16;
    println!(
        "\n## 2. Group commit: {publishers} publisher threads, each: send request -> wait ack -> repeat \
         (7 channels, trim active, {:.1} s per run, best / median of {} runs)",
        cfg.run_time().as_secs_f64(),
        cfg.runs
    );
    println!("| store | events/request | acked events/s | publish->ack p50 ms | p99 ms | avg events/commit |");
    println!("|---|---|---|---|---|---|");
    let channels = channel_names(7);
    for &store in &cfg.stores {
        let dir = cfg.fresh_dir("publish", store)?;
        let mut log = store.open(&dir)?;
        let mut seq = Sequencer::default();
        fill(log.as_mut(), &mut seq, &channels, 1000)?;
        for per_request in [1usize, 10] {
            let (mut evs, mut p50, mut p99, mut grp) =
                (Metric::higher(), Metric::lower(), Metric::lower(), Metric::higher());
            for _ in 0..cfg.runs {
                let mut r = publish_run(log.as_mut(), &mut seq, &channels, publishers, per_request, cfg.run_time())?;
                evs.add(r.acked_per_s);
                p50.add(r.latency.pct_ms(50.0));
                p99.add(r.latency.pct_ms(99.0));
                grp.add(r.events as f64 / r.commits.max(1) as f64);
            }
            println!(
                "| {} | {per_request} | {} | {} | {} | {} |",
                store.name(),
                evs.show(0),
                p50.show(2),
                p99.show(2),
                grp.show(1)
            );
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// 3 + 4. Start-up load and range reads

/// Drop this file's pages from the OS page cache (GNU dd: `iflag=nocache count=0`), so the
/// next read comes from disk. Only our own files are evicted; nothing else on the machine is.
fn evict_from_page_cache(p: &Path) -> bool {
    if !p.exists() {
        return true;
    }
    std::process::Command::new("dd")
        .arg(format!("if={}", p.display()))
        .args(["iflag=nocache", "count=0", "status=none"])
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

pub fn startup_and_reads(cfg: &Config) -> Res {
    let reps = if cfg.quick { 3 } else { 7 };
    println!(
        "\n## 3. Start-up: open + load every channel's epoch, latest and retained entries \
         (1000 per channel; each channel received 2000, so 1000 were trimmed). \
         Warm = file in page cache, cold = its pages evicted first. best / median of {reps}"
    );
    println!("| store | channels | entries loaded | warm ms | cold ms | after SIGKILL ms | file size |");
    println!("|---|---|---|---|---|---|---|");
    let mut notes = Vec::new();
    let mut range_dbs = Vec::new();
    for &store in &cfg.stores {
        for n_channels in [7usize, 50] {
            let dir = cfg.fresh_dir(&format!("startup{n_channels}"), store)?;
            {
                let mut log = store.open(&dir)?;
                let mut seq = Sequencer::default();
                fill(log.as_mut(), &mut seq, &channel_names(n_channels), 2000)?;
            } // closed here
            let files = store.files(&dir);
            let size: u64 = files.iter().map(|f| file_len(f)).sum();
            let (mut warm, mut cold, mut crashed) = (Metric::lower(), Metric::lower(), Metric::lower());
            let mut loaded = 0;
            // Alternate warm, cold and after-crash start-ups. "After SIGKILL": a writer was
            // killed while the database was open, so redb must repair (walk the file, unless
            // quick repair was on) and SQLite must recover its WAL; page cache warm.
            for rep in 0..3 * reps {
                let kind = rep % 3;
                if kind == 1 && !files.iter().all(|f| evict_from_page_cache(f)) {
                    continue;
                }
                if kind == 2 {
                    crate::crash::kill_writer_mid_flight(store, &dir)?;
                }
                let t = Instant::now();
                let log = store.open(&dir)?;
                let states = log.load_all(1000)?;
                let took = ms(t.elapsed());
                loaded = states.iter().map(|s| s.entries.len()).sum::<usize>();
                assert_eq!(loaded, n_channels * 1000, "start-up loaded the wrong number of entries");
                [&mut warm, &mut cold, &mut crashed][kind].add(took);
            }
            println!(
                "| {} | {n_channels} | {loaded} | {} | {} | {} | {} |",
                store.name(),
                warm.show(1),
                cold.show(1),
                crashed.show(1),
                bytes(size)
            );
            let mut log = store.open(&dir)?;
            let report = log.space_report()?;
            let t = Instant::now();
            log.compact()?;
            let took = ms(t.elapsed());
            drop(log);
            let compacted: u64 = files.iter().map(|f| file_len(f)).sum();
            notes.push(format!(
                "{} {n_channels} channels: {report}; compact/VACUUM took {took:.0} ms -> {}",
                store.name(),
                bytes(compacted)
            ));
            if n_channels == 50 {
                range_dbs.push((store, dir));
            }
        }
    }

    println!("\nSpace accounting of these files, and the effect of compaction (run after the table):");
    for n in notes {
        println!("- {n}");
    }

    let iters = if cfg.quick { 50 } else { 300 };
    println!(
        "\n## 4. Recovery read: entries of one random channel with offset > X, in order \
         (50-channel database, warm cache, {iters} reads per run, best / median of {} runs)",
        cfg.runs
    );
    println!("| store | entries read | p50 ms | p99 ms |");
    println!("|---|---|---|---|");
    for (store, dir) in range_dbs {
        let log = store.open(&dir)?;
        let heads: Vec<(String, u64)> =
            log.load_all(1000)?.into_iter().map(|s| (s.channel, s.latest)).collect();
        for count in [1000u64, 100] {
            let (mut p50, mut p99) = (Metric::lower(), Metric::lower());
            let mut rng = Rng::new(9);
            for _ in 0..cfg.runs {
                let mut lat = Samples::with_capacity(iters);
                for _ in 0..iters {
                    let (ch, latest) = &heads[rng.range(0, heads.len() as u64) as usize];
                    let t = Instant::now();
                    let got = log.read_after(ch, latest - count, 1000)?;
                    lat.push(t.elapsed());
                    assert_eq!(got.len() as u64, count);
                    assert_eq!(got[0].offset, latest - count + 1);
                }
                p50.add(lat.pct_ms(50.0));
                p99.add(lat.pct_ms(99.0));
            }
            println!("| {} | {count} | {} | {} |", store.name(), p50.show(3), p99.show(3));
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// 5. File size over time

pub fn file_size(cfg: &Config) -> Res {
    let checkpoints: &[usize] = if cfg.quick {
        &[20_000, 50_000, 100_000]
    } else {
        &[50_000, 100_000, 200_000, 400_000, 700_000, 1_000_000]
    };
    let group = 32;
    println!(
        "\n## 5. Data size: events through 7 channels, N=1000 (7000 retained, ~{} KiB of frames), \
         groups of {group}, one durable commit each",
        7000 * 275 / 1024
    );
    println!("| store | events written | main file | WAL file | space accounting |");
    println!("|---|---|---|---|---|");
    let channels = channel_names(7);
    let retention = Retention::default();
    for &store in &cfg.stores {
        let dir = cfg.fresh_dir("size", store)?;
        let files = store.files(&dir);
        let mut log = store.open(&dir)?;
        let mut seq = Sequencer::default();
        let mut pool = FramePool::new(5, 512);
        let mut rng = Rng::new(5);
        let mut written = 0usize;
        for &target in checkpoints {
            while written < target {
                let now = now_millis();
                let incoming =
                    (0..group).map(|_| (channels[rng.range(0, 7) as usize].clone(), pool.next()));
                let (recs, heads) = seq.sequence(incoming, now);
                log.append_group(&recs, &heads, &retention, now)?;
                written += group;
            }
            println!(
                "| {} | {written} | {} | {} | {} |",
                store.name(),
                bytes(file_len(&files[0])),
                files.get(1).map(|f| bytes(file_len(f))).unwrap_or_else(|| "-".into()),
                log.space_report()?
            );
        }
        drop(log);
        println!(
            "| {} | (after close) | {} | {} | |",
            store.name(),
            bytes(file_len(&files[0])),
            files.get(1).map(|f| bytes(file_len(f))).unwrap_or_else(|| "-".into()),
        );
    }
    Ok(())
}
