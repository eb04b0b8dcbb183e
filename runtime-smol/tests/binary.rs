//! The `livebridge` binary itself: settings on the command line, and a graceful exit on
//! SIGTERM with every client told.

mod support;

use serde_json::Value;
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use support::{WAIT, join_within, output_within, wait_child};

fn spawn(args: &[&str]) -> (Child, String) {
    support::spawn_livebridge(args)
}

#[test]
fn help_documents_every_setting_with_its_default() {
    let output = output_within(
        Command::new(env!("CARGO_BIN_EXE_livebridge")).args(["serve", "--help"]),
        "livebridge serve --help",
        WAIT,
    );
    let help = String::from_utf8(output.stdout).unwrap();
    for (flag, default) in [
        ("--bind", "127.0.0.1:5100"),
        ("--queue-limit", "100"),
        ("--stale-after", "5m"),
        ("--long-poll-max", "30s"),
        ("--max-body", "64KiB"),
        ("--max-frame", "64KiB"),
        ("--log", "info"),
    ] {
        let at = help.find(flag).unwrap_or_else(|| panic!("{flag} missing"));
        let section = &help[at..];
        let default_line = section.lines().find(|l| l.contains("[default:")).unwrap();
        assert!(default_line.contains(default), "{flag}: {default_line}");
    }
    assert!(help.contains("LIVEBRIDGE_STALE_AFTER"));
}

#[test]
fn settings_from_flags_reach_the_engine() {
    let (mut child, addr) = spawn(&["--queue-limit", "7", "--stale-after", "3s"]);
    let agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(20)))
        .build()
        .new_agent();
    let text = agent
        .get(format!("http://{addr}/ws/status"))
        .call()
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap();
    let status: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(status["config"]["queue_limit"], 7);
    assert_eq!(status["config"]["stale_after_seconds"], 3.0);
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn sigterm_closes_websockets_answers_polls_and_exits_zero() {
    let (mut child, addr) = spawn(&[]);
    let addr: std::net::SocketAddr = addr.parse().unwrap();
    let mut ws = smol::block_on(support::WsClient::connect(addr));
    // Beyond the 30 s long poll below.
    let agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .new_agent();
    let text = agent
        .post(format!("http://{addr}/ws/handshake"))
        .send(r#"{"client_type":"lightroom"}"#)
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap();
    let handshake: Value = serde_json::from_str(&text).unwrap();
    let id = handshake["client_id"].as_str().unwrap().to_string();
    agent
        .get(format!("http://{addr}/ws/poll?client_id={id}"))
        .call()
        .unwrap();
    let poll = std::thread::spawn(move || {
        let response = agent
            .get(format!("http://{addr}/ws/poll?client_id={id}&wait=30"))
            .call()
            .unwrap();
        response.status().as_u16()
    });
    std::thread::sleep(Duration::from_millis(300));
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    assert_eq!(ws.close_code(), Some(1001));
    assert_eq!(
        join_within(poll, "the long poll's answer", WAIT).unwrap(),
        200
    );
    let status = wait_child(&mut child, "livebridge after SIGTERM", WAIT);
    assert_eq!(status.code(), Some(0));
}

#[test]
fn binding_beyond_loopback_without_an_admin_token_is_refused() {
    let output = output_within(
        Command::new(env!("CARGO_BIN_EXE_livebridge")).args(["serve", "--bind", "0.0.0.0:0"]),
        "livebridge refusing to bind beyond loopback",
        WAIT,
    );
    // Exit code 2: a configuration error (docs/operations.md, "Exit codes").
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("without --admin-token"), "{stderr}");
}

#[test]
fn a_minted_token_opens_a_session_on_a_server_that_requires_tokens() {
    let secret = ["--client-token-secret", "s3cret"];
    let (mut child, addr) = spawn(&secret);
    let token = output_within(
        Command::new(env!("CARGO_BIN_EXE_livebridge"))
            .args([
                "token", "--secret", "s3cret", "--sub", "plugin", "--ttl", "1h",
            ])
            .args(["--channels", "jobs,system", "--client-type", "lightroom"]),
        "livebridge token",
        WAIT,
    );
    let token = String::from_utf8(token.stdout).unwrap().trim().to_string();
    let agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(20)))
        .build()
        .new_agent();
    let handshake = |body: String| {
        let mut response = agent
            .post(format!("http://{addr}/ws/handshake"))
            .send(body)
            .unwrap();
        let status = response.status().as_u16();
        (status, response.body_mut().read_to_string().unwrap())
    };
    assert_eq!(
        handshake(r#"{"client_type":"lightroom"}"#.to_string()).0,
        401
    );
    let (status, body) = handshake(format!(
        r#"{{"client_type":"lightroom","token":"{token}"}}"#
    ));
    assert_eq!(status, 200, "{body}");
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn at_the_file_descriptor_limit_accept_errors_are_logged_once_per_episode_and_counted() {
    // A low descriptor limit for the server only; it prints its address on stdout.
    let log = std::env::temp_dir().join(format!("livebridge-fd-{}.log", std::process::id()));
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(r#"ulimit -n 40 && exec "$0" serve --bind 127.0.0.1:0 --log info 2>"$1""#)
        .arg(env!("CARGO_BIN_EXE_livebridge"))
        .arg(&log)
        .stdout(Stdio::piped())
        .spawn()
        .expect("start livebridge");
    let addr: std::net::SocketAddr = support::announced_address(&mut child).parse().unwrap();
    let held: Vec<_> = (0..80)
        .filter_map(|_| std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok())
        .collect();
    std::thread::sleep(Duration::from_millis(800));
    drop(held);
    // Once the held connections are gone the server accepts again.
    let agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(20)))
        .build()
        .new_agent();
    let metrics = agent
        .get(format!("http://{addr}/metrics"))
        .call()
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap();
    let failures: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("livebridge_accept_errors_total "))
        .unwrap()
        .parse()
        .unwrap();
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    wait_child(&mut child, "livebridge after SIGTERM", WAIT);
    let text = std::fs::read_to_string(&log).unwrap();
    let _ = std::fs::remove_file(&log);
    let warned = text.lines().filter(|l| l.contains("accept failed")).count();
    assert!(
        failures >= 5,
        "{failures} failed accepts in 800 ms:\n{text}"
    );
    assert!(
        (1..=2).contains(&warned),
        "{warned} warnings for {failures} failures:\n{text}"
    );
    assert!(text.contains("accepting connections again"), "{text}");
}

#[test]
fn catalogue_renders_a_users_events_writes_the_lua_table_between_markers_and_names_a_bad_file() {
    let dir = std::env::temp_dir().join(format!("livebridge-catalogue-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("events.json");
    std::fs::write(
        &file,
        r#"{"events": [{"type": "print_queued", "channel": "printing", "fields": [
            {"name": "copies", "type": "count", "required": true}]}]}"#,
    )
    .unwrap();
    let run = |args: &[&str]| {
        output_within(
            Command::new(env!("CARGO_BIN_EXE_livebridge")).args(args),
            "livebridge catalogue",
            WAIT,
        )
    };
    let file_arg = file.to_str().unwrap();
    let ts = run(&[
        "catalogue",
        "--format",
        "typescript",
        "--catalogue",
        file_arg,
    ]);
    assert!(ts.status.success());
    let ts = String::from_utf8(ts.stdout).unwrap();
    assert!(ts.contains("export interface PrintQueuedEvent {"), "{ts}");
    assert!(ts.contains("  copies: number;\n"));
    assert!(ts.contains("  'job_progress': JobProgressEvent;\n"));
    let schema = run(&["catalogue", "--format", "schema"]);
    let schema: Value = serde_json::from_slice(&schema.stdout).unwrap();
    assert_eq!(schema["$defs"].as_object().unwrap().len(), 22);

    let readme = dir.join("README.md");
    std::fs::write(
        &readme,
        "# Mine\n<!-- catalogue-fields:begin -->\nSTALE ROW\n<!-- catalogue-fields:end -->\nend\n",
    )
    .unwrap();
    let readme_arg = readme.to_str().unwrap();
    let args = [
        "catalogue",
        "--format",
        "lua-table",
        "--catalogue",
        file_arg,
        "--write",
        readme_arg,
    ];
    let written = run(&args);
    assert!(written.status.success() && written.stdout.is_empty());
    let text = std::fs::read_to_string(&readme).unwrap();
    assert!(text.starts_with("# Mine\n<!-- catalogue-fields:begin -->\n"));
    assert!(text.ends_with("| `print_queued` | printing | `copies` (integer ≥ 0) |\n<!-- catalogue-fields:end -->\nend\n"), "{text}");
    assert!(!text.contains("STALE ROW"));

    std::fs::write(
        &file,
        r#"{"events": [{"type": "ping", "channel": "c", "fields": []}]}"#,
    )
    .unwrap();
    let refused = run(&["catalogue", "--format", "python", "--catalogue", file_arg]);
    assert_eq!(refused.status.code(), Some(2));
    let stderr = String::from_utf8(refused.stderr).unwrap();
    assert!(
        stderr.contains(file_arg) && stderr.contains("protocol message"),
        "{stderr}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
