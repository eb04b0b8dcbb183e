//! Rules 1–3 over the HTTP polling fallback: handshake, resume, poll, long poll, and the
//! built-in client messages.

mod support;

use livebridge_core::Config;
use serde_json::json;
use std::time::Duration;
use support::{Harness, job_progress, types};

#[test]
fn handshake_opens_a_session_whose_queue_starts_with_connection_established() {
    let mut h = Harness::default();
    let (status, reply) = h.call(
        "POST",
        "/ws/handshake",
        r#"{"client_type":"lightroom","protocol_version":"1.0"}"#,
    );
    assert_eq!(status, 200);
    assert_eq!(reply["success"], true);
    assert_eq!(reply["protocol_version"], "1.0");
    assert_eq!(reply["resumed"], false);
    assert_eq!(reply["server_time"], "2026-11-25T12:00:00.000Z");
    let id = reply["client_id"].as_str().unwrap();
    let poll = h.poll(id.parse().unwrap());
    assert_eq!(types(&poll["messages"]), ["connection_established"]);
    assert_eq!(poll["messages"][0]["client_id"], id);
    assert_eq!(poll["dropped"], 0);
    // The queue was cleared by the poll.
    assert_eq!(
        types(&h.poll(id.parse().unwrap())["messages"]),
        Vec::<String>::new()
    );
}

#[test]
fn handshake_without_client_type_or_with_another_major_version_is_400() {
    let mut h = Harness::default();
    let (status, reply) = h.call("POST", "/ws/handshake", r#"{"protocol_version":"1.0"}"#);
    assert_eq!((status, reply["success"].clone()), (400, json!(false)));
    assert!(reply["error"].as_str().unwrap().contains("client_type"));
    let (status, reply) = h.call(
        "POST",
        "/ws/handshake",
        r#"{"client_type":"gui","protocol_version":"2.0"}"#,
    );
    assert_eq!(status, 400);
    assert!(reply["error"].as_str().unwrap().contains("2.0"));
    assert!(h.engine.sessions().is_empty());
}

#[test]
fn handshake_with_a_live_client_id_resumes_subscriptions_and_queue() {
    let mut h = Harness::default();
    let id = h.handshake("lightroom");
    h.subscribe(id, &["jobs"]);
    h.publish(job_progress(10));
    let body = format!(r#"{{"client_type":"lightroom","client_id":"{id}"}}"#);
    let (status, reply) = h.call("POST", "/ws/handshake", &body);
    assert_eq!(status, 200);
    assert_eq!(reply["client_id"], id.to_string());
    assert_eq!(reply["resumed"], true);
    assert_eq!(reply["queued"], 2);
    assert_eq!(h.poll_types(id), ["connection_established", "job_progress"]);
    assert_eq!(h.engine.session(&id).unwrap().subscriptions, ["jobs"]);
    assert_eq!(h.engine.sessions().len(), 1);
}

#[test]
fn handshake_with_an_unknown_or_evicted_client_id_gets_a_new_session() {
    let mut h = Harness::new(Config {
        stale_after: Duration::from_secs(10),
        ..Config::default()
    });
    let old = h.handshake("lightroom");
    h.advance(Duration::from_secs(11));
    assert!(h.engine.session(&old).is_none());
    for claimed in [old.to_string(), "not-a-uuid".to_string()] {
        let body = format!(r#"{{"client_type":"lightroom","client_id":"{claimed}"}}"#);
        let (status, reply) = h.call("POST", "/ws/handshake", &body);
        assert_eq!(status, 200);
        assert_eq!(reply["resumed"], false);
        assert_ne!(reply["client_id"], old.to_string());
    }
}

#[test]
fn poll_of_an_unknown_or_malformed_client_id_is_404() {
    let mut h = Harness::default();
    let (status, reply) = h.call(
        "GET",
        "/ws/poll?client_id=0b7c2f4e-8a55-4d7e-9a44-0f3e1f2d3c4b",
        "",
    );
    assert_eq!(status, 404);
    assert_eq!(reply["success"], false);
    assert!(
        reply["error"]
            .as_str()
            .unwrap()
            .contains("unknown client_id")
    );
    let (status, _) = h.call("GET", "/ws/poll?client_id=42", "");
    assert_eq!(status, 404);
}

#[test]
fn long_poll_is_answered_the_moment_a_message_is_queued() {
    let mut h = Harness::default();
    let id = h.handshake("lightroom");
    h.subscribe(id, &["jobs"]);
    h.poll(id);
    let poll = h.http("GET", &format!("/ws/poll?client_id={id}&wait=20"), "");
    assert!(
        h.take_reply(poll).is_none(),
        "nothing queued: the poll waits"
    );
    h.advance(Duration::from_secs(3));
    assert!(h.take_reply(poll).is_none());
    h.publish(job_progress(50));
    let (status, reply) = h.reply_json(poll);
    assert_eq!(status, 200);
    assert_eq!(types(&reply["messages"]), ["job_progress"]);
    assert_eq!(reply["messages"][0]["progress"], 50.0);
    assert_eq!(reply["timestamp"], "2026-11-25T12:00:03.000Z");
}

#[test]
fn long_poll_is_answered_empty_at_its_deadline_capped_by_long_poll_max() {
    let mut h = Harness::new(Config {
        long_poll_max: Duration::from_secs(5),
        ..Config::default()
    });
    let id = h.handshake("lightroom");
    h.poll(id);
    let poll = h.http("GET", &format!("/ws/poll?client_id={id}&wait=60"), "");
    let (deadline, reason) = h.engine.poll_timeout().unwrap();
    assert_eq!(deadline, h.now + Duration::from_secs(5));
    assert_eq!(reason.to_string(), format!("long-poll expiry of {id}"));
    h.advance(Duration::from_millis(4999));
    assert!(h.take_reply(poll).is_none());
    h.advance(Duration::from_millis(1));
    let (status, reply) = h.reply_json(poll);
    assert_eq!(status, 200);
    assert_eq!(reply["messages"], json!([]));
}

#[test]
fn a_second_poll_answers_the_pending_one_empty() {
    let mut h = Harness::default();
    let id = h.handshake("lightroom");
    h.subscribe(id, &["jobs"]);
    h.poll(id);
    let first = h.http("GET", &format!("/ws/poll?client_id={id}&wait=20"), "");
    let second = h.http("GET", &format!("/ws/poll?client_id={id}&wait=20"), "");
    let (status, reply) = h.reply_json(first);
    assert_eq!(status, 200);
    assert_eq!(reply["messages"], json!([]));
    assert_eq!(reply["superseded"], true);
    assert!(h.take_reply(second).is_none());
    h.publish(job_progress(1));
    assert_eq!(types(&h.reply_json(second).1["messages"]), ["job_progress"]);
}

#[test]
fn ping_register_subscribe_and_unsubscribe_reply_over_http() {
    let mut h = Harness::default();
    let id = h.handshake("unknown");
    let (_, pong) = h.send(id, json!({"type": "ping"}));
    assert_eq!(pong["success"], true);
    assert_eq!(pong["response"]["type"], "pong");
    let (_, registered) = h.send(
        id,
        json!({"type": "register", "client_type": "lightroom", "client_name": "Lightroom Classic Plugin"}),
    );
    assert_eq!(registered["response"]["type"], "registered");
    assert_eq!(registered["response"]["client_type"], "lightroom");
    let (_, subscribed) = h.send(
        id,
        json!({"type": "subscribe", "channels": ["system", "jobs", "photos"]}),
    );
    assert_eq!(subscribed["response"]["type"], "subscribed");
    assert_eq!(
        subscribed["response"]["subscriptions"],
        json!(["jobs", "photos", "system"])
    );
    let (_, unsubscribed) = h.send(
        id,
        json!({"type": "unsubscribe", "channels": ["photos", "nope"]}),
    );
    assert_eq!(unsubscribed["response"]["type"], "unsubscribed");
    assert_eq!(
        unsubscribed["response"]["subscriptions"],
        json!(["jobs", "system"])
    );
    let session = h.engine.session(&id).unwrap();
    assert_eq!(session.client_type, "lightroom");
    assert_eq!(
        session.client_name.as_deref(),
        Some("Lightroom Classic Plugin")
    );
}

#[test]
fn a_catalogue_event_from_a_client_reaches_subscribers_but_not_its_sender() {
    let mut h = Harness::default();
    let plugin = h.handshake("lightroom");
    let gui = h.handshake("gui");
    for client in [plugin, gui] {
        h.subscribe(client, &["jobs"]);
        h.poll(client);
    }
    let (status, reply) = h.send(plugin, job_progress(42));
    assert_eq!(status, 200);
    assert_eq!(reply["response"]["type"], "published");
    assert_eq!(reply["response"]["recipients"], 1);
    assert_eq!(h.poll_types(gui), ["job_progress"]);
    assert!(h.poll_types(plugin).is_empty());
}

#[test]
fn bad_client_messages_get_an_error_naming_the_problem_and_change_nothing() {
    let mut h = Harness::default();
    let id = h.handshake("lightroom");
    h.subscribe(id, &["jobs"]);
    h.poll(id);
    let before = h.engine.session(&id).unwrap();
    let cases = [
        (json!({"type": "dance"}), "unknown message type \"dance\""),
        (json!({"no": "type"}), "string field `type`"),
        (
            json!({"type": "subscribe", "channels": "jobs"}),
            "list of channel names",
        ),
        (
            json!({"type": "subscribe", "channels": ["ok", "bad name"]}),
            "bad name",
        ),
        (
            json!({"type": "job_progress", "job_id": "j", "stage": "s"}),
            "job_progress: missing field `progress`",
        ),
        (
            json!({"type": "job_progress", "job_id": "j", "stage": "s", "progress": "x"}),
            "job_progress.progress: invalid type",
        ),
        (
            json!({"type": "register", "client_id": "0b7c2f4e-8a55-4d7e-9a44-0f3e1f2d3c4b"}),
            "/ws/handshake",
        ),
    ];
    for (message, expected) in cases {
        let (status, reply) = h.send(id, message.clone());
        assert_eq!(status, 400, "{message}");
        assert_eq!(reply["success"], false);
        let error = reply["error"].as_str().unwrap();
        assert!(error.contains(expected), "{message}: {error}");
    }
    let after = h.engine.session(&id).unwrap();
    assert_eq!(before.subscriptions, after.subscriptions);
    assert_eq!(after.queued, 0);
    let (status, _) = h.call("POST", "/ws/send", r#"{"client_id":"x","message":{}}"#);
    assert_eq!(status, 404, "a malformed id names no session");
}

#[test]
fn subscriptions_per_client_are_limited() {
    let mut h = Harness::new(Config {
        max_subscriptions: 2,
        ..Config::default()
    });
    let id = h.handshake("gui");
    h.subscribe(id, &["a", "b"]);
    let (status, reply) = h.send(id, json!({"type": "subscribe", "channels": ["c"]}));
    assert_eq!(status, 400);
    assert!(reply["error"].as_str().unwrap().contains("limit is 2"));
    // Re-subscribing to what it has is not growth.
    h.subscribe(id, &["a"]);
}
