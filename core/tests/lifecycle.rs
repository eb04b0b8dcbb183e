//! Rule 7 and the WebSocket life cycle: stale eviction at the exact deadline, pings, cleanup,
//! disconnect, close codes, resume over WebSocket, shutdown.

mod support;

use livebridge_core::{CloseReason, Config, Input, Output, SessionEvent, TimerKind, close_code};
use serde_json::{Value, json};
use std::time::Duration;
use support::{Harness, job_progress, types};

fn short_stale() -> Config {
    Config {
        stale_after: Duration::from_secs(60),
        ping_interval: Duration::from_secs(20),
        ..Config::default()
    }
}

#[test]
fn an_idle_session_is_evicted_at_exactly_stale_after() {
    let mut h = Harness::new(short_stale());
    let id = h.handshake("lightroom");
    h.advance(Duration::from_secs(30));
    h.poll(id); // activity restarts the countdown
    let (deadline, reason) = h.engine.poll_timeout().unwrap();
    assert_eq!(deadline, h.now + Duration::from_secs(60));
    assert_eq!(reason.kind, TimerKind::StaleEviction);
    h.advance(Duration::from_micros(59_999_999));
    assert!(
        h.engine.session(&id).is_some(),
        "1 µs before the deadline it lives"
    );
    h.advance(Duration::from_micros(1));
    assert!(
        h.engine.session(&id).is_none(),
        "at the deadline it is gone"
    );
    assert!(h.log.iter().any(|(_, o)| matches!(o,
        Output::Session(SessionEvent::Closed { client_id, reason: CloseReason::Stale, .. }) if *client_id == id)));
    let (status, _) = h.call("GET", &format!("/ws/poll?client_id={id}"), "");
    assert_eq!(status, 404);
}

#[test]
fn a_pending_long_poll_holds_off_eviction_until_it_ends() {
    let mut h = Harness::new(Config {
        stale_after: Duration::from_secs(10),
        ..Config::default()
    });
    let id = h.handshake("lightroom");
    h.poll(id);
    let poll = h.http("GET", &format!("/ws/poll?client_id={id}&wait=25"), "");
    h.advance(Duration::from_secs(25));
    assert_eq!(h.reply_json(poll).0, 200);
    h.advance(Duration::from_secs(9));
    assert!(h.engine.session(&id).is_some());
    h.advance(Duration::from_secs(1));
    assert!(h.engine.session(&id).is_none());
}

#[test]
fn quiet_websockets_are_pinged_and_a_pong_keeps_them_alive() {
    let mut h = Harness::new(short_stale());
    let (conn, id) = h.ws_open();
    h.advance(Duration::from_secs(20));
    assert_eq!(h.pings.get(&conn), Some(&1));
    h.input(Input::WsPong { conn });
    h.advance(Duration::from_secs(59));
    assert!(h.engine.session(&id).is_some());
    assert_eq!(
        h.pings.get(&conn),
        Some(&3),
        "pinged every 20 s while quiet"
    );
}

#[test]
fn a_websocket_that_never_answers_is_evicted_and_closed() {
    let mut h = Harness::new(short_stale());
    let (conn, id) = h.ws_open();
    h.advance(Duration::from_secs(60));
    assert!(h.engine.session(&id).is_none());
    assert_eq!(h.closed[&conn].0, close_code::SESSION_ENDED);
}

#[test]
fn cleanup_evicts_detached_sessions_idle_that_long_and_reports_the_count() {
    let mut h = Harness::default();
    let old = h.handshake("lightroom");
    h.advance(Duration::from_secs(40));
    let recent = h.handshake("lightroom");
    let (_, ws) = h.ws_open();
    h.advance(Duration::from_secs(20));
    let (status, reply) = h.call("POST", "/ws/cleanup", r#"{"timeout_minutes": 0.5}"#);
    assert_eq!(status, 200);
    assert_eq!(reply["removed"], 1);
    assert!(h.engine.session(&old).is_none());
    assert!(h.engine.session(&recent).is_some());
    assert!(
        h.engine.session(&ws).is_some(),
        "an open WebSocket is not idle"
    );
    let (_, reply) = h.call("POST", "/ws/cleanup", "");
    assert_eq!(
        reply["removed"], 0,
        "without a timeout, stale_after is used"
    );
    let (status, _) = h.call("POST", "/ws/cleanup", r#"{"timeout_minutes": "soon"}"#);
    assert_eq!(status, 400);
}

#[test]
fn disconnect_removes_the_session_at_once_and_answers_its_pending_poll() {
    let mut h = Harness::default();
    let id = h.handshake("lightroom");
    h.poll(id);
    let poll = h.http("GET", &format!("/ws/poll?client_id={id}&wait=30"), "");
    let body = format!(r#"{{"client_id":"{id}"}}"#);
    let (status, reply) = h.call("POST", "/ws/disconnect", &body);
    assert_eq!((status, reply["success"].clone()), (200, json!(true)));
    assert_eq!(h.reply_json(poll).0, 410);
    assert!(h.engine.session(&id).is_none());
    assert_eq!(h.call("POST", "/ws/disconnect", &body).0, 404);
}

#[test]
fn operator_disconnect_closes_the_websocket() {
    let mut h = Harness::default();
    let (conn, id) = h.ws_open();
    let (status, _) = h.call("POST", &format!("/websocket/disconnect/{id}"), "");
    assert_eq!(status, 200);
    assert_eq!(h.closed[&conn].0, close_code::SESSION_ENDED);
    assert!(h.engine.session(&id).is_none());
    let (status, _) = h.call("POST", &format!("/api/websocket/disconnect/{id}"), "");
    assert_eq!(status, 404);
}

#[test]
fn a_normal_close_ends_the_session_any_other_keeps_it_resumable() {
    let mut h = Harness::default();
    let (conn, id) = h.ws_open();
    h.client_closes(conn, Some(1000));
    assert!(h.engine.session(&id).is_none());
    let (conn, id) = h.ws_open();
    h.client_closes(conn, Some(1001));
    assert!(h.engine.session(&id).is_some());
    let (conn, id) = h.ws_open();
    h.client_closes(conn, None);
    assert!(h.engine.session(&id).is_some());
}

#[test]
fn a_websocket_resumes_a_session_with_its_backlog_and_subscriptions() {
    let mut h = Harness::default();
    let (conn, id) = h.ws_open();
    h.ws_send(conn, json!({"type": "subscribe", "channels": ["jobs"]}));
    h.take_frames(conn);
    h.client_closes(conn, None);
    h.publish(job_progress(1));
    h.publish(job_progress(2));
    let (conn2, fresh) = h.ws_open();
    h.ws_send(conn2, json!({"type": "subscribe", "channels": ["system"]}));
    h.ws_send(
        conn2,
        json!({"type": "register", "client_type": "web", "client_id": id.to_string()}),
    );
    let frames = h.take_frames(conn2);
    assert_eq!(
        types(&Value::Array(frames.clone())),
        ["subscribed", "registered", "job_progress", "job_progress"]
    );
    assert_eq!(frames[1]["client_id"], id.to_string());
    assert_eq!(frames[1]["resumed"], true);
    assert_eq!(frames[1]["subscriptions"], json!(["jobs", "system"]));
    assert!(
        h.engine.session(&fresh).is_none(),
        "the fresh session merged away"
    );
    assert_eq!(h.engine.sessions().len(), 1);
    h.publish(job_progress(3));
    assert_eq!(h.frame_types(conn2), ["job_progress"]);
}

#[test]
fn resuming_elsewhere_takes_the_session_over_from_the_old_transport() {
    let mut h = Harness::default();
    let (conn, id) = h.ws_open();
    let body = format!(r#"{{"client_type":"lightroom","client_id":"{id}"}}"#);
    let (_, reply) = h.call("POST", "/ws/handshake", &body);
    assert_eq!(reply["resumed"], true);
    assert_eq!(h.closed[&conn].0, close_code::SESSION_TAKEN_OVER);
    // The old socket's late close does not touch the session that moved on.
    h.input(Input::WsClosed {
        conn,
        code: Some(1000),
    });
    assert!(h.engine.session(&id).is_some());
    // And a WebSocket can take it back from a pending poll, which is answered empty.
    h.poll(id);
    let poll = h.http("GET", &format!("/ws/poll?client_id={id}&wait=30"), "");
    let (conn2, _) = h.ws_open();
    h.ws_send(
        conn2,
        json!({"type": "register", "client_id": id.to_string()}),
    );
    assert_eq!(h.reply_json(poll).1["superseded"], true);
    assert_eq!(h.frame_types(conn2), ["registered"]);
}

/// A polling session subscribed to `jobs` whose queue (3) overflowed: the welcome and probes
/// 1–3 were dropped (4, unreported), probes 4–6 wait. A WebSocket whose client stopped reading
/// then resumes it by `register`: `registered` and the `messages_dropped` notice fill its write
/// window and are never written. Returns the harness, the session and the socket.
fn a_drop_notice_stuck_in_a_stalled_socket_that_resumed_a_polling_session()
-> (Harness, livebridge_core::ClientId, livebridge_core::ConnId) {
    let mut h = Harness::new(Config {
        queue_limit: 3,
        ws_write_window: 2,
        stale_after: Duration::from_secs(10),
        ..Config::default()
    });
    let id = h.handshake("lightroom");
    h.subscribe(id, &["jobs"]);
    for seq in 1..=6 {
        let body = json!({"message": {"type": "probe", "seq": seq}, "channel": "jobs"});
        let (status, _) = h.call("POST", "/ws/broadcast", &body.to_string());
        assert_eq!(status, 200);
    }
    let session = h.engine.session(&id).unwrap();
    assert_eq!((session.queued, session.unreported_drops), (3, 4));
    let (conn, _) = h.ws_open();
    h.take_received(conn);
    h.stalled.insert(conn);
    h.ws_send(
        conn,
        json!({"type": "register", "client_id": id.to_string()}),
    );
    let frames = h.take_frames(conn);
    assert_eq!(
        types(&Value::Array(frames.clone())),
        ["registered", "messages_dropped"]
    );
    assert_eq!(frames[1]["dropped"], 4);
    assert!(h.take_received(conn).is_empty(), "nothing written");
    let session = h.engine.session(&id).unwrap();
    assert_eq!((session.queued, session.unreported_drops), (3, 0));
    (h, id, conn)
}

#[test]
fn drops_reported_in_a_notice_a_stalled_socket_never_wrote_are_logged_when_the_session_ends() {
    let (mut h, id, conn) =
        a_drop_notice_stuck_in_a_stalled_socket_that_resumed_a_polling_session();
    // Nobody reads: the session goes stale, its socket ends with both frames unwritten.
    h.advance(Duration::from_secs(10));
    assert!(h.engine.session(&id).is_none());
    assert!(h.take_received(conn).is_empty());
    let events: Vec<&SessionEvent> = h
        .log
        .iter()
        .filter_map(|(_, output)| match output {
            Output::Session(
                event @ (SessionEvent::Closed { client_id, .. }
                | SessionEvent::UnwrittenAfterEnd { client_id, .. }),
            ) if *client_id == id => Some(event),
            _ => None,
        })
        .collect();
    // Probes 4–6 were queued; `registered` was never written; the 4 drops the notice reported
    // never reached the client: 1–3 and the welcome are all accounted for.
    assert_eq!(
        events,
        [
            &SessionEvent::Closed {
                client_id: id,
                reason: CloseReason::Stale,
                undelivered: 3,
                unreported_drops: 0,
            },
            &SessionEvent::UnwrittenAfterEnd {
                client_id: id,
                frames: 1,
                unreported_drops: 4,
            },
        ]
    );
}

#[test]
fn drops_reported_in_a_notice_a_dropped_socket_never_wrote_are_reported_again_on_resume() {
    let (mut h, id, conn) =
        a_drop_notice_stuck_in_a_stalled_socket_that_resumed_a_polling_session();
    h.client_closes(conn, None);
    // The 4 drops of the lost notice, and the lost `registered`; the notice itself is no
    // message.
    let session = h.engine.session(&id).expect("resumable");
    assert_eq!((session.queued, session.unreported_drops), (3, 5));
    let conn2 = livebridge_core::ConnId(50);
    h.open_websocket(conn2, Harness::upgrade(&format!("/ws?client_id={id}")))
        .expect("upgrade accepted");
    let frames: Vec<Value> = h
        .take_received(conn2)
        .iter()
        .map(|f| support::json(f))
        .collect();
    assert_eq!(
        types(&Value::Array(frames.clone())),
        [
            "connection_established",
            "messages_dropped",
            "probe",
            "probe",
            "probe"
        ]
    );
    assert_eq!(frames[1]["dropped"], 5);
    let seqs: Vec<_> = frames[2..]
        .iter()
        .map(|f| f["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, [4, 5, 6]);
}

#[test]
fn a_websocket_register_with_an_unknown_client_id_keeps_the_fresh_session() {
    let mut h = Harness::default();
    let (conn, id) = h.ws_open();
    h.ws_send(
        conn,
        json!({"type": "register", "client_id": "0b7c2f4e-8a55-4d7e-9a44-0f3e1f2d3c4b"}),
    );
    let frames = h.take_frames(conn);
    assert_eq!(frames[0]["resumed"], false);
    assert_eq!(frames[0]["client_id"], id.to_string());
}

#[test]
fn bad_websocket_frames_get_error_frames_and_the_connection_lives_on() {
    let mut h = Harness::default();
    let (conn, id) = h.ws_open();
    h.input(Input::WsText {
        conn,
        text: "{nope".to_string(),
    });
    h.input(Input::WsBinary { conn, len: 4 });
    h.ws_send(conn, json!({"type": "job_progress", "job_id": 1}));
    h.ws_send(conn, json!(["not", "an", "object"]));
    let frames = h.take_frames(conn);
    assert_eq!(
        types(&Value::Array(frames.clone())),
        ["error", "error", "error", "error"]
    );
    assert!(
        frames[0]["error"]
            .as_str()
            .unwrap()
            .starts_with("invalid JSON")
    );
    assert!(frames[1]["error"].as_str().unwrap().contains("binary"));
    assert!(
        frames[2]["error"]
            .as_str()
            .unwrap()
            .contains("job_progress: missing field `stage`")
    );
    h.ws_send(conn, json!({"type": "ping"}));
    assert_eq!(h.frame_types(conn), ["pong"]);
    assert!(h.closed.is_empty());
    assert!(h.engine.session(&id).is_some());
}

#[test]
fn websocket_upgrades_elsewhere_than_ws_are_refused() {
    let mut h = Harness::default();
    assert_eq!(
        h.open_websocket(
            livebridge_core::ConnId(99),
            livebridge_core::HttpRequest::new("GET", "/other", "")
                .with_host("localhost:5100")
                .with_peer("127.0.0.1")
        )
        .unwrap_err()
        .status,
        404
    );
    assert!(h.engine.sessions().is_empty());
}

#[test]
fn shutdown_closes_websockets_with_1001_answers_polls_and_refuses_new_requests() {
    let mut h = Harness::default();
    let (conn, _) = h.ws_open();
    let id = h.handshake("lightroom");
    h.subscribe(id, &["jobs"]);
    h.poll(id);
    let poll = h.http("GET", &format!("/ws/poll?client_id={id}&wait=30"), "");
    h.input(Input::Shutdown);
    assert_eq!(
        h.closed[&conn],
        (close_code::GOING_AWAY, "server shutting down".to_string())
    );
    assert_eq!(h.reply_json(poll).0, 200);
    assert_eq!(h.call("GET", "/ws/status", "").0, 503);
    assert!(
        h.engine.poll_timeout().is_none()
            || h.engine.poll_timeout().unwrap().1.kind == TimerKind::StaleEviction
    );
}

#[test]
fn the_client_limit_refuses_handshakes_and_upgrades_with_503() {
    let mut h = Harness::new(Config {
        max_clients: 1,
        ..Config::default()
    });
    h.handshake("gui");
    assert_eq!(
        h.call("POST", "/ws/handshake", r#"{"client_type":"gui"}"#)
            .0,
        503
    );
    assert_eq!(
        h.open_websocket(
            livebridge_core::ConnId(7),
            livebridge_core::HttpRequest::new("GET", "/ws", "")
                .with_host("localhost:5100")
                .with_peer("127.0.0.1")
        )
        .unwrap_err()
        .status,
        503
    );
}

#[test]
fn a_websocket_resumes_at_open_with_client_id_in_the_url_even_at_the_client_limit() {
    let mut h = Harness::new(Config {
        max_clients: 1,
        ..Config::default()
    });
    let (conn, id) = h.ws_open();
    h.ws_send(conn, json!({"type": "subscribe", "channels": ["jobs"]}));
    h.take_frames(conn);
    h.client_closes(conn, None);
    h.publish(job_progress(9));
    // A fresh socket is refused at the limit...
    assert_eq!(
        h.open_websocket(
            livebridge_core::ConnId(50),
            livebridge_core::HttpRequest::new("GET", "/ws", "")
                .with_host("localhost:5100")
                .with_peer("127.0.0.1")
        )
        .unwrap_err()
        .status,
        503
    );
    // ...but the owner of the session comes back with its id.
    let conn2 = livebridge_core::ConnId(51);
    h.open_websocket(
        conn2,
        livebridge_core::HttpRequest::new("GET", &format!("/ws?client_id={id}"), "")
            .with_host("localhost:5100")
            .with_peer("127.0.0.1"),
    )
    .expect("upgrade accepted");
    let frames = h.take_frames(conn2);
    assert_eq!(
        types(&Value::Array(frames.clone())),
        ["connection_established", "job_progress"]
    );
    assert_eq!(frames[0]["client_id"], id.to_string());
    assert_eq!(frames[0]["resumed"], true);
    assert_eq!(frames[0]["subscriptions"], json!(["jobs"]));
    assert_eq!(h.engine.sessions().len(), 1);
}

#[test]
fn a_message_over_the_frame_limit_closes_with_1009_and_keeps_the_session() {
    let mut h = Harness::new(Config {
        max_frame_bytes: 64,
        ..Config::default()
    });
    let (conn, id) = h.ws_open();
    h.ws_send(conn, json!({"type": "ping", "pad": "x".repeat(100)}));
    assert_eq!(h.closed[&conn].0, close_code::MESSAGE_TOO_BIG);
    assert!(
        h.engine.session(&id).is_some(),
        "resumable, like any dropped socket"
    );
}

#[test]
fn the_upgrade_decision_is_returned_at_once_and_a_refusal_leaves_nothing_behind() {
    use livebridge_core::{ConnId, Engine, HttpRequest, Output, SeededIds, Time};
    let mut engine = Engine::new(
        livebridge_core::Config::default(),
        SeededIds::new(3),
        Time::ZERO,
        0,
    );
    let upgrade = |target: &str| {
        HttpRequest::new("GET", target, "")
            .with_host("localhost:5100")
            .with_peer("127.0.0.1")
    };
    let refused = engine
        .open_websocket(Time::ZERO, ConnId(1), &upgrade("/elsewhere"))
        .unwrap_err();
    assert_eq!(refused.status, 404);
    assert_eq!(engine.poll_output(), None, "a refusal has no outputs");
    assert!(engine.sessions().is_empty());
    engine
        .open_websocket(Time::ZERO, ConnId(2), &upgrade("/ws"))
        .expect("accepted");
    let outputs: Vec<Output> = std::iter::from_fn(|| engine.poll_output()).collect();
    assert!(
        outputs
            .iter()
            .any(|o| matches!(o, Output::WsFrame { conn, frame }
            if *conn == ConnId(2) && frame.contains("connection_established"))),
        "{outputs:?}"
    );
    // The same connection id cannot be opened twice.
    let again = engine
        .open_websocket(Time::ZERO, ConnId(2), &upgrade("/ws"))
        .unwrap_err();
    assert_eq!(again.status, 409);
}
