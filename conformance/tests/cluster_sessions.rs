//! Runs every session of `conformance/sessions/` against the smol server as one node of a
//! cluster on a real `redis-server` (issue 16): a cluster node must answer every recorded
//! single-node session the same way (its cluster-wide views' extra fields aside, see
//! `LiveDriver::single_node_view`). Each session runs as its own cluster (its own key prefix)
//! on one Redis.
//!
//! Fails with a message when `redis-server` is not on PATH (scripts/install-test-deps.sh
//! installs it).

use livebridge_conformance::{Backend, Transcript, run, session_files, sessions_dir};
use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

struct Redis(std::process::Child);

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_redis() -> (Redis, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("redis-{port}"));
    std::fs::create_dir_all(&dir).unwrap();
    let child = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .arg("--dir")
        .arg(&dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|error| {
            panic!(
                "cannot start redis-server ({error}): the cluster conformance run needs Redis \
                 on PATH; install it with scripts/install-test-deps.sh"
            )
        });
    let redis = Redis(child);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
            let mut answer = [0u8; 7];
            if stream.write_all(b"PING\r\n").is_ok()
                && stream.read_exact(&mut answer).is_ok()
                && &answer == b"+PONG\r\n"
            {
                break;
            }
        }
        assert!(Instant::now() < deadline, "redis-server did not answer");
        std::thread::sleep(Duration::from_millis(20));
    }
    (redis, format!("redis://127.0.0.1:{port}"))
}

#[test]
fn every_session_on_a_cluster_node() {
    let (_redis, url) = start_redis();
    livebridge_conformance::live_backend::use_cluster_redis(url);
    let filter = std::env::var("CONFORMANCE_FILTER").unwrap_or_default();
    let sessions: Vec<Transcript> = session_files(&sessions_dir())
        .iter()
        .map(|file| Transcript::load(file).unwrap_or_else(|e| panic!("{e}")))
        .filter(|t| t.name.contains(&filter))
        .collect();
    assert!(!sessions.is_empty(), "no sessions");
    let failures = Mutex::new(Vec::new());
    let next = Mutex::new(0usize);
    std::thread::scope(|scope| {
        for _ in 0..4 {
            scope.spawn(|| {
                loop {
                    let index = {
                        let mut n = next.lock().unwrap();
                        *n += 1;
                        *n - 1
                    };
                    let Some(session) = sessions.get(index) else {
                        return;
                    };
                    if let Err(failure) = run(session, Backend::LiveCluster) {
                        failures
                            .lock()
                            .unwrap()
                            .push(format!("{}: {failure}", session.name));
                    }
                }
            });
        }
    });
    let mut failures = failures.into_inner().unwrap();
    failures.sort();
    for failure in &failures {
        println!("FAILED {failure}");
    }
    assert!(
        failures.is_empty(),
        "{} of {} sessions failed on a cluster node:\n{}",
        failures.len(),
        sessions.len(),
        failures.join("\n")
    );
}
