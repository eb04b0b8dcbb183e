//! Every HTTP endpoint of the seeds over a real socket with a real HTTP client: success and
//! error paths, long poll, overflow, eviction and resume.

mod support;

use serde_json::json;
use std::time::{Duration, Instant};
use support::{TestServer, types};

#[test]
fn the_seed_quick_start_works_as_printed() {
    let server = TestServer::start();
    let (status, reply) = server.get("/ws/status");
    assert_eq!(status, 200);
    assert_eq!(reply["success"], true);
    assert_eq!(reply["enabled"], true);
    let (status, health) = server.get("/api/system/health");
    assert_eq!((status, health["status"].clone()), (200, json!("healthy")));
}

#[test]
fn polling_client_lifecycle_over_http() {
    let server = TestServer::start();
    let id = server.handshake("lightroom");
    let (status, reply) = server.send(
        &id,
        json!({"type": "register", "client_type": "lightroom", "client_name": "Lightroom Classic Plugin"}),
    );
    assert_eq!(
        (status, reply["response"]["type"].clone()),
        (200, json!("registered"))
    );
    server.subscribe(&id, &["jobs", "system", "photos"]);
    assert_eq!(server.poll_types(&id), ["connection_established"]);
    let (_, pong) = server.send(&id, json!({"type": "ping"}));
    assert_eq!(pong["response"]["type"], "pong");
    let (status, clients) = server.get("/ws/clients");
    assert_eq!(status, 200);
    assert_eq!(clients["count"], 1);
    assert_eq!(clients["clients"][0]["id"], id);
    assert_eq!(
        clients["clients"][0]["subscriptions"],
        json!(["jobs", "photos", "system"])
    );
    let (status, _) = server.post("/ws/disconnect", json!({"client_id": id}));
    assert_eq!(status, 200);
    let (status, reply) = server.get(&format!("/ws/poll?client_id={id}"));
    assert_eq!(status, 404);
    assert_eq!(reply["success"], false);
}

#[test]
fn notify_broadcast_send_and_events_endpoints_deliver() {
    let server = TestServer::start();
    let id = server.handshake("lightroom");
    server.subscribe(&id, &["jobs", "system", "photos"]);
    server.poll(&id);
    let cases = [
        (
            "/ws/notify/job_progress",
            json!({"job_id": "job123", "stage": "processing", "progress": 50, "message": "Applying settings..."}),
            "job_progress",
        ),
        (
            "/ws/notify/job_complete",
            json!({"job_id": "job123", "success": true, "result": {}}),
            "job_completed",
        ),
        (
            "/ws/notify/job_complete",
            json!({"job_id": "job123", "success": false, "error": "disk full"}),
            "job_failed",
        ),
        (
            "/ws/notify/system_status",
            json!({"status": {"cpu_usage": 45.2, "gpu_temp": 62}}),
            "system_status",
        ),
        (
            "/ws/broadcast",
            json!({"message": {"type": "system_status", "status": "ok"}, "channel": "system"}),
            "system_status",
        ),
        (
            "/api/websocket/broadcast",
            json!({"message": {"type": "notice"}}),
            "notice",
        ),
        (
            "/websocket/broadcast",
            json!({"message": {"type": "notice"}, "client_type": "lightroom"}),
            "notice",
        ),
        (
            &format!("/ws/send/{id}"),
            json!({"type": "reload_config", "config": {}}),
            "reload_config",
        ),
        (
            "/api/events",
            json!({"type": "photo_approved", "photo_id": 789, "session_id": 12}),
            "photo_approved",
        ),
    ];
    for (path, body, expected) in cases {
        let (status, reply) = server.post(path, body);
        assert_eq!(status, 200, "{path}: {reply}");
        assert_eq!(server.poll_types(&id), [expected], "{path}");
    }
}

#[test]
fn management_endpoints_on_both_path_families() {
    let server = TestServer::start();
    let id = server.handshake("gui");
    for path in [
        "/ws/clients",
        "/api/websocket/clients",
        "/websocket/clients",
    ] {
        let (status, reply) = server.get(path);
        assert_eq!((status, reply["count"].clone()), (200, json!(1)), "{path}");
    }
    let (status, stats) = server.get("/websocket/stats");
    assert_eq!(status, 200);
    assert_eq!(stats["clients_by_type"], json!({"gui": 1}));
    let (status, reply) = server.post(&format!("/websocket/disconnect/{id}"), json!({}));
    assert_eq!((status, reply["success"].clone()), (200, json!(true)));
    let (status, _) = server.post(&format!("/api/websocket/disconnect/{id}"), json!({}));
    assert_eq!(status, 404);
    let (status, metrics) = server.http_text("GET", "/metrics", None);
    assert_eq!(status, 200);
    assert!(
        metrics.contains(
            "livebridge_http_requests_total{route=\"/websocket/stats\",status=\"200\"} 1"
        ),
        "{metrics}"
    );
}

#[test]
fn errors_have_the_right_status_and_a_json_body() {
    let server = TestServer::with(|c| c.engine.max_body_bytes = 1024);
    let unknown = "/ws/poll?client_id=0b7c2f4e-8a55-4d7e-9a44-0f3e1f2d3c4b";
    let big = format!(
        "{{\"message\":{{\"type\":\"x\",\"pad\":\"{}\"}}}}",
        "a".repeat(2000)
    );
    let cases: [(&str, &str, Option<&str>, u16); 9] = [
        ("POST", "/ws/handshake", Some("{not json"), 400),
        ("POST", "/ws/handshake", Some("{}"), 400),
        ("GET", unknown, None, 404),
        ("GET", "/no/such/path", None, 404),
        ("DELETE", "/ws/status", None, 405),
        ("PUT", "/ws/handshake", None, 405),
        ("POST", "/ws/broadcast", Some(&big), 413),
        (
            "POST",
            "/api/events",
            Some(r#"{"type":"job_progress","job_id":"j"}"#),
            400,
        ),
        ("GET", "/ws", None, 426),
    ];
    for (method, path, body, expected) in cases {
        let (status, text) = server.http_text(method, path, body);
        assert_eq!(status, expected, "{method} {path}: {text}");
        let reply: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(reply["success"], false, "{method} {path}");
        assert!(!reply["error"].as_str().unwrap().is_empty());
    }
    // The garbage above disturbed nothing.
    let id = server.handshake("gui");
    assert_eq!(server.poll_types(&id), ["connection_established"]);
}

#[test]
fn a_long_poll_is_answered_the_moment_an_event_is_published() {
    let server = TestServer::start();
    let id = server.handshake("lightroom");
    server.subscribe(&id, &["jobs"]);
    server.poll(&id);
    std::thread::scope(|scope| {
        let waiting = scope.spawn(|| {
            let started = Instant::now();
            let (status, reply) = server.get(&format!("/ws/poll?client_id={id}&wait=30"));
            (status, reply, started.elapsed())
        });
        std::thread::sleep(Duration::from_millis(300));
        server.post(
            "/ws/notify/job_progress",
            json!({"job_id": "j", "stage": "s", "progress": 5}),
        );
        let (status, reply, waited) = waiting.join().unwrap();
        assert_eq!(status, 200);
        assert_eq!(types(&reply["messages"]), ["job_progress"]);
        // Answered by the event, not by the 30 s deadline.
        assert!(waited < Duration::from_secs(25), "waited {waited:?}");
    });
}

#[test]
fn a_long_poll_with_nothing_to_say_is_answered_empty_at_its_wait() {
    let server = TestServer::start();
    let id = server.handshake("lightroom");
    server.poll(&id);
    let (status, reply) = server.get(&format!("/ws/poll?client_id={id}&wait=0.3"));
    assert_eq!(status, 200);
    assert_eq!(reply["messages"], json!([]));
}

#[test]
fn overflow_drops_the_oldest_and_reports_dropped() {
    let server = TestServer::with(|c| c.engine.queue_limit = 3);
    let id = server.handshake("lightroom");
    server.subscribe(&id, &["jobs"]);
    server.poll(&id);
    for progress in 1..=5 {
        server.post(
            "/ws/notify/job_progress",
            json!({"job_id": "j", "stage": "s", "progress": progress}),
        );
    }
    let reply = server.poll(&id);
    assert_eq!(reply["dropped"], 2);
    let progress: Vec<f64> = reply["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["progress"].as_f64().unwrap())
        .collect();
    assert_eq!(progress, [3.0, 4.0, 5.0]);
}

#[test]
fn an_idle_session_is_evicted_after_stale_after() {
    let server = TestServer::with(|c| c.engine.stale_after = Duration::from_millis(300));
    let id = server.handshake("lightroom");
    std::thread::sleep(Duration::from_millis(700));
    let (status, _) = server.get(&format!("/ws/poll?client_id={id}"));
    assert_eq!(status, 404);
    let (_, stats) = server.get("/websocket/stats");
    assert_eq!(stats["evictions"], 1);
}

#[test]
fn a_handshake_with_the_client_id_resumes_the_session_and_its_queue() {
    let server = TestServer::start();
    let id = server.handshake("lightroom");
    server.subscribe(&id, &["jobs"]);
    server.poll(&id);
    server.post(
        "/ws/notify/job_progress",
        json!({"job_id": "j", "stage": "s", "progress": 1}),
    );
    let (status, reply) = server.post(
        "/ws/handshake",
        json!({"client_type": "lightroom", "protocol_version": "1.0", "client_id": id}),
    );
    assert_eq!(status, 200);
    assert_eq!(
        (reply["client_id"].as_str(), reply["resumed"].clone()),
        (Some(id.as_str()), json!(true))
    );
    assert_eq!(server.poll_types(&id), ["job_progress"]);
}

#[test]
fn cleanup_removes_idle_sessions() {
    let server = TestServer::start();
    let id = server.handshake("lightroom");
    std::thread::sleep(Duration::from_millis(200));
    let (status, reply) = server.post("/ws/cleanup", json!({"timeout_minutes": 0.001}));
    assert_eq!(status, 200);
    assert_eq!(reply["removed"], 1);
    assert_eq!(server.get(&format!("/ws/poll?client_id={id}")).0, 404);
}

#[test]
fn a_request_without_host_gets_the_same_400_on_both_runtimes() {
    let server = TestServer::start();
    let mut raw = support::Raw::connect(server.addr);
    raw.write(b"GET /ws/status HTTP/1.1\r\nConnection: close\r\n\r\n");
    let response = raw.read_response();
    assert!(
        response.head.starts_with("HTTP/1.1 400"),
        "{}",
        response.head
    );
    let body: serde_json::Value = serde_json::from_str(&response.body).unwrap();
    assert_eq!(body["success"], false);
    // The engine's words, also from the smol runtime whose HTTP library cannot take it.
    assert_eq!(body["error"], livebridge_core::MISSING_HOST);
}
