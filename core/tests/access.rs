//! Hostile pages: a browser page of another site, or one reaching the hub through a DNS name
//! it controls, gets 403 and no session; allowed origins get CORS headers.

mod support;

use livebridge_core::{Config, ConnId, HttpRequest, Input, Output, RequestId};
use proptest::prelude::*;
use support::Harness;

fn request(
    method: &str,
    target: &str,
    body: &str,
    origin: Option<&str>,
    host: &str,
) -> HttpRequest {
    let mut http = HttpRequest::new(method, target, body)
        .with_host(host)
        .with_peer("127.0.0.1");
    http.origin = origin.map(str::to_string);
    http
}

fn send(h: &mut Harness, id: u64, http: HttpRequest) -> livebridge_core::Reply {
    h.input(Input::Http {
        request: RequestId(id),
        http,
    });
    h.take_reply(RequestId(id)).expect("answered")
}

#[test]
fn a_foreign_origin_gets_403_and_no_session() {
    let mut h = Harness::default();
    let handshake = request(
        "POST",
        "/ws/handshake",
        r#"{"client_type":"web"}"#,
        Some("https://evil.example"),
        "localhost:5100",
    );
    let reply = send(&mut h, 1, handshake);
    assert_eq!(reply.status, 403);
    assert!(reply.body.contains("evil.example"));
    assert!(
        reply
            .headers
            .iter()
            .all(|(name, _)| !name.starts_with("Access-Control"))
    );
    assert!(h.engine.sessions().is_empty());
    let status = request(
        "GET",
        "/ws/status",
        "",
        Some("https://evil.example"),
        "localhost",
    );
    assert_eq!(send(&mut h, 2, status).status, 403);
}

#[test]
fn a_foreign_origin_cannot_open_a_websocket() {
    let mut h = Harness::default();
    let upgrade = request(
        "GET",
        "/ws",
        "",
        Some("https://evil.example"),
        "localhost:5100",
    );
    assert_eq!(
        h.open_websocket(ConnId(1), upgrade).unwrap_err().status,
        403
    );
    assert!(h.engine.sessions().is_empty());
}

#[test]
fn dns_rebinding_hosts_get_403_and_loopback_names_pass() {
    let mut h = Harness::default();
    let rebound = request(
        "POST",
        "/ws/handshake",
        r#"{"client_type":"web"}"#,
        None,
        "attacker.example:5100",
    );
    assert_eq!(send(&mut h, 1, rebound).status, 403);
    let upgrade = request("GET", "/ws", "", None, "attacker.example");
    assert_eq!(
        h.open_websocket(ConnId(1), upgrade).unwrap_err().status,
        403
    );
    for (id, host) in [
        (2, "localhost:5100"),
        (3, "127.0.0.1:5100"),
        (4, "[::1]:5100"),
    ] {
        let native = request(
            "POST",
            "/ws/handshake",
            r#"{"client_type":"lightroom"}"#,
            None,
            host,
        );
        assert_eq!(send(&mut h, id, native).status, 200, "{host}");
    }
}

#[test]
fn configured_origins_and_hosts_are_allowed_with_cors_headers() {
    let mut h = Harness::new(Config {
        allowed_origins: vec!["http://localhost:3000".to_string()],
        allowed_hosts: vec!["studio.local".to_string()],
        ..Config::default()
    });
    let handshake = request(
        "POST",
        "/ws/handshake",
        r#"{"client_type":"web"}"#,
        Some("http://localhost:3000"),
        "studio.local:5100",
    );
    let reply = send(&mut h, 1, handshake);
    assert_eq!(reply.status, 200);
    assert!(reply.headers.contains(&(
        "Access-Control-Allow-Origin".to_string(),
        "http://localhost:3000".to_string()
    )));
    let preflight = request(
        "OPTIONS",
        "/api/events",
        "",
        Some("http://localhost:3000"),
        "localhost",
    );
    let reply = send(&mut h, 2, preflight);
    assert_eq!(reply.status, 204);
    assert!(
        reply
            .headers
            .iter()
            .any(|(n, v)| n == "Access-Control-Allow-Methods" && v.contains("POST"))
    );
    let upgrade = request("GET", "/ws", "", Some("http://localhost:3000"), "localhost");
    h.open_websocket(ConnId(1), upgrade)
        .expect("upgrade accepted");
    let other = request(
        "OPTIONS",
        "/api/events",
        "",
        Some("http://localhost:3001"),
        "localhost",
    );
    assert_eq!(send(&mut h, 3, other).status, 403);
}

#[test]
fn a_deferred_long_poll_reply_keeps_its_cors_headers() {
    let mut h = Harness::new(Config {
        allowed_origins: vec!["http://localhost:3000".to_string()],
        ..Config::default()
    });
    let id = h.handshake("web");
    h.poll(id);
    let poll = request(
        "GET",
        &format!("/ws/poll?client_id={id}&wait=5"),
        "",
        Some("http://localhost:3000"),
        "localhost",
    );
    h.input(Input::Http {
        request: RequestId(77),
        http: poll,
    });
    assert!(h.take_reply(RequestId(77)).is_none());
    h.advance(std::time::Duration::from_secs(5));
    let reply = h.take_reply(RequestId(77)).unwrap();
    assert!(
        reply
            .headers
            .iter()
            .any(|(n, _)| n == "Access-Control-Allow-Origin")
    );
}

#[test]
fn a_client_sending_too_fast_is_refused_until_its_budget_refills() {
    let mut h = Harness::new(Config {
        client_message_rate: livebridge_core::RateLimit {
            per_second: 10.0,
            burst: 3,
        },
        ..Config::default()
    });
    let id = h.handshake("lightroom");
    let statuses: Vec<u16> = (0..4)
        .map(|_| h.send(id, serde_json::json!({"type": "ping"})).0)
        .collect();
    assert_eq!(statuses, [200, 200, 200, 429]);
    h.advance(std::time::Duration::from_millis(100));
    assert_eq!(h.send(id, serde_json::json!({"type": "ping"})).0, 200);
    let (conn, _) = h.ws_open();
    for _ in 0..4 {
        h.ws_send(conn, serde_json::json!({"type": "ping"}));
    }
    let frames = h.take_frames(conn);
    let types: Vec<_> = frames
        .iter()
        .map(|f| f["type"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(types, ["pong", "pong", "pong", "error"]);
    assert!(
        frames[3]["error"]
            .as_str()
            .unwrap()
            .starts_with("rate limit")
    );
}

#[test]
fn handshakes_from_one_address_are_limited_and_others_are_not() {
    let mut h = Harness::new(Config {
        handshake_rate: livebridge_core::RateLimit {
            per_second: 1.0,
            burst: 2,
        },
        ..Config::default()
    });
    let from = |peer: &str| {
        HttpRequest::new("POST", "/ws/handshake", r#"{"client_type":"x"}"#)
            .with_host("localhost:5100")
            .with_peer(peer)
    };
    let statuses: Vec<u16> = (0..3)
        .map(|i| send(&mut h, 10 + i, from("10.0.0.1")).status)
        .collect();
    assert_eq!(statuses, [200, 200, 429]);
    assert_eq!(send(&mut h, 20, from("10.0.0.2")).status, 200);
    let upgrade = HttpRequest::new("GET", "/ws", "")
        .with_host("localhost:5100")
        .with_peer("10.0.0.1");
    assert_eq!(
        h.open_websocket(ConnId(5), upgrade).unwrap_err().status,
        429
    );
    h.advance(std::time::Duration::from_secs(1));
    assert_eq!(send(&mut h, 30, from("10.0.0.1")).status, 200);
}

#[test]
fn a_page_of_the_hubs_own_origin_on_loopback_may_use_it_and_other_ports_may_not() {
    let mut h = Harness::default();
    let own = request(
        "POST",
        "/ws/handshake",
        r#"{"client_type":"web"}"#,
        Some("http://localhost:5100"),
        "localhost:5100",
    );
    let reply = send(&mut h, 1, own);
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert!(reply.headers.contains(&(
        "Access-Control-Allow-Origin".to_string(),
        "http://localhost:5100".to_string()
    )));
    h.open_websocket(
        ConnId(1),
        request(
            "GET",
            "/ws",
            "",
            Some("http://127.0.0.1:5100"),
            "127.0.0.1:5100",
        ),
    )
    .expect("upgrade accepted");
    assert!(matches!(h.log.last(), Some((_, Output::WsFrame { .. }))));
    let dev_server = request(
        "POST",
        "/ws/handshake",
        r#"{"client_type":"web"}"#,
        Some("http://localhost:3000"),
        "localhost:5100",
    );
    let refused = send(&mut h, 2, dev_server);
    assert_eq!(refused.status, 403);
    assert!(
        refused.body.contains("http://localhost:3000") && refused.body.contains("allowed_origins"),
        "the refusal names the origin and the setting: {}",
        refused.body
    );
}

/// Every API path and method an embedder might send, for the fail-closed rules.
const TARGETS: &[(&str, &str, &str)] = &[
    ("POST", "/ws/handshake", r#"{"client_type":"x"}"#),
    ("GET", "/ws/status", ""),
    (
        "GET",
        "/ws/poll?client_id=0b7c2f4e-8a55-4d7e-9a44-0f3e1f2d3c4b",
        "",
    ),
    ("POST", "/ws/send", "{}"),
    (
        "POST",
        "/api/events",
        r#"{"type":"system_status","status":"ok"}"#,
    ),
    ("GET", "/ws/clients", ""),
    ("GET", "/metrics", ""),
    ("GET", "/", ""),
    ("OPTIONS", "/ws/handshake", ""),
];

proptest! {
    /// A request without Host is refused with 400 whatever else it carries, even when every
    /// host name is allowed: leaving the field out cannot switch the check off.
    #[test]
    fn any_request_without_host_is_refused(
        target in 0..TARGETS.len(),
        origin in proptest::option::of(prop_oneof![
            Just("http://localhost:5100".to_string()),
            Just("https://evil.example".to_string()),
        ]),
        allow_all in any::<bool>(),
        peer in proptest::option::of("10\\.0\\.0\\.[0-9]"),
    ) {
        let mut h = Harness::new(Config {
            allowed_hosts: if allow_all { vec!["*".to_string()] } else { Vec::new() },
            allowed_origins: if allow_all { vec!["*".to_string()] } else { Vec::new() },
            ..Config::default()
        });
        let (method, path, body) = TARGETS[target];
        let mut http = HttpRequest::new(method, path, body);
        http.origin = origin;
        http.peer = peer;
        let reply = send(&mut h, 1, http);
        prop_assert_eq!(reply.status, 400, "{}", reply.body);
        prop_assert!(reply.body.contains("no Host header"), "{}", reply.body);
        prop_assert!(h.engine.sessions().is_empty());
    }
}

#[test]
fn an_upgrade_without_host_is_refused() {
    let mut h = Harness::default();
    assert_eq!(
        h.open_websocket(
            ConnId(1),
            HttpRequest::new("GET", "/ws", "").with_peer("127.0.0.1")
        )
        .unwrap_err()
        .status,
        400
    );
    assert!(h.engine.sessions().is_empty());
}

#[test]
fn requests_without_a_peer_address_share_one_handshake_budget() {
    let mut h = Harness::new(Config {
        handshake_rate: livebridge_core::RateLimit {
            per_second: 1.0,
            burst: 2,
        },
        ..Config::default()
    });
    let anonymous = || {
        HttpRequest::new("POST", "/ws/handshake", r#"{"client_type":"x"}"#)
            .with_host("localhost:5100")
    };
    let statuses: Vec<u16> = (0..3)
        .map(|i| send(&mut h, 10 + i, anonymous()).status)
        .collect();
    assert_eq!(statuses, [200, 200, 429]);
    let refused = send(&mut h, 20, anonymous());
    assert!(refused.body.contains("unknown address"), "{}", refused.body);
    // An upgrade without an address spends the same budget.
    assert_eq!(
        h.open_websocket(
            ConnId(5),
            HttpRequest::new("GET", "/ws", "").with_host("localhost:5100")
        )
        .unwrap_err()
        .status,
        429
    );
    // Clients with an address are not held back by the anonymous ones.
    let known = HttpRequest::new("POST", "/ws/handshake", r#"{"client_type":"x"}"#)
        .with_host("localhost:5100")
        .with_peer("10.0.0.1");
    assert_eq!(send(&mut h, 30, known).status, 200);
}
