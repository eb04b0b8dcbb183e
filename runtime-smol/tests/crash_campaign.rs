//! A crash campaign for durable history (`--data-dir`), on the real binary (issue 27): the
//! server is `kill -9`ed at random moments while eight publishers publish, and what was
//! acknowledged is checked against what is stored; then the faults a desktop user meets: a full
//! store (`--data-max-size`), and a write-ahead log or database cut short or zeroed at its tail.
//!
//! Sizes (docs/reliability.md has the figures of longer runs):
//! - `CRASH_CAMPAIGN_KILLS` (default 100): how many times the server is killed.
//! - `CRASH_CAMPAIGN_SEED` (default: from the clock): the seed of the moments and of what is
//!   published; printed, so a failing run can be repeated.

mod support;

use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::{WAIT, join_within, output_within, wait_child};

/// Kills in a campaign unless `CRASH_CAMPAIGN_KILLS` says otherwise: enough to hit every
/// phase of a commit many times, small enough for CI (about a minute on two busy cores).
const DEFAULT_KILLS: u64 = 100;
/// Publishers publishing at once.
const PUBLISHERS: u64 = 8;
/// After each start, the server runs this long (at random in between) before it is killed.
const RUN_MIN_MS: u64 = 5;
const RUN_MAX_MS: u64 = 60;
/// The channels published on, with a catalogue event of each that carries the unique id in
/// `id_field` and the publisher in `by_field`.
const CHANNELS: [(&str, &str, &str, &str); 2] = [
    ("jobs", "job_started", "job_id", "photo_id"),
    ("photos", "photo_approved", "photo_id", "session_id"),
];
/// Keeps everything: nothing may be trimmed during the campaign, so that the final history
/// holds every event ever stored.
const SERVE: [&str; 6] = [
    "--history-size",
    "10000000",
    "--history-ttl",
    "24h",
    "--recovery-max",
    "1000",
];

fn setting(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(value) => value
            .parse()
            .unwrap_or_else(|_| panic!("{name}={value:?} is not a whole number")),
        Err(_) => default,
    }
}

/// xorshift64*: small and seeded, so that a run can be repeated.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    /// In `low..=high`.
    fn between(&mut self, low: u64, high: u64) -> u64 {
        low + self.next() % (high - low + 1)
    }
}

use support::{fresh_dir as data_dir, spawn_with_data_dir as spawn};

fn kill_9(child: &mut Child) {
    child.kill().expect("kill -9 livebridge");
    wait_child(child, "livebridge after kill -9", WAIT);
}

fn agent() -> ureq::Agent {
    support::agent(Duration::from_secs(10))
}

/// Status and JSON body; `None` when no whole answer came (refused, reset, cut short).
fn call(agent: &ureq::Agent, addr: &str, path: &str, body: Option<&Value>) -> Option<(u16, Value)> {
    let url = format!("http://{addr}{path}");
    let response = match body {
        Some(body) => agent.post(&url).send(body.to_string()),
        None => agent.get(&url).call(),
    };
    let mut response = response.ok()?;
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string().ok()?;
    Some((status, serde_json::from_str(&text).ok()?))
}

/// One channel's whole history, page by page (`since`, `limit` at most 1 000): its epoch,
/// latest offset and events; every event since offset 0 is still there.
fn full_history(agent: &ureq::Agent, addr: &str, channel: &str) -> (String, u64, Vec<Value>) {
    let (epoch, latest, complete, events) = history(agent, addr, channel);
    assert!(complete, "{channel}: nothing was trimmed");
    (epoch, latest, events)
}

/// One channel's retained history, page by page, and whether it reaches back to offset 1.
fn history(agent: &ureq::Agent, addr: &str, channel: &str) -> (String, u64, bool, Vec<Value>) {
    let mut complete = true;
    let mut events: Vec<Value> = Vec::new();
    let mut head = None;
    // Bounded: each page brings up to 1 000 events, and the loop ends on the first that
    // brings none; a history that keeps growing would be a bug, caught by the bound.
    for _ in 0..10_000 {
        let since = events.last().map_or(0, |e| e["offset"].as_u64().unwrap());
        let path = format!("/api/history/{channel}?since={since}&limit=1000");
        let (status, page) =
            call(agent, addr, &path, None).unwrap_or_else(|| panic!("no answer to GET {path}"));
        assert_eq!(status, 200, "GET {path}: {page}");
        if since == 0 {
            complete = page["complete"] == true;
        }
        let page_events = page["events"].as_array().unwrap().clone();
        head = Some((
            page["epoch"].as_str().unwrap().to_string(),
            page["offset"].as_u64().unwrap(),
        ));
        if page_events.is_empty() {
            break;
        }
        events.extend(page_events);
    }
    let (epoch, latest) = head.expect("at least one page");
    (epoch, latest, complete, events)
}

/// The event publisher `by` sends with unique id `id` on channel `CHANNELS[which]`.
fn event(which: usize, id: u64, by: u64) -> Value {
    let (_, kind, id_field, by_field) = CHANNELS[which];
    json!({"type": kind, id_field: id, by_field: by})
}

/// What a publisher saw: per channel, (offset, id) of each acknowledged event, and the ids
/// it sent with no answer (the server died under them), and those refused with an answer.
#[derive(Default)]
struct Seen {
    acknowledged: Vec<(usize, u64, u64)>,
    unanswered: Vec<u64>,
    refused: Vec<u64>,
}

fn publisher(
    by: u64,
    seed: u64,
    server: Arc<Mutex<Option<String>>>,
    stop: Arc<AtomicBool>,
) -> Seen {
    let agent = agent();
    let mut rng = Rng::new(seed);
    let mut seen = Seen::default();
    let mut next_id = by * 1_000_000_000;
    while !stop.load(Ordering::SeqCst) {
        let Some(addr) = server.lock().unwrap().clone() else {
            std::thread::sleep(Duration::from_millis(2));
            continue;
        };
        // One event, or a batch of two to five, on a channel picked at random per event.
        let count = if rng.between(0, 2) == 0 {
            rng.between(2, 5)
        } else {
            1
        };
        let sent: Vec<(usize, u64)> = (0..count)
            .map(|_| {
                next_id += 1;
                (rng.between(0, 1) as usize, next_id)
            })
            .collect();
        let events: Vec<Value> = sent.iter().map(|&(w, id)| event(w, id, by)).collect();
        let body = if count == 1 {
            events[0].clone()
        } else {
            Value::Array(events)
        };
        match call(&agent, &addr, "/api/events", Some(&body)) {
            Some((200, reply)) => {
                let results = reply["events"].as_array().expect("events in a 200");
                assert_eq!(results.len(), sent.len(), "{reply}");
                for (&(which, id), result) in sent.iter().zip(results) {
                    assert_eq!(result["channel"], CHANNELS[which].0, "{reply}");
                    let offset = result["offset"].as_u64().expect("offset");
                    seen.acknowledged.push((which, offset, id));
                }
            }
            Some((_, _)) => seen.refused.extend(sent.iter().map(|&(_, id)| id)),
            None => {
                seen.unanswered.extend(sent.iter().map(|&(_, id)| id));
                std::thread::sleep(Duration::from_millis(2));
            }
        }
    }
    seen
}

#[test]
fn kill_9_at_random_moments_loses_and_duplicates_no_acknowledged_event() {
    let kills = setting("CRASH_CAMPAIGN_KILLS", DEFAULT_KILLS);
    let seed = setting(
        "CRASH_CAMPAIGN_SEED",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64,
    );
    println!("crash campaign: {kills} kills, seed {seed} (CRASH_CAMPAIGN_SEED={seed} repeats it)");
    let started = Instant::now();
    let dir = data_dir("crash-campaign");
    let agent = agent();
    let mut rng = Rng::new(seed);
    let server: Arc<Mutex<Option<String>>> = Arc::new(Mutex::new(None));
    let stop = Arc::new(AtomicBool::new(false));
    let publishers: Vec<_> = (1..=PUBLISHERS)
        .map(|by| {
            let (server, stop, seed) = (Arc::clone(&server), Arc::clone(&stop), rng.next());
            std::thread::spawn(move || publisher(by, seed, server, stop))
        })
        .collect();
    // Each channel's epoch, once it holds events: it must never change.
    let mut epochs: BTreeMap<&str, String> = BTreeMap::new();
    for kill in 0..kills {
        let (mut child, addr) = spawn(&dir, &SERVE);
        for (channel, ..) in CHANNELS {
            let path = format!("/api/history/{channel}?limit=0");
            let (_, head) = call(&agent, &addr, &path, None)
                .unwrap_or_else(|| panic!("restart {kill}: no answer to GET {path}"));
            let epoch = head["epoch"].as_str().unwrap().to_string();
            if head["offset"].as_u64().unwrap() > 0 {
                let first = epochs.entry(channel).or_insert_with(|| epoch.clone());
                assert_eq!(
                    *first, epoch,
                    "restart {kill}: {channel} started a new epoch after a crash (seed {seed})"
                );
            }
        }
        *server.lock().unwrap() = Some(addr);
        std::thread::sleep(Duration::from_millis(rng.between(RUN_MIN_MS, RUN_MAX_MS)));
        kill_9(&mut child);
        *server.lock().unwrap() = None;
    }
    stop.store(true, Ordering::SeqCst);
    let seen: Vec<Seen> = publishers
        .into_iter()
        .map(|p| join_within(p, "a publisher", WAIT).expect("a publisher failed"))
        .collect();

    // The last restart: every channel's whole history against what was acknowledged.
    let (mut child, addr) = spawn(&dir, &SERVE);
    let unanswered: BTreeSet<u64> = seen.iter().flat_map(|s| s.unanswered.clone()).collect();
    let refused: BTreeSet<u64> = seen.iter().flat_map(|s| s.refused.clone()).collect();
    let (mut acknowledged, mut found, mut lost, mut duplicated, mut unanswered_present) =
        (0, 0, 0, 0, 0);
    let mut problems = Vec::new();
    for (which, (channel, kind, id_field, by_field)) in CHANNELS.iter().enumerate() {
        let (epoch, latest, events) = full_history(&agent, &addr, channel);
        if let Some(first) = epochs.get(channel) {
            assert_eq!(*first, epoch, "{channel}: a new epoch after the campaign");
        }
        let offsets: Vec<u64> = events
            .iter()
            .map(|e| e["offset"].as_u64().unwrap())
            .collect();
        assert_eq!(
            offsets,
            (1..=latest).collect::<Vec<_>>(),
            "{channel}: offsets 1..={latest}, contiguous (seed {seed})"
        );
        let mut by_offset: BTreeMap<u64, u64> = BTreeMap::new();
        let mut ids: BTreeMap<u64, u64> = BTreeMap::new();
        for e in &events {
            assert_eq!(
                e["epoch"],
                epoch.as_str(),
                "{channel}: an event of another epoch: {e}"
            );
            // Whole: the type and both fields as sent.
            assert_eq!(e["type"], *kind, "{channel}: {e}");
            let id = e[*id_field]
                .as_u64()
                .unwrap_or_else(|| panic!("{channel}: no id: {e}"));
            assert_eq!(
                e[*by_field],
                id / 1_000_000_000,
                "{channel}: not whole: {e}"
            );
            by_offset.insert(e["offset"].as_u64().unwrap(), id);
            *ids.entry(id).or_insert(0) += 1;
        }
        duplicated += ids.values().filter(|&&n| n > 1).count();
        let mut acked_ids = BTreeSet::new();
        for s in &seen {
            for &(w, offset, id) in &s.acknowledged {
                if w != which {
                    continue;
                }
                acknowledged += 1;
                acked_ids.insert(id);
                match by_offset.get(&offset) {
                    Some(&stored) if stored == id => found += 1,
                    Some(&stored) => {
                        lost += 1;
                        problems.push(format!(
                            "{channel}: offset {offset} acknowledged as id {id} holds id {stored}"
                        ));
                    }
                    None => {
                        lost += 1;
                        problems.push(format!(
                            "{channel}: offset {offset} (id {id}) acknowledged, not stored"
                        ));
                    }
                }
            }
        }
        for &id in ids.keys() {
            if acked_ids.contains(&id) {
            } else if unanswered.contains(&id) {
                unanswered_present += 1;
            } else if refused.contains(&id) {
                problems.push(format!("{channel}: id {id} was refused, yet stored"));
            } else {
                problems.push(format!("{channel}: id {id} was never sent, yet stored"));
            }
        }
    }
    child.kill().unwrap();
    wait_child(&mut child, "the last livebridge after kill -9", WAIT);
    println!(
        "crash campaign: {kills} kills in {:.1?}; {acknowledged} events acknowledged, {found} \
         found, {lost} lost, {duplicated} duplicated; {} sent without an answer, \
         {unanswered_present} of them stored; {} refused with an answer",
        started.elapsed(),
        unanswered.len(),
        refused.len()
    );
    assert!(
        problems.is_empty(),
        "seed {seed}: {} problems, the first: {:#?}",
        problems.len(),
        &problems[..problems.len().min(20)]
    );
    assert_eq!((lost, duplicated), (0, 0), "seed {seed}");
    assert!(
        acknowledged >= kills,
        "the publishers got only {acknowledged} events acknowledged in {kills} runs"
    );
}

/// The sizes of the files `--data-max-size` counts: the database and its write-ahead log.
fn counted_bytes(dir: &Path) -> u64 {
    ["livebridge.db", "livebridge.db-wal"]
        .iter()
        .map(|f| std::fs::metadata(dir.join(f)).map_or(0, |m| m.len()))
        .sum()
}

#[test]
fn a_full_store_answers_507_stays_within_data_max_size_and_loses_nothing() {
    const CAP: u64 = 200 * 1024;
    let dir = data_dir("campaign-full");
    let serve = [
        "--data-max-size",
        "200KiB",
        "--history-size",
        "100000",
        "--history-ttl",
        "24h",
    ];
    let (mut child, addr) = spawn(&dir, &serve);
    let agent = agent();
    let padding = "x".repeat(1_000);
    let mut acknowledged: Vec<u64> = Vec::new();
    let mut refusals = 0;
    let mut largest = 0;
    // Bounded: 200 KiB holds far fewer than 2 000 events of 1 KB.
    for id in 1..=2_000u64 {
        let event = json!({"type": "job_progress", "job_id": id, "stage": "s", "progress": 1,
                           "message": padding});
        let (status, reply) = call(&agent, &addr, "/api/events", Some(&event))
            .unwrap_or_else(|| panic!("no answer to publish {id}"));
        largest = largest.max(counted_bytes(&dir));
        match status {
            200 => {
                assert_eq!(refusals, 0, "a publish acknowledged after a 507: {reply}");
                acknowledged.push(id);
            }
            507 => {
                assert!(reply["error"].as_str().unwrap().contains("full"), "{reply}");
                refusals += 1;
                if refusals == 20 {
                    break;
                }
            }
            other => panic!("{other}: {reply}"),
        }
    }
    assert_eq!(refusals, 20, "the store never filled up");
    println!(
        "full store: {} acknowledged under a {CAP}-byte cap; the database and its log took at \
         most {largest} bytes",
        acknowledged.len()
    );
    assert!(
        largest <= CAP,
        "livebridge.db + livebridge.db-wal reached {largest} bytes, over --data-max-size {CAP}"
    );
    // Reads go on, and hold what was acknowledged.
    let (epoch, latest, events) = full_history(&agent, &addr, "jobs");
    let ids: Vec<u64> = events
        .iter()
        .map(|e| e["job_id"].as_u64().unwrap())
        .collect();
    assert_eq!(ids, acknowledged);
    assert_eq!(latest, acknowledged.len() as u64);
    kill_9(&mut child);
    {
        let db = rusqlite::Connection::open(dir.join("livebridge.db")).unwrap();
        let check: String = db
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap();
        assert_eq!(check, "ok");
    }
    let (mut child, addr) = spawn(&dir, &serve);
    let (after, _, events) = full_history(&agent, &addr, "jobs");
    assert_eq!(after, epoch, "the same epoch after a restart");
    let ids: Vec<u64> = events
        .iter()
        .map(|e| e["job_id"].as_u64().unwrap())
        .collect();
    assert_eq!(
        ids, acknowledged,
        "everything acknowledged is there after a restart"
    );
    kill_9(&mut child);
}

/// A data dir holding `count` acknowledged events on `jobs` (1 KB each, so that they take
/// many pages), left as a `kill -9` leaves it (`graceful`: false: the events are in the
/// write-ahead log) or as a clean stop does (`graceful`: true: in the database file). Its
/// epoch and acknowledged ids.
fn filled_data_dir(name: &str, count: u64, graceful: bool) -> (PathBuf, String, Vec<u64>) {
    let dir = data_dir(name);
    let (mut child, addr) = spawn(&dir, &SERVE);
    let agent = agent();
    let padding = "y".repeat(1_000);
    let mut acknowledged = Vec::new();
    for id in 1..=count {
        let event = json!({"type": "job_progress", "job_id": id, "stage": "s", "progress": 1,
                           "message": padding});
        let (status, reply) = call(&agent, &addr, "/api/events", Some(&event))
            .unwrap_or_else(|| panic!("no answer to publish {id}"));
        assert_eq!(status, 200, "{reply}");
        acknowledged.push(id);
    }
    let (epoch, ..) = full_history(&agent, &addr, "jobs");
    if graceful {
        let output = output_within(
            Command::new("kill").args(["-TERM", &child.id().to_string()]),
            "kill -TERM",
            WAIT,
        );
        assert!(output.status.success());
        let status = wait_child(&mut child, "livebridge stopping on SIGTERM", WAIT);
        assert!(status.success(), "{status}");
    } else {
        kill_9(&mut child);
    }
    (dir, epoch, acknowledged)
}

/// A copy of `from` (its files, not the lock's owner) at `to`.
fn copy_dir(from: &Path, to: &Path) {
    let _ = std::fs::remove_dir_all(to);
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

/// What a case does to a file of a data dir.
type Damage = fn(&Path);

/// Zeroes the last `bytes` of `file`.
fn zero_tail(file: &Path, bytes: u64) {
    use std::io::{Seek, SeekFrom, Write};
    let mut f = std::fs::OpenOptions::new().write(true).open(file).unwrap();
    let len = f.metadata().unwrap().len();
    let from = len.saturating_sub(bytes);
    f.seek(SeekFrom::Start(from)).unwrap();
    f.write_all(&vec![0u8; (len - from) as usize]).unwrap();
}

fn cut_tail(file: &Path, bytes: u64) {
    let f = std::fs::OpenOptions::new().write(true).open(file).unwrap();
    let len = f.metadata().unwrap().len();
    f.set_len(len.saturating_sub(bytes)).unwrap();
}

/// Starts the binary on a damaged data dir and tells what it did: refused (exit code 4,
/// naming `file`), or served; a served history is either whole under the old epoch or under
/// a new epoch — never shorter under the old one.
fn outcome(dir: &Path, file: &str, epoch: &str, acknowledged: &[u64]) -> String {
    let mut command = Command::new(env!("CARGO_BIN_EXE_livebridge"));
    command
        .args([
            "serve",
            "--bind",
            "127.0.0.1:0",
            "--log",
            "warn",
            "--data-dir",
        ])
        .arg(dir)
        .args(SERVE)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = command.spawn().expect("start livebridge");
    let (line, _) = support::first_line_within(&mut child, "livebridge starting", WAIT);
    if line.is_empty() {
        // It stopped without announcing an address: it must say why, naming the file.
        let status = wait_child(&mut child, "livebridge refusing a data dir", WAIT);
        let mut stderr = String::new();
        std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
        assert_eq!(status.code(), Some(4), "{stderr}");
        assert!(
            stderr.contains(&dir.join(file).display().to_string()),
            "the refusal names {file}: {stderr}"
        );
        return format!("refused (exit code 4): {}", stderr.trim());
    }
    let addr = line
        .trim()
        .strip_prefix("livebridge listening on http://")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_string();
    let (served_epoch, latest, complete, events) = history(&agent(), &addr, "jobs");
    kill_9(&mut child);
    let ids: Vec<u64> = events
        .iter()
        .map(|e| e["job_id"].as_u64().unwrap())
        .collect();
    let offsets: Vec<u64> = events
        .iter()
        .map(|e| e["offset"].as_u64().unwrap())
        .collect();
    let first = latest + 1 - offsets.len() as u64;
    assert_eq!(
        offsets,
        (first..=latest).collect::<Vec<_>>(),
        "contiguous offsets up to the latest"
    );
    assert!(
        latest <= acknowledged.len() as u64,
        "no offset past those acknowledged"
    );
    assert!(!events.is_empty(), "what is whole is kept");
    for e in &events {
        // Whole, and the event acknowledged at its offset.
        assert_eq!(e["epoch"], served_epoch.as_str(), "{e}");
        assert_eq!(
            e["message"].as_str().map(str::len),
            Some(1_000),
            "not whole: {e}"
        );
        let offset = e["offset"].as_u64().unwrap();
        assert_eq!(e["job_id"], acknowledged[offset as usize - 1], "{e}");
    }
    if served_epoch == epoch {
        assert!(complete, "{file}: events dropped under the old epoch");
        assert_eq!(
            ids,
            acknowledged,
            "{file}: a shortened history ({} of {} events) served under the old epoch",
            ids.len(),
            acknowledged.len()
        );
        format!(
            "started: the whole history ({} events), same epoch",
            ids.len()
        )
    } else {
        format!(
            "started: {} of {} events kept (offsets {first}..={latest}), under a new epoch \
             (clients told recovered: false)",
            ids.len(),
            acknowledged.len()
        )
    }
}

#[test]
fn a_cut_or_zeroed_tail_is_recovered_under_a_new_epoch_or_refused_never_served_short() {
    // The events in the write-ahead log (a kill -9 left them there).
    // Few enough that the log was never checkpointed (SQLite does at 1 000 pages, then
    // writes the log again from its start): its tail is then the last commits' frames.
    let (in_wal, epoch, acknowledged) = filled_data_dir("tail-wal", 60, false);
    let wal = "livebridge.db-wal";
    let wal_len = std::fs::metadata(in_wal.join(wal)).unwrap().len();
    let db_len = std::fs::metadata(in_wal.join("livebridge.db"))
        .unwrap()
        .len();
    println!("events in the log: {wal_len} bytes of log, {db_len} bytes of database");
    assert!(
        wal_len > 60_000 && db_len < 60_000,
        "the events are in the log ({wal_len} bytes), not yet in the database ({db_len} bytes)"
    );
    let mut outcomes = Vec::new();
    // A WAL frame is a 4 KiB page and a 24-byte header: 1 000 bytes off cuts one mid-frame.
    let cases: [(&str, &str, Damage); 2] = [
        ("the -wal file cut mid-frame", wal, |f| cut_tail(f, 1_000)),
        ("the -wal file's last 16 KiB zeroed", wal, |f| {
            zero_tail(f, 16 * 1024)
        }),
    ];
    for (what, file, damage) in cases {
        let dir = data_dir(&format!("tail-{}", outcomes.len()));
        copy_dir(&in_wal, &dir);
        damage(&dir.join(file));
        let outcome = outcome(&dir, file, &epoch, &acknowledged);
        println!("{what}: {outcome}");
        // Events acknowledged in the lost frames are gone: the history cannot be whole.
        assert!(!outcome.contains("same epoch"), "{what}: {outcome}");
        outcomes.push(outcome);
    }
    // The events in the database file (a clean stop checkpointed the log into it).
    let (in_db, epoch, acknowledged) = filled_data_dir("tail-db", 200, true);
    let db = "livebridge.db";
    let cases: [(&str, Damage); 2] = [
        ("the database cut by 8 KiB", |f| cut_tail(f, 8 * 1024)),
        ("the database's last 8 KiB zeroed", |f| {
            zero_tail(f, 8 * 1024)
        }),
    ];
    for (what, damage) in cases {
        let dir = data_dir(&format!("tail-{}", outcomes.len()));
        copy_dir(&in_db, &dir);
        damage(&dir.join(db));
        let outcome = outcome(&dir, db, &epoch, &acknowledged);
        println!("{what}: {outcome}");
        outcomes.push(outcome);
    }
}
