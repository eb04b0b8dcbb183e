//! A client id that is present but malformed names no session: every route answers it exactly
//! as it answers a well-formed id whose session ended (404 on HTTP, a new session on
//! WebSocket), and a missing id stays a 400. Resumes that cannot resume say so, with a reason.

mod support;

use livebridge_core::{ClientId, ConnId, HttpRequest};
use serde_json::json;
use support::Harness;

const MALFORMED: [&str; 4] = ["nope", "42", "0b7c2f4e-8a55-4d7e-9a44", "%00"];
/// A well-formed UUID v4 that no session has.
const ENDED: &str = "0b7c2f4e-8a55-4d7e-9a44-0f3e1f2d3c4b";

/// (method, target, body) of every HTTP route that takes a client id, for `id`.
fn routes_naming(id: &str) -> Vec<(&'static str, String, String)> {
    let quoted = serde_json::to_string(id).unwrap();
    vec![
        (
            "GET",
            format!("/ws/poll?client_id={id}&wait=1"),
            String::new(),
        ),
        (
            "POST",
            "/ws/send".to_string(),
            format!(r#"{{"client_id": {quoted}, "message": {{"type": "ping"}}}}"#),
        ),
        (
            "POST",
            "/ws/disconnect".to_string(),
            format!(r#"{{"client_id": {quoted}}}"#),
        ),
        (
            "POST",
            format!("/ws/send/{id}"),
            r#"{"type": "note", "text": "hi"}"#.to_string(),
        ),
        ("POST", format!("/websocket/disconnect/{id}"), String::new()),
        (
            "POST",
            format!("/api/websocket/disconnect/{id}"),
            String::new(),
        ),
    ]
}

#[test]
fn every_route_answers_a_malformed_client_id_like_an_unknown_one_with_404() {
    let mut h = Harness::default();
    for (method, target, body) in routes_naming(ENDED) {
        let (status, reply) = h.call(method, &target, &body);
        assert_eq!(status, 404, "{method} {target}: {reply}");
        assert_eq!(reply["success"], false);
    }
    for id in MALFORMED {
        for (method, target, body) in routes_naming(id) {
            let (status, reply) = h.call(method, &target, &body);
            assert_eq!(status, 404, "{method} {target}: {reply}");
            assert_eq!(reply["success"], false, "{reply}");
            let error = reply["error"].as_str().unwrap();
            assert!(error.contains("unknown client_id"), "{error}");
            assert!(error.contains("handshake again"), "{error}");
        }
    }
}

#[test]
fn a_missing_client_id_stays_a_400() {
    let mut h = Harness::default();
    for (method, target, body) in [
        ("GET", "/ws/poll", ""),
        ("GET", "/ws/poll?wait=1", ""),
        ("POST", "/ws/send", r#"{"message": {"type": "ping"}}"#),
        ("POST", "/ws/disconnect", "{}"),
    ] {
        let (status, reply) = h.call(method, target, body);
        assert_eq!(status, 400, "{method} {target}: {reply}");
        assert!(reply["error"].as_str().unwrap().contains("client_id"));
    }
}

#[test]
fn a_malformed_id_to_an_admin_route_is_refused_for_its_missing_token_first() {
    let mut h = Harness::new(livebridge_core::Config {
        admin_token: Some("secret".to_string()),
        ..Default::default()
    });
    let (status, _) = h.call("POST", "/websocket/disconnect/nope", "");
    assert_eq!(status, 401);
    let (status, _) = h.call("POST", "/ws/send/nope", "{not json");
    assert_eq!(
        status, 401,
        "the token is checked before the body is decoded"
    );
}

#[test]
fn a_handshake_that_cannot_resume_says_why() {
    let mut h = Harness::default();
    for (requested, because) in [("nope", "not a client id"), (ENDED, "no session")] {
        let body = json!({"client_type": "lightroom", "client_id": requested}).to_string();
        let (status, reply) = h.call("POST", "/ws/handshake", &body);
        assert_eq!(status, 200);
        assert_eq!(reply["resumed"], false);
        assert_ne!(reply["client_id"], requested);
        let reason = reply["reason"].as_str().unwrap();
        assert!(reason.contains(because), "{reason}");
    }
    let (_, fresh) = h.call("POST", "/ws/handshake", r#"{"client_type": "lightroom"}"#);
    assert!(
        fresh.get("reason").is_none(),
        "nothing was refused: {fresh}"
    );
}

fn open_at(h: &mut Harness, conn: u64, target: &str) -> serde_json::Value {
    let conn = ConnId(conn);
    h.open_websocket(
        conn,
        HttpRequest::new("GET", target, "")
            .with_host("localhost:5100")
            .with_peer("127.0.0.1"),
    )
    .expect("upgrade accepted");
    let frames = h.take_frames(conn);
    assert_eq!(frames.len(), 1, "{frames:?}");
    frames[0].clone()
}

#[test]
fn a_websocket_opened_with_an_id_it_cannot_resume_gets_a_new_session_and_is_told() {
    let mut h = Harness::default();
    for (conn, requested) in [(1, "nope"), (2, ENDED), (3, "%20")] {
        let welcome = open_at(&mut h, conn, &format!("/ws?client_id={requested}"));
        assert_eq!(welcome["type"], "connection_established");
        assert_eq!(welcome["resumed"], false, "{welcome}");
        assert!(welcome["reason"].as_str().unwrap().contains("new session"));
        let id: ClientId = welcome["client_id"].as_str().unwrap().parse().unwrap();
        assert!(h.engine.session(&id).is_some());
        assert_ne!(id.to_string(), requested);
    }
    let plain = open_at(&mut h, 9, "/ws");
    assert!(plain.get("resumed").is_none(), "no resume asked: {plain}");
}

#[test]
fn register_with_an_id_it_cannot_resume_keeps_the_fresh_session_and_says_why() {
    let mut h = Harness::default();
    let (conn, own) = h.ws_open();
    for requested in ["nope", ENDED] {
        h.ws_send(conn, json!({"type": "register", "client_id": requested}));
        let frames = h.take_frames(conn);
        assert_eq!(frames[0]["type"], "registered");
        assert_eq!(frames[0]["resumed"], false);
        assert_eq!(frames[0]["client_id"], own.to_string());
        assert!(
            frames[0]["reason"]
                .as_str()
                .unwrap()
                .contains("new session")
        );
    }
    h.ws_send(
        conn,
        json!({"type": "register", "client_id": own.to_string()}),
    );
    let frames = h.take_frames(conn);
    assert!(
        frames[0].get("reason").is_none(),
        "its own id: {}",
        frames[0]
    );
}
