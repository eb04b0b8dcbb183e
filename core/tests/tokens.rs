//! Client tokens (HS256) at handshake, WebSocket open, subscribe and resume; the session
//! ends when its token expires; the admin token guards operators' endpoints.

mod support;

use livebridge_core::{
    ClientClaims, Config, ConnId, HttpRequest, Input, RequestId, close_code, sign_client_token,
};
use serde_json::json;
use std::time::Duration;
use support::{ANCHOR_UNIX_MILLIS, Harness};

const SECRET: &str = "test secret";

fn config() -> Config {
    Config {
        client_token_secret: Some(SECRET.to_string()),
        admin_token: Some("admin!".to_string()),
        ..Config::default()
    }
}

/// A token for `sub`, valid for `seconds` from the harness's start.
fn token(sub: &str, seconds: u64, channels: Option<&[&str]>, client_type: Option<&str>) -> String {
    let claims = ClientClaims {
        sub: sub.to_string(),
        exp: ANCHOR_UNIX_MILLIS / 1000 + seconds,
        channels: channels.map(|c| c.iter().map(|s| s.to_string()).collect()),
        client_type: client_type.map(str::to_string),
    };
    sign_client_token(SECRET.as_bytes(), &claims)
}

fn handshake(h: &mut Harness, body: serde_json::Value) -> (u16, serde_json::Value) {
    h.call("POST", "/ws/handshake", &body.to_string())
}

#[test]
fn handshakes_need_a_valid_token_matching_their_client_type() {
    let mut h = Harness::new(config());
    let (status, reply) = handshake(&mut h, json!({"client_type": "lightroom"}));
    assert_eq!(status, 401);
    assert!(
        reply["error"]
            .as_str()
            .unwrap()
            .contains("token is required")
    );
    let forged = sign_client_token(
        b"wrong",
        &ClientClaims {
            sub: "x".into(),
            exp: u64::MAX / 2000,
            channels: None,
            client_type: None,
        },
    );
    assert_eq!(
        handshake(&mut h, json!({"client_type": "lightroom", "token": forged})).0,
        401
    );
    let expired = token("plugin", 0, None, None);
    let (status, reply) = handshake(
        &mut h,
        json!({"client_type": "lightroom", "token": expired}),
    );
    assert_eq!(
        (status, reply["error"].as_str()),
        (401, Some("token expired"))
    );
    let gui_only = token("plugin", 60, None, Some("gui"));
    assert_eq!(
        handshake(
            &mut h,
            json!({"client_type": "lightroom", "token": gui_only})
        )
        .0,
        403
    );
    let good = token("plugin", 60, None, Some("lightroom"));
    assert_eq!(
        handshake(&mut h, json!({"client_type": "lightroom", "token": good})).0,
        200
    );
}

#[test]
fn a_token_limits_subscriptions_to_its_channels() {
    let mut h = Harness::new(config());
    let t = token("plugin", 60, Some(&["jobs"]), None);
    let (_, reply) = handshake(&mut h, json!({"client_type": "lightroom", "token": t}));
    let id = reply["client_id"].as_str().unwrap().parse().unwrap();
    h.subscribe(id, &["jobs"]);
    let (status, reply) = h.send(
        id,
        json!({"type": "subscribe", "channels": ["jobs", "system"]}),
    );
    assert_eq!(
        status, 403,
        "what the token does not allow is a 403, as at the handshake"
    );
    assert!(reply["error"].as_str().unwrap().contains("\"system\""));
    assert_eq!(h.engine.session(&id).unwrap().subscriptions, ["jobs"]);
    let (status, reply) = h.send(id, json!({"type": "register", "client_type": "gui"}));
    assert_eq!(
        status, 200,
        "no client type in the token: any is allowed ({reply})"
    );
}

#[test]
fn a_token_limits_the_client_type_at_register_too() {
    let mut h = Harness::new(config());
    let t = token("plugin", 60, None, Some("lightroom"));
    let (_, reply) = handshake(&mut h, json!({"client_type": "lightroom", "token": t}));
    let id = reply["client_id"].as_str().unwrap().parse().unwrap();
    let (status, reply) = h.send(id, json!({"type": "register", "client_type": "gui"}));
    assert_eq!(status, 403, "{reply}");
    assert!(reply["error"].as_str().unwrap().contains("\"lightroom\""));
}

#[test]
fn the_session_ends_when_its_token_expires() {
    let mut h = Harness::new(config());
    let upgrade = HttpRequest::new(
        "GET",
        &format!("/ws?token={}", token("gui", 30, None, None)),
        "",
    )
    .with_host("localhost:5100")
    .with_peer("127.0.0.1");
    assert!(h.open_websocket(ConnId(1), upgrade).is_ok());
    let (_, reply) = handshake(
        &mut h,
        json!({"client_type": "lightroom", "token": token("plugin", 45, None, None)}),
    );
    let plugin = reply["client_id"].as_str().unwrap().parse().unwrap();
    h.advance(Duration::from_secs(29));
    h.input(Input::WsPong { conn: ConnId(1) });
    assert!(!h.closed.contains_key(&ConnId(1)));
    h.advance(Duration::from_secs(1));
    assert_eq!(h.closed[&ConnId(1)].0, close_code::TOKEN_EXPIRED);
    h.poll(plugin);
    h.advance(Duration::from_secs(15));
    assert!(
        h.engine.session(&plugin).is_none(),
        "expired at 45 s despite its recent poll"
    );
}

#[test]
fn websockets_without_a_token_are_refused() {
    let mut h = Harness::new(config());
    assert_eq!(
        h.open_websocket(
            ConnId(1),
            HttpRequest::new("GET", "/ws", "")
                .with_host("localhost:5100")
                .with_peer("127.0.0.1")
        )
        .unwrap_err()
        .status,
        401
    );
    let mut bearer = HttpRequest::new("GET", "/ws", "")
        .with_host("localhost:5100")
        .with_peer("127.0.0.1");
    bearer.authorization = Some(format!("Bearer {}", token("gui", 60, None, None)));
    h.open_websocket(ConnId(2), bearer)
        .expect("upgrade accepted");
}

#[test]
fn a_session_can_only_be_resumed_by_its_token_subject() {
    let mut h = Harness::new(config());
    let (_, reply) = handshake(
        &mut h,
        json!({"client_type": "lightroom", "token": token("alice", 60, None, None)}),
    );
    let id = reply["client_id"].as_str().unwrap();
    let (status, _) = handshake(
        &mut h,
        json!({"client_type": "lightroom", "client_id": id, "token": token("mallory", 60, None, None)}),
    );
    assert_eq!(status, 403);
    let (status, reply) = handshake(
        &mut h,
        json!({"client_type": "lightroom", "client_id": id, "token": token("alice", 120, None, None)}),
    );
    assert_eq!((status, reply["resumed"].clone()), (200, json!(true)));
}

#[test]
fn operator_endpoints_need_the_admin_token_and_client_ones_do_not() {
    let mut h = Harness::new(Config {
        admin_token: Some("admin!".to_string()),
        ..Config::default()
    });
    for (method, path, body) in [
        ("POST", "/ws/broadcast", r#"{"message":{"type":"x"}}"#),
        (
            "POST",
            "/api/events",
            r#"{"type":"queue_status","pending_count":0,"processing_count":0,"completed_count":0,"failed_count":0}"#,
        ),
        ("POST", "/ws/notify/system_status", r#"{"status":"ok"}"#),
        ("POST", "/ws/cleanup", "{}"),
        ("GET", "/websocket/clients", ""),
        ("GET", "/websocket/stats", ""),
        ("GET", "/metrics", ""),
    ] {
        let mut http = HttpRequest::new(method, path, body)
            .with_host("localhost:5100")
            .with_peer("127.0.0.1");
        h.input(Input::Http {
            request: RequestId(1),
            http: http.clone(),
        });
        assert_eq!(h.take_reply(RequestId(1)).unwrap().status, 401, "{path}");
        http.authorization = Some("Bearer admin!".to_string());
        h.input(Input::Http {
            request: RequestId(2),
            http,
        });
        assert_eq!(h.take_reply(RequestId(2)).unwrap().status, 200, "{path}");
    }
    let id = h.handshake("lightroom");
    h.subscribe(id, &["jobs"]);
    h.poll(id);
    assert_eq!(h.call("GET", "/api/system/health", "").0, 200);
}
