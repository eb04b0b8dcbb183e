//! The `livebridge` binary's settings and start-up on the real binary: the configuration file
//! (`--config`), its precedence against flags and `LIVEBRIDGE_*` variables, the errors that
//! name the file, the line and the key, `livebridge config`'s report, the exit codes, and the
//! data dir's lock against a second instance.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// A scratch directory under the target directory, empty.
fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("configuration")
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn write_file(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// Runs the binary to completion with no `LIVEBRIDGE_*` variable but those given.
fn livebridge(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_livebridge"));
    for (name, _) in std::env::vars() {
        if name.starts_with("LIVEBRIDGE_") {
            command.env_remove(name);
        }
    }
    command.args(args).envs(env.iter().copied());
    support::output_within(&mut command, "livebridge to finish", support::WAIT)
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Asserts that the binary exited with `code` and said `needle` on standard error.
fn assert_refused(output: &Output, code: i32, needle: &str) {
    let message = stderr(output);
    assert_eq!(output.status.code(), Some(code), "{message}");
    assert!(
        message.contains(needle),
        "expected {needle:?} in: {message}"
    );
}

/// The line `livebridge config` prints for `key`.
fn reported<'a>(report: &'a str, key: &str) -> &'a str {
    report
        .lines()
        .find(|line| line.starts_with(&format!("{key} = ")) || line == &format!("# {key} is unset"))
        .unwrap_or_else(|| panic!("no line for {key} in:\n{report}"))
}

#[test]
fn flags_beat_variables_beat_the_file_beat_defaults() {
    let dir = scratch("precedence");
    let file = write_file(
        &dir,
        "livebridge.toml",
        "# settings of the studio's hub\n\
         queue_limit = 5\n\
         stale_after = \"3m\"\n\
         history_size = 50\n\
         allowed_origins = [\"https://gui.example\", \"https://pwa.example\"]\n\
         broker_durable = true\n",
    );
    let file = file.to_str().unwrap();
    let output = livebridge(
        &["config", "--config", file, "--queue-limit", "7"],
        &[("LIVEBRIDGE_STALE_AFTER", "9s")],
    );
    assert!(output.status.success(), "{}", stderr(&output));
    let report = stdout(&output);
    assert_eq!(reported(&report, "queue_limit"), "queue_limit = 7  # flag");
    assert_eq!(
        reported(&report, "stale_after"),
        "stale_after = \"9s\"  # env"
    );
    assert_eq!(
        reported(&report, "history_size"),
        format!("history_size = 50  # file {file}:4")
    );
    assert_eq!(
        reported(&report, "allowed_origins"),
        format!(
            "allowed_origins = [\"https://gui.example\", \"https://pwa.example\"]  # file {file}:5"
        )
    );
    assert_eq!(
        reported(&report, "broker_durable"),
        format!("broker_durable = true  # file {file}:6")
    );
    assert_eq!(
        reported(&report, "ping_interval"),
        "ping_interval = \"30s\"  # default"
    );
    assert_eq!(reported(&report, "data_dir"), "# data_dir is unset");
}

#[test]
fn the_file_is_named_by_a_variable_too_and_the_server_runs_with_it() {
    let dir = scratch("served");
    let file = write_file(&dir, "hub.toml", "queue_limit = 3\nhistory_size = 2\n");
    let mut child = Command::new(env!("CARGO_BIN_EXE_livebridge"))
        .args(["serve", "--bind", "127.0.0.1:0", "--log", "warn"])
        .env("LIVEBRIDGE_CONFIG", &file)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let addr = support::announced_address(&mut child);
    let agent = support::agent(std::time::Duration::from_secs(10));
    for progress in 0..5 {
        let body = format!(r#"{{"job_id": "j", "stage": "s", "progress": {progress}}}"#);
        let response = agent
            .post(&format!("http://{addr}/ws/notify/job_progress"))
            .header("content-type", "application/json")
            .send(body)
            .unwrap();
        assert_eq!(response.status().as_u16(), 200);
    }
    // history_size = 2 from the file: the channel keeps only the last two events.
    let mut response = agent
        .get(&format!("http://{addr}/api/history/jobs"))
        .call()
        .unwrap();
    let history: serde_json::Value =
        serde_json::from_str(&response.body_mut().read_to_string().unwrap()).unwrap();
    assert_eq!(
        history["events"].as_array().map(Vec::len),
        Some(2),
        "{history}"
    );
    child.kill().unwrap();
    let _ = child.wait();
}

#[test]
fn secrets_are_masked_in_the_report() {
    let dir = scratch("secrets");
    let file = write_file(&dir, "hub.toml", "admin_token = \"file-secret\"\n");
    let output = livebridge(
        &["config", "--config", file.to_str().unwrap()],
        &[("LIVEBRIDGE_CLIENT_TOKEN_SECRET", "env-secret")],
    );
    assert!(output.status.success(), "{}", stderr(&output));
    let report = stdout(&output);
    assert!(
        !report.contains("file-secret") && !report.contains("env-secret"),
        "{report}"
    );
    assert!(reported(&report, "admin_token").starts_with("admin_token = \"********\"  # file"));
    assert_eq!(
        reported(&report, "client_token_secret"),
        "client_token_secret = \"********\"  # env"
    );
}

#[test]
fn a_bad_file_stops_start_up_naming_the_file_the_line_and_the_key() {
    let dir = scratch("bad");
    let cases = [
        (
            "unknown.toml",
            "queue_limit = 5\nstale_afer = \"3m\"\n",
            ":2: stale_afer: unknown key",
            "did you mean `stale_after`",
        ),
        (
            "duration.toml",
            "queue_limit = 5\n\nstale_after = \"soon\"\n",
            ":3: stale_after: invalid value 'soon'",
            "5m",
        ),
        (
            "type.toml",
            "queue_limit = \"many\"\n",
            ":1: queue_limit: invalid value 'many'",
            "queue-limit",
        ),
        (
            "array.toml",
            "\nqueue_limit = [1, 2]\n",
            ":2: queue_limit: expected one value, found an array",
            "",
        ),
        (
            "bool.toml",
            "broker_durable = \"yes\"\n",
            ":1: broker_durable: expected true or false",
            "",
        ),
        (
            "enum.toml",
            "slow_consumer = \"ignore\"\n",
            ":1: slow_consumer: invalid value 'ignore'",
            "drop-oldest",
        ),
        (
            "syntax.toml",
            "queue_limit = 5\nhistory_size =\n",
            ":2:",
            "history_size",
        ),
        (
            "table.toml",
            "[server]\nqueue_limit = 5\n",
            ":1: server: unknown key",
            "",
        ),
    ];
    for (name, text, expected, hint) in cases {
        let file = write_file(&dir, name, text);
        let output = livebridge(
            &[
                "serve",
                "--bind",
                "127.0.0.1:0",
                "--config",
                file.to_str().unwrap(),
            ],
            &[],
        );
        let message = stderr(&output);
        assert_eq!(output.status.code(), Some(2), "{name}: {message}");
        assert!(
            message.contains(&format!("{}{expected}", file.display())),
            "{name}: {message}"
        );
        assert!(message.contains(hint), "{name}: {message}");
        assert!(stdout(&output).is_empty(), "{name}: it must not start");
    }
    let missing = dir.join("missing.toml");
    let output = livebridge(&["serve", "--config", missing.to_str().unwrap()], &[]);
    assert_refused(&output, 2, "missing.toml");
}

#[test]
fn an_empty_secret_is_refused_naming_the_flag() {
    for (flag, args) in [
        (
            "--admin-token",
            vec!["serve", "--bind", "127.0.0.1:0", "--admin-token", ""],
        ),
        (
            "--client-token-secret",
            vec![
                "serve",
                "--bind",
                "127.0.0.1:0",
                "--client-token-secret",
                " ",
            ],
        ),
    ] {
        let output = livebridge(&args, &[]);
        assert_refused(&output, 2, &format!("{flag} is empty"));
    }
    let dir = scratch("empty-secret");
    let file = write_file(&dir, "hub.toml", "admin_token = \"\"\n");
    let output = livebridge(
        &[
            "serve",
            "--bind",
            "127.0.0.1:0",
            "--config",
            file.to_str().unwrap(),
        ],
        &[],
    );
    assert_refused(&output, 2, "--admin-token is empty");
}

#[test]
fn exit_codes_tell_configuration_address_and_data_dir_apart() {
    // Configuration: settings that contradict each other.
    let output = livebridge(&["serve", "--bind", "0.0.0.0:0"], &[]);
    assert_refused(&output, 2, "--admin-token");

    // Address in use.
    let (mut first, addr) = support::spawn_livebridge(std::iter::empty::<&str>());
    let output = livebridge(&["serve", "--bind", &addr], &[]);
    assert_refused(&output, 3, &format!("cannot listen on {addr}"));
    first.kill().unwrap();
    let _ = first.wait();

    // A data dir that is a file.
    let dir = scratch("exit-codes");
    let file = write_file(&dir, "not-a-dir", "x");
    let output = livebridge(
        &[
            "serve",
            "--bind",
            "127.0.0.1:0",
            "--data-dir",
            file.to_str().unwrap(),
        ],
        &[],
    );
    assert_refused(&output, 4, "is not a directory");
}

#[test]
fn a_second_hub_on_the_same_data_dir_is_refused_and_the_lock_dies_with_the_first() {
    let dir = scratch("lock");
    let data = dir.join("data");
    let data_arg = data.to_str().unwrap();
    let (mut first, _) = support::spawn_livebridge(["--data-dir", data_arg]);
    let output = livebridge(
        &["serve", "--bind", "127.0.0.1:0", "--data-dir", data_arg],
        &[],
    );
    assert_eq!(output.status.code(), Some(4), "{}", stderr(&output));
    let message = stderr(&output);
    assert!(
        message.contains("in use by another livebridge")
            && message.contains(&format!("process {}", first.id())),
        "{message}"
    );
    // A kill -9 leaves no stale lock: the operating system releases it with the process.
    first.kill().unwrap();
    let _ = first.wait();
    let (mut second, _) = support::spawn_livebridge(["--data-dir", data_arg]);
    second.kill().unwrap();
    let _ = second.wait();
}

#[test]
fn a_service_manager_is_told_when_the_hub_is_ready_and_when_it_stops() {
    use std::os::unix::net::UnixDatagram;
    let dir = scratch("notify");
    let socket_path = dir.join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket
        .set_read_timeout(Some(std::time::Duration::from_secs(20)))
        .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_livebridge"))
        .args(["serve", "--bind", "127.0.0.1:0", "--log", "warn"])
        .env("NOTIFY_SOCKET", &socket_path)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let addr = support::announced_address(&mut child);
    let mut message = [0u8; 256];
    let length = socket.recv(&mut message).expect("READY=1 within 20 s");
    assert_eq!(
        &message[..length],
        b"READY=1\n",
        "after listening on {addr}"
    );
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let length = socket.recv(&mut message).expect("STOPPING=1 within 20 s");
    assert_eq!(&message[..length], b"STOPPING=1\n");
    let exit = support::wait_child(
        &mut child,
        "livebridge to exit after SIGTERM",
        support::WAIT,
    );
    assert_eq!(exit.code(), Some(0), "a graceful stop exits 0");
}
