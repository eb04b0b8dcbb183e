//! Durable history on the axum runtime (`Livebridge::durable`, `ServerConfig::data_dir`): what
//! was acknowledged survives a restart on the same data dir with the same positions, a full
//! store refuses publishes with 507 while reads go on, and an unusable data dir stops start-up
//! with a message naming it. (The `kill -9` test runs against the smol binary, which has the
//! same store: `runtime-smol/tests/durability.rs`.)

mod support;

use livebridge_axum::{DataDir, Server, ServerConfig};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use support::http;

/// A fresh data dir under the target directory, removed first.
fn data_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("axum-{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn start(dir: &Path, max_bytes: Option<u64>) -> std::io::Result<Server> {
    let mut config = ServerConfig {
        bind: "127.0.0.1:0".parse().unwrap(),
        threads: 1,
        data_dir: Some(DataDir {
            path: dir.to_path_buf(),
            max_bytes,
        }),
        ..ServerConfig::default()
    };
    config.settings.engine.history_size = 100_000;
    Server::start(config)
}

fn publish(addr: SocketAddr, job: u64, message: &str) -> (u16, Value) {
    let event = json!({"type": "job_progress", "job_id": job, "stage": "s", "progress": 1,
                       "message": message});
    http(addr, "POST", "/api/events", &event.to_string())
}

#[test]
fn acknowledged_events_survive_a_restart_with_their_positions() {
    let dir = data_dir("restart");
    let server = start(&dir, None).expect("server");
    let addr = server.local_addr();
    let mut offsets = Vec::new();
    for job in 1..=5 {
        let (status, reply) = publish(addr, job, "m");
        assert_eq!(status, 200, "{reply}");
        offsets.push(reply["events"][0]["offset"].as_u64().expect("offset"));
    }
    assert_eq!(offsets, [1, 2, 3, 4, 5]);
    let (_, before) = http(addr, "GET", "/api/history/jobs?since=0", "");
    server.shutdown().expect("stopped");

    let server = start(&dir, None).expect("restarted");
    let addr = server.local_addr();
    let (status, after) = http(addr, "GET", "/api/history/jobs?since=0", "");
    assert_eq!(status, 200, "{after}");
    assert_eq!(
        after["epoch"], before["epoch"],
        "same epoch: nothing was lost"
    );
    assert_eq!(after["offset"], 5);
    let jobs: Vec<u64> = after["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|event| event["job_id"].as_u64().expect("job id"))
        .collect();
    assert_eq!(jobs, [1, 2, 3, 4, 5]);
    // The channel continues where it was.
    let (status, reply) = publish(addr, 6, "m");
    assert_eq!(
        (status, reply["events"][0]["offset"].as_u64()),
        (200, Some(6))
    );
}

#[test]
fn a_full_store_refuses_publishes_with_507_and_reads_go_on() {
    let dir = data_dir("full");
    let server = start(&dir, Some(96 * 1024)).expect("server");
    let addr = server.local_addr();
    let padding = "x".repeat(2_000);
    let mut acknowledged = 0u64;
    let mut refused = false;
    for job in 1..=400 {
        match publish(addr, job, &padding) {
            (200, _) => acknowledged += 1,
            (507, reply) => {
                assert!(reply["error"].as_str().unwrap().contains("full"), "{reply}");
                refused = true;
                break;
            }
            (status, reply) => panic!("{status}: {reply}"),
        }
    }
    assert!(refused, "the store never filled up");
    let (status, history) = http(addr, "GET", "/api/history/jobs?limit=1000", "");
    assert_eq!(status, 200);
    assert_eq!(history["offset"], acknowledged);
    assert_eq!(
        history["events"].as_array().unwrap().len() as u64,
        acknowledged
    );
    assert_eq!(http(addr, "GET", "/ws/status", "").0, 200);
}

#[test]
fn an_unusable_data_dir_stops_start_up_with_a_message_naming_it() {
    let file = data_dir("not-a-dir");
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    std::fs::write(&file, "a file, not a directory").unwrap();
    let error = start(&file, None).err().expect("refused");
    assert!(
        error.to_string().contains(&*file.to_string_lossy()),
        "{error}"
    );
}
