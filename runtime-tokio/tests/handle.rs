//! The in-process handle against a running axum server: what a Rust application publishes
//! with `Handle::publish` reaches a client over real sockets, and a refused publish says why
//! with the status HTTP would give.

mod support;

use livebridge_axum::{Server, ServerConfig};
use livebridge_core::{Event, Id, JobProgress};
use serde_json::json;
use std::time::Duration;
use support::http;

/// `future`, failing naming `what` if it is not done within 30 s.
async fn within<T>(what: &str, future: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(30), future)
        .await
        .unwrap_or_else(|_| panic!("waited 30 s for {what}"))
}

fn start() -> Server {
    Server::start(ServerConfig {
        bind: "127.0.0.1:0".parse().unwrap(),
        threads: 1,
        ..ServerConfig::default()
    })
    .expect("server")
}

#[test]
fn a_typed_publish_reaches_a_polling_subscriber_with_its_position() {
    let server = start();
    let addr = server.local_addr();
    let (status, handshake) = http(addr, "POST", "/ws/handshake", r#"{"client_type":"gui"}"#);
    assert_eq!(status, 200, "{handshake}");
    let id = handshake["client_id"]
        .as_str()
        .expect("client id")
        .to_string();
    let subscribe =
        json!({"client_id": id, "message": {"type": "subscribe", "channels": ["jobs"]}});
    assert_eq!(
        http(addr, "POST", "/ws/send", &subscribe.to_string()).0,
        200
    );
    // Take what the session was sent so far (connection_established, subscribed).
    http(addr, "GET", &format!("/ws/poll?client_id={id}"), "");

    let handle = server.livebridge().handle();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    runtime
        .block_on(within(
            "the publish's answer",
            handle.publish(Event::JobProgress(JobProgress {
                job_id: Id::Text("j1".into()),
                stage: "analyzing".into(),
                progress: 45.5,
                message: None,
            })),
        ))
        .expect("published");

    let (status, poll) = http(addr, "GET", &format!("/ws/poll?client_id={id}"), "");
    assert_eq!(status, 200);
    let messages = poll["messages"].as_array().expect("messages");
    let event = messages
        .iter()
        .find(|m| m["type"] == "job_progress")
        .unwrap_or_else(|| panic!("no job_progress in {poll}"));
    assert_eq!(event["job_id"], "j1");
    assert_eq!(event["progress"], 45.5);
    assert_eq!(event["channel"], "jobs");
    assert_eq!(event["offset"], 1);
    server.shutdown().unwrap();
}

#[test]
fn a_refused_publish_names_the_field_and_the_http_status() {
    let server = start();
    let handle = server.livebridge().handle();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let refused = runtime
        .block_on(within(
            "the refused publish's answer",
            handle.publish_json(vec![json!({"type": "job_progress", "job_id": "j1"})]),
        ))
        .expect_err("a job_progress without stage and progress is refused");
    assert_eq!(refused.http_status(), 400);
    assert!(refused.to_string().contains("stage"), "{refused}");
    // Nothing was published: the channel has no position yet.
    let (status, history) = http(server.local_addr(), "GET", "/api/history/jobs", "");
    assert_eq!(status, 200, "{history}");
    assert_eq!(history["offset"], 0, "{history}");
    server.shutdown().unwrap();
}
