//! Snapshot transcripts of representative sessions: every input and output, in order, with
//! virtual time. A change in any rule shows up as a readable diff (`cargo insta review`).

mod support;

use livebridge_core::{Config, Input};
use serde_json::json;
use std::time::Duration;
use support::{Harness, job_progress};

#[test]
fn polling_client_from_handshake_through_overflow_to_eviction() {
    let mut h = Harness::new(Config {
        queue_limit: 2,
        stale_after: Duration::from_secs(30),
        ..Config::default()
    });
    let id = h.handshake("lightroom");
    h.subscribe(id, &["jobs"]);
    h.poll(id);
    let poll = h.http("GET", &format!("/ws/poll?client_id={id}&wait=10"), "");
    h.advance(Duration::from_secs(1));
    h.publish(job_progress(10));
    assert!(h.take_reply(poll).is_some());
    for progress in [20, 30, 40] {
        h.publish(job_progress(progress));
    }
    h.poll(id);
    h.advance(Duration::from_secs(30));
    assert!(h.engine.sessions().is_empty());
    insta::assert_snapshot!(h.transcript_text());
}

#[test]
fn resume_over_http_and_over_websocket() {
    let mut h = Harness::new(Config {
        stale_after: Duration::from_secs(60),
        ping_interval: Duration::from_secs(25),
        ..Config::default()
    });
    let (conn, id) = h.ws_open();
    h.ws_send(
        conn,
        json!({"type": "register", "client_type": "gui", "client_name": "Desktop"}),
    );
    h.ws_send(conn, json!({"type": "subscribe", "channels": ["jobs"]}));
    h.client_closes(conn, Some(1006));
    h.advance(Duration::from_secs(5));
    h.publish(job_progress(1));
    let body = format!(r#"{{"client_type":"gui","client_id":"{id}"}}"#);
    h.call("POST", "/ws/handshake", &body);
    h.publish(job_progress(2));
    let (conn2, _) = h.ws_open();
    h.ws_send(
        conn2,
        json!({"type": "register", "client_id": id.to_string()}),
    );
    h.advance(Duration::from_secs(30));
    insta::assert_snapshot!(h.transcript_text());
}

#[test]
fn errors_on_both_transports() {
    let mut h = Harness::default();
    let id = h.handshake("lightroom");
    h.call("POST", "/ws/handshake", "{}");
    h.call(
        "GET",
        "/ws/poll?client_id=0b7c2f4e-8a55-4d7e-9a44-0f3e1f2d3c4b",
        "",
    );
    h.send(id, json!({"type": "teleport"}));
    h.call(
        "POST",
        "/api/events",
        r#"{"type":"job_progress","job_id":"j","stage":"s","progress":"x"}"#,
    );
    h.call("PUT", "/ws/status", "");
    let (conn, _) = h.ws_open();
    h.input(Input::WsText {
        conn,
        text: "not json".to_string(),
    });
    h.ws_send(
        conn,
        json!({"type": "subscribe", "channels": ["bad channel!"]}),
    );
    insta::assert_snapshot!(h.transcript_text());
}

#[test]
fn a_recovery_after_a_dropped_socket() {
    let mut h = Harness::default();
    let (conn, id) = h.ws_open();
    h.ws_send(conn, json!({"type": "subscribe", "channels": ["jobs"]}));
    h.publish(job_progress(1));
    let epoch = h.take_frames(conn)[1]["epoch"].clone();
    h.client_closes(conn, None);
    h.advance(Duration::from_secs(1));
    h.publish(job_progress(2));
    h.publish(job_progress(3));
    let (conn, _) = h.ws_open();
    h.ws_send(
        conn,
        json!({"type": "register", "client_id": id.to_string(),
               "since": {"jobs": {"offset": 1, "epoch": epoch}}}),
    );
    h.publish(job_progress(4));
    insta::assert_snapshot!(h.transcript_text());
}

#[test]
fn a_recovery_refused_because_history_no_longer_reaches_back() {
    let mut h = Harness::new(Config {
        history_size: 2,
        ..Config::default()
    });
    let (conn, _) = h.ws_open();
    h.ws_send(conn, json!({"type": "subscribe", "channels": ["jobs"]}));
    for progress in 1..=4 {
        h.publish(job_progress(progress));
    }
    let epoch = h.take_frames(conn)[1]["epoch"].clone();
    h.ws_send(
        conn,
        json!({"type": "subscribe", "channels": ["jobs"],
               "since": {"jobs": {"offset": 1, "epoch": epoch}}}),
    );
    h.publish(job_progress(5));
    insta::assert_snapshot!(h.transcript_text());
}
