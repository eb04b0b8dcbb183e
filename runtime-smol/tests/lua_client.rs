//! The Lightroom plugin's Lua client (`clients/lua`) against the real `livebridge` binary.
//!
//! Each test starts the server on an ephemeral port and runs
//! `lua5.1 clients/lua/tests/run.lua <url> <scenario>`; the Lua output is shown when it
//! fails. Lines `@@ ...` printed by a scenario ask the harness to act (publish an event while
//! the client's long poll is pending, restart the server). Lua 5.1, LuaSocket and lua-cjson
//! come from `scripts/install-test-deps.sh`.

mod support;

use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};
use support::{WAIT, WsClient};

const BIN: &str = env!("CARGO_BIN_EXE_livebridge");

fn lua_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../clients/lua")
}

/// A `livebridge serve` child process.
struct Server {
    child: Child,
    addr: String,
}

impl Server {
    fn start(extra: &[&str]) -> Server {
        Server::spawn("127.0.0.1:0", extra).expect("livebridge starts")
    }

    /// Starts the binary; `None` if it does not report listening (e.g. the port is taken).
    fn spawn(bind: &str, extra: &[&str]) -> Option<Server> {
        let mut child = Command::new(BIN)
            .args(["serve", "--bind", bind])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn livebridge");
        let (line, mut reader) =
            support::first_line_within(&mut child, "livebridge announcing its address", WAIT);
        let addr = line
            .trim()
            .strip_prefix("livebridge listening on http://")
            .map(str::to_string);
        let Some(addr) = addr else {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        };
        // Keep draining stdout so the server never blocks on it.
        thread::spawn(move || {
            let mut sink = String::new();
            while reader.read_line(&mut sink).is_ok_and(|n| n > 0) {
                sink.clear();
            }
        });
        Some(Server { child, addr })
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// SIGTERM (graceful shutdown), then SIGKILL if it is still running after 10 s.
    fn stop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Stops the server and starts a new one on the same address.
    fn restart(&mut self, extra: &[&str]) {
        self.stop();
        for _ in 0..100 {
            if let Some(server) = Server::spawn(&self.addr, extra) {
                *self = server;
                return;
            }
            thread::sleep(Duration::from_millis(100));
        }
        panic!("could not start livebridge again on {}", self.addr);
    }

    fn publish(&self, event: &Value) {
        let url = format!("{}/api/events", self.url());
        let response = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(20)))
            .build()
            .new_agent()
            .post(&url)
            .header("content-type", "application/json")
            .send(event.to_string())
            .unwrap_or_else(|e| panic!("POST /api/events: {e}"));
        assert_eq!(response.status().as_u16(), 200);
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs a Lua scenario; `on_signal` gets the text of each `@@ ` line as it is printed.
/// Panics with the Lua output if the scenario fails. Returns the output.
fn lua(args: &[&str], mut on_signal: impl FnMut(&str)) -> String {
    if Command::new("lua5.1")
        .arg("-v")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_err()
    {
        panic!("lua5.1 is not installed: run scripts/install-test-deps.sh");
    }
    let mut child = Command::new("lua5.1")
        .arg("tests/run.lua")
        .args(args)
        .current_dir(lua_dir())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn lua5.1");
    let mut stderr = child.stderr.take().expect("stderr");
    let stderr = thread::spawn(move || {
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut stderr, &mut text);
        text
    });
    // A watchdog, so that a hung scenario fails instead of hanging the test run.
    let (done, watchdog) = mpsc::channel::<()>();
    let pid = child.id().to_string();
    let watchdog = thread::spawn(move || {
        if watchdog.recv_timeout(Duration::from_secs(180)).is_err() {
            let _ = Command::new("kill").args(["-KILL", &pid]).status();
        }
    });
    let mut output = String::new();
    for line in BufReader::new(child.stdout.take().expect("stdout")).lines() {
        let Ok(line) = line else { break };
        output.push_str(&line);
        output.push('\n');
        if let Some(signal) = line.strip_prefix("@@ ") {
            on_signal(signal);
        }
    }
    let status = child.wait().expect("lua5.1 runs");
    let _ = done.send(());
    let _ = watchdog.join();
    let stderr = stderr.join().unwrap_or_default();
    assert!(
        status.success(),
        "lua scenario {args:?} failed ({status}):\n{output}\n--- stderr ---\n{stderr}"
    );
    output
}

#[test]
fn lua_unit_tests_json_backoff_and_dispatch() {
    let output = lua(&["--unit"], |_| {});
    assert!(output.contains(" passed, 0 failed"), "{output}");
}

#[test]
fn lua_client_receives_events_and_its_events_reach_a_websocket_client() {
    let server = Server::start(&[]);
    let mut gui = WsClient::connect_blocking(&server.addr);
    gui.send(json!({"type": "register", "client_type": "gui", "client_name": "Desktop GUI"}));
    assert_eq!(gui.recv().expect("registered")["type"], "registered");
    gui.send(json!({"type": "subscribe", "channels": ["jobs", "system"]}));
    assert_eq!(gui.recv().expect("subscribed")["type"], "subscribed");

    let url = server.url();
    lua(&[&url, "events"], |signal| {
        if signal == "publish system_status" {
            // The Lua client's long poll is pending: publish half a second later.
            thread::sleep(Duration::from_millis(500));
            server.publish(&json!({"type": "system_status", "status": "from-rust"}));
        }
    });

    // What the plugin sent reached the WebSocket client.
    let mut seen: Vec<Value> = Vec::new();
    let wanted = |seen: &[Value], kind: &str, job: &str| {
        seen.iter()
            .find(|m| m["type"] == kind && m["job_id"] == job)
            .cloned()
    };
    while wanted(&seen, "error_occurred", "lua-job-1").is_none() {
        match gui.recv() {
            Some(message) => seen.push(message),
            None => panic!("the WebSocket client did not get the Lua client's events: {seen:?}"),
        }
    }
    let progress = wanted(&seen, "job_progress", "lua-job-1").expect("job_progress");
    assert_eq!(progress["stage"], "processing");
    assert_eq!(progress["progress"], 50.0);
    assert_eq!(progress["message"], "Applying HSL adjustments");
    assert!(progress["timestamp"].as_str().unwrap().ends_with('Z'));
    let completed = wanted(&seen, "job_completed", "lua-job-1").expect("job_completed");
    assert_eq!(completed["photo_id"], "photo-9");
    assert_eq!(
        completed["result"],
        json!({"preset": "Portrait", "score": 0.9})
    );
    let failed = wanted(&seen, "job_failed", "lua-job-2").expect("job_failed");
    assert_eq!(failed["error_message"], "out of memory");
    assert_eq!(failed["photo_id"], 12);
    assert_eq!(failed["error_details"], json!({"stage": "export"}));
    let error = wanted(&seen, "error_occurred", "lua-job-1").expect("error_occurred");
    assert_eq!(error["error_type"], "processing_error");
    assert_eq!(error["error_message"], "Failed to apply settings");
    assert_eq!(error["photo_id"], "photo123");
    assert_eq!(
        error["error_details"],
        json!({"photo_id": "photo123", "job_id": "lua-job-1"})
    );
    // In the order they were sent, and the refused one (progress "fifty") is not there.
    let order: Vec<&str> = seen
        .iter()
        .filter(|m| {
            m["job_id"]
                .as_str()
                .is_some_and(|j| j.starts_with("lua-job"))
        })
        .map(|m| m["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        order,
        [
            "job_progress",
            "job_completed",
            "job_failed",
            "error_occurred"
        ]
    );
}

/// A short outage resumes the session (the handshake carries the positions); a longer one is
/// evicted (`--stale-after 4s`) and the new session recovers, once and in order, what was
/// published during the outage.
#[test]
fn lua_client_resumes_its_session_after_a_short_outage() {
    let server = Server::start(&["--stale-after", "4s"]);
    lua(&[&server.url(), "outage"], |_| {});
}

/// A restart without a data dir loses the history (new epochs): the client gets a new
/// session, `recovery_failed` for each channel, then live events.
#[test]
fn lua_client_gets_a_new_session_after_a_server_restart() {
    let args = ["--stale-after", "4s"];
    let mut server = Server::start(&args);
    let url = server.url();
    let mut restarted = false;
    lua(&[&url, "restart"], |signal| {
        if signal == "restart" {
            server.restart(&args);
            restarted = true;
        }
    });
    assert!(restarted, "the scenario asked for a restart");
}

/// `messages_dropped` with 5 of 8 events, then all 8 in order, once: the client subscribes
/// again with its positions and the hub replays the dropped ones.
#[test]
fn lua_client_reports_messages_dropped_by_a_full_queue() {
    let server = Server::start(&["--queue-limit", "3"]);
    lua(&[&server.url(), "overflow"], |_| {});
}

trait ConnectBlocking {
    fn connect_blocking(addr: &str) -> WsClient;
}

impl ConnectBlocking for WsClient {
    fn connect_blocking(addr: &str) -> WsClient {
        smol::block_on(WsClient::connect(addr.parse().expect("a socket address")))
    }
}
