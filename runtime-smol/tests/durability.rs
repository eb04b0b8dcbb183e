//! Durable history (`--data-dir`) on the real binary: a `kill -9` while a publisher runs loses
//! nothing that was acknowledged and duplicates nothing; a full store refuses publishes with
//! 507 while reads go on; an unusable data dir stops start-up with a message naming it.

mod support;

use serde_json::{Value, json};

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use support::{WAIT, output_within};

use support::{fresh_dir as data_dir, spawn_with_data_dir as spawn};

fn agent() -> ureq::Agent {
    support::agent(Duration::from_secs(10))
}

/// Status and JSON body; `None` when the server did not answer.
fn call(
    agent: &ureq::Agent,
    addr: &str,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> Option<(u16, Value)> {
    let url = format!("http://{addr}{path}");
    let response = match body {
        Some(body) => agent.post(&url).send(body.to_string()),
        None if method == "GET" => agent.get(&url).call(),
        None => agent.post(&url).send_empty(),
    };
    let mut response = response.ok()?;
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string().ok()?;
    Some((status, serde_json::from_str(&text).ok()?))
}

#[test]
fn a_kill_9_while_publishing_loses_no_acknowledged_event_and_duplicates_none() {
    let dir = data_dir("kill-9");
    let history = ["--history-size", "100000", "--recovery-max", "100000"];
    let (mut child, addr) = spawn(&dir, &history);
    let agent = agent();
    // A publisher that keeps going through the kill, remembering what was acknowledged.
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(AtomicUsize::new(0));
    let publisher = {
        let (stop, acked, addr, agent) = (
            Arc::clone(&stop),
            Arc::clone(&acked),
            addr.clone(),
            agent.clone(),
        );
        std::thread::spawn(move || {
            let mut acknowledged = Vec::new();
            let mut id = 0u64;
            while !stop.load(Ordering::SeqCst) {
                id += 1;
                let event = json!({"type": "job_started", "job_id": id, "photo_id": 1});
                match call(&agent, &addr, "POST", "/api/events", Some(event)) {
                    Some((200, reply)) => {
                        assert_eq!(reply["events"][0]["offset"], acknowledged.len() as u64 + 1);
                        acknowledged.push(id);
                        acked.store(acknowledged.len(), Ordering::SeqCst);
                    }
                    _ => std::thread::sleep(Duration::from_millis(5)),
                }
            }
            acknowledged
        })
    };
    let (_, before) = call(&agent, &addr, "GET", "/api/history/jobs?limit=0", None).unwrap();
    let epoch = before["epoch"].as_str().unwrap().to_string();
    let deadline = Instant::now() + WAIT;
    while acked.load(Ordering::SeqCst) < 300 {
        assert!(
            Instant::now() < deadline,
            "waited {WAIT:?} for 300 acknowledged publishes; got {}",
            acked.load(Ordering::SeqCst)
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    std::thread::sleep(Duration::from_millis(100));
    stop.store(true, Ordering::SeqCst);
    let acknowledged = publisher.join().unwrap();
    assert!(acknowledged.len() >= 300, "{}", acknowledged.len());

    let (mut child, addr) = spawn(&dir, &history);
    let (_, handshake) = call(
        &agent,
        &addr,
        "POST",
        "/ws/handshake",
        Some(json!({"client_type": "gui"})),
    )
    .unwrap();
    let id = handshake["client_id"].as_str().unwrap().to_string();
    let subscribe = json!({"client_id": id, "message": {"type": "subscribe", "channels": ["jobs"],
                           "since": {"jobs": {"offset": 0, "epoch": epoch}}}});
    let (status, reply) = call(&agent, &addr, "POST", "/ws/send", Some(subscribe)).unwrap();
    assert_eq!(status, 200, "{reply}");
    assert_eq!(
        reply["response"]["recovered"]["jobs"], true,
        "same epoch after the restart: {reply}"
    );
    let (_, poll) = call(
        &agent,
        &addr,
        "GET",
        &format!("/ws/poll?client_id={id}"),
        None,
    )
    .unwrap();
    let events: Vec<&Value> = poll["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["type"] == "job_started")
        .collect();
    let offsets: Vec<u64> = events
        .iter()
        .map(|e| e["offset"].as_u64().unwrap())
        .collect();
    assert_eq!(
        offsets,
        (1..=offsets.len() as u64).collect::<Vec<_>>(),
        "no hole, none twice"
    );
    let recovered: Vec<u64> = events
        .iter()
        .map(|e| e["job_id"].as_u64().unwrap())
        .collect();
    assert!(
        recovered.len() >= acknowledged.len() && recovered.len() <= acknowledged.len() + 1,
        "{} recovered, {} acknowledged (one more may have been stored as the kill came)",
        recovered.len(),
        acknowledged.len()
    );
    assert_eq!(&recovered[..acknowledged.len()], &acknowledged[..]);
    // Publishing goes on after the last stored offset.
    let event = json!({"type": "job_started", "job_id": 0, "photo_id": 1});
    let (_, reply) = call(&agent, &addr, "POST", "/api/events", Some(event)).unwrap();
    assert_eq!(reply["events"][0]["offset"], recovered.len() as u64 + 1);
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn a_full_store_refuses_publishes_with_507_and_reads_go_on() {
    let dir = data_dir("full");
    let (mut child, addr) = spawn(
        &dir,
        &["--data-max-size", "96KiB", "--history-size", "100000"],
    );
    let agent = agent();
    let padding = "x".repeat(2_000);
    let mut acknowledged = 0u64;
    let mut refused = None;
    for id in 1..=400u64 {
        let event = json!({"type": "job_progress", "job_id": id, "stage": "s", "progress": 1,
                           "message": padding});
        let (status, reply) = call(&agent, &addr, "POST", "/api/events", Some(event)).unwrap();
        match status {
            200 => acknowledged += 1,
            507 => {
                assert!(reply["error"].as_str().unwrap().contains("full"), "{reply}");
                refused = Some(id);
                break;
            }
            other => panic!("{other}: {reply}"),
        }
    }
    assert!(refused.is_some(), "the store never filled up");
    // Reads are served; what was acknowledged is there, what was refused is not.
    let (status, history) =
        call(&agent, &addr, "GET", "/api/history/jobs?limit=1000", None).unwrap();
    assert_eq!(status, 200);
    assert_eq!(history["offset"], acknowledged);
    assert_eq!(
        history["events"].as_array().unwrap().len() as u64,
        acknowledged
    );
    assert_eq!(
        call(&agent, &addr, "GET", "/ws/status", None).unwrap().0,
        200
    );
    let (_, handshake) = call(
        &agent,
        &addr,
        "POST",
        "/ws/handshake",
        Some(json!({"client_type": "gui"})),
    )
    .unwrap();
    assert_eq!(handshake["success"], true, "sessions still open");
    child.kill().unwrap();
    child.wait().unwrap();
    // After a restart it is still full, but everything acknowledged is there.
    let (mut child, addr) = spawn(
        &dir,
        &["--data-max-size", "96KiB", "--history-size", "100000"],
    );
    let (_, history) = call(&agent, &addr, "GET", "/api/history/jobs?limit=1000", None).unwrap();
    assert_eq!(history["offset"], acknowledged);
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn an_unusable_data_dir_stops_start_up_with_a_message_naming_it() {
    let corrupt = data_dir("corrupt");
    std::fs::create_dir_all(&corrupt).unwrap();
    std::fs::write(
        corrupt.join("livebridge.db"),
        b"this is not a database, just bytes",
    )
    .unwrap();
    let under_a_file = data_dir("a-file").join("inside");
    let a_file = under_a_file.parent().unwrap().to_path_buf();
    std::fs::write(&a_file, b"x").unwrap();
    for (dir, because) in [
        (&corrupt, "not a usable livebridge database"),
        (&under_a_file, "cannot create it"),
        (&a_file, "is not a directory"),
    ] {
        let output = output_within(
            Command::new(env!("CARGO_BIN_EXE_livebridge"))
                .args(["serve", "--bind", "127.0.0.1:0", "--data-dir"])
                .arg(dir),
            "livebridge refusing an unusable data dir",
            WAIT,
        );
        // Exit code 4: the data dir cannot be used (docs/operations.md, "Exit codes").
        assert_eq!(output.status.code(), Some(4));
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(&dir.display().to_string()), "{stderr}");
        assert!(stderr.contains(because), "{stderr}");
    }
}
