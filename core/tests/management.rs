//! Rule 8: listing clients, status, stats, health and metrics; HTTP routing errors; the
//! catalogue, the admin page and the browser client the hub serves.

mod support;

use livebridge_core::{ContentType, HttpRequest, Input, RequestBody, RequestId};
use serde_json::json;
use std::time::Duration;
use support::{Harness, job_progress};

#[test]
fn client_listing_shows_each_session_on_every_path_family() {
    let mut h = Harness::default();
    let plugin = h.handshake("lightroom");
    h.send(
        plugin,
        json!({"type": "register", "client_type": "lightroom", "client_name": "LR"}),
    );
    h.subscribe(plugin, &["jobs", "system"]);
    h.advance(Duration::from_secs(2));
    h.poll(plugin);
    let (conn, gui) = h.ws_open();
    h.ws_send(conn, json!({"type": "register", "client_type": "gui"}));
    for path in [
        "/ws/clients",
        "/api/websocket/clients",
        "/websocket/clients",
    ] {
        let (status, reply) = h.call("GET", path, "");
        assert_eq!(status, 200);
        assert_eq!(reply["count"], 2);
        let first = &reply["clients"][0];
        assert_eq!(first["id"], plugin.to_string());
        assert_eq!(first["client_type"], "lightroom");
        assert_eq!(first["client_name"], "LR");
        assert_eq!(first["transport"], "polling");
        assert_eq!(first["subscriptions"], json!(["jobs", "system"]));
        assert_eq!(first["connected_at"], "2026-11-25T12:00:00.000Z");
        assert_eq!(first["last_poll"], "2026-11-25T12:00:02.000Z");
        let second = &reply["clients"][1];
        assert_eq!(second["id"], gui.to_string());
        assert_eq!(second["transport"], "websocket");
        assert_eq!(second["last_poll"], json!(null));
    }
}

#[test]
fn status_and_stats_count_clients_channels_and_messages() {
    let mut h = Harness::default();
    let a = h.handshake("lightroom");
    let b = h.handshake("gui");
    h.subscribe(a, &["jobs"]);
    h.subscribe(b, &["jobs", "system"]);
    h.publish(job_progress(1));
    h.poll(a);
    let (status, stats) = h.call("GET", "/websocket/stats", "");
    assert_eq!(status, 200);
    assert_eq!(stats["total_clients"], 2);
    assert_eq!(stats["clients_by_type"], json!({"gui": 1, "lightroom": 1}));
    assert_eq!(stats["clients_by_transport"], json!({"polling": 2}));
    assert_eq!(stats["channels"], json!({"jobs": 2, "system": 1}));
    assert_eq!(stats["messages_published"], 1);
    // a's poll delivered its welcome message and the event.
    assert_eq!(stats["messages_delivered"], 2);
    let (_, status_body) = h.call("GET", "/ws/status", "");
    assert_eq!(status_body["enabled"], true);
    assert_eq!(status_body["config"]["queue_limit"], 100);
    assert_eq!(status_body["config"]["stale_after_seconds"], 300.0);
    let keys: Vec<&str> = status_body
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        [
            "success",
            "enabled",
            "protocol_version",
            "server_time",
            "uptime_seconds",
            "total_clients",
            "clients_by_type",
            "clients_by_transport",
            "channels",
            "history",
            "publishes_awaiting_store",
            "messages_published",
            "messages_delivered",
            "messages_dropped",
            "messages_undelivered",
            "evictions",
            "config"
        ],
        "the documented order"
    );
    assert_eq!(h.call("GET", "/api/websocket/stats", "").1, stats);
}

#[test]
fn health_answers_healthy() {
    let mut h = Harness::default();
    let (status, reply) = h.call("GET", "/api/system/health", "");
    assert_eq!(status, 200);
    assert_eq!(reply["status"], "healthy");
    assert_eq!(reply["service"], "livebridge");
}

#[test]
fn metrics_are_prometheus_text_with_sessions_messages_and_requests() {
    let mut h = Harness::default();
    let id = h.handshake("lightroom");
    h.ws_open();
    h.subscribe(id, &["jobs"]);
    h.publish(job_progress(1));
    h.call("GET", "/nope", "");
    let request = h.http("GET", "/metrics", "");
    let reply = h.take_reply(request).unwrap();
    assert_eq!(reply.status, 200);
    assert!(
        reply
            .content_type
            .as_str()
            .starts_with("text/plain; version=0.0.4")
    );
    let text = reply.body;
    for line in [
        "livebridge_sessions{transport=\"polling\",client_type=\"lightroom\"} 1",
        "livebridge_sessions{transport=\"websocket\",client_type=\"unknown\"} 1",
        "livebridge_messages_published_total 1",
        "livebridge_evictions_total 0",
        "livebridge_http_requests_total{route=\"/ws/handshake\",status=\"200\"} 1",
        "livebridge_http_requests_total{route=\"/api/events\",status=\"200\"} 1",
        "livebridge_http_requests_total{route=\"unmatched\",status=\"404\"} 1",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in\n{text}"
        );
    }
}

#[test]
fn routing_errors_have_the_right_status_and_a_json_error() {
    let mut h = Harness::default();
    let cases = [
        ("GET", "/does/not/exist", "", 404),
        ("DELETE", "/ws/handshake", "", 405),
        ("POST", "/ws/poll", "", 405),
        ("POST", "/ws/handshake", "[1,2]", 400),
        ("POST", "/ws/handshake", "{\"client_type\": 5}", 400),
        ("POST", "/ws/send", "", 400),
        ("GET", "/ws", "", 426),
    ];
    for (method, path, body, expected) in cases {
        let (status, reply) = h.call(method, path, body);
        assert_eq!(status, expected, "{method} {path}");
        assert_eq!(reply["success"], false, "{method} {path}");
        assert!(reply["error"].as_str().is_some_and(|e| !e.is_empty()));
    }
    let mut oversized = HttpRequest::new("POST", "/ws/broadcast", "")
        .with_host("localhost:5100")
        .with_peer("127.0.0.1");
    oversized.body = RequestBody::TooLarge {
        declared: 10_000_000,
    };
    h.input(Input::Http {
        request: RequestId(900),
        http: oversized,
    });
    let reply = h.take_reply(RequestId(900)).unwrap();
    assert_eq!(reply.status, 413);
    assert!(reply.body.contains("65536"));
    let mut chunked = HttpRequest::new("POST", "/ws/broadcast", "")
        .with_host("localhost:5100")
        .with_peer("127.0.0.1");
    chunked.body = RequestBody::LengthRequired;
    h.input(Input::Http {
        request: RequestId(901),
        http: chunked,
    });
    assert_eq!(h.take_reply(RequestId(901)).unwrap().status, 411);
}

#[test]
fn notify_endpoints_publish_catalogue_events() {
    let mut h = Harness::default();
    let id = h.handshake("gui");
    h.subscribe(id, &["jobs", "system"]);
    h.poll(id);
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
            json!({"job_id": "job123", "success": false, "error": "boom"}),
            "job_failed",
        ),
        (
            "/ws/notify/system_status",
            json!({"status": {"cpu_usage": 45.2, "gpu_temp": 62}}),
            "system_status",
        ),
    ];
    for (path, body, expected) in cases {
        let (status, reply) = h.call("POST", path, &body.to_string());
        assert_eq!(status, 200, "{path}: {reply}");
        assert_eq!(reply["events"][0]["type"], expected);
        assert_eq!(h.poll_types(id), [expected]);
    }
    let (status, reply) = h.call("POST", "/ws/notify/job_progress", r#"{"job_id":"j"}"#);
    assert_eq!(status, 400);
    assert!(reply["error"].as_str().unwrap().contains("stage"));
    assert_eq!(
        h.call("POST", "/ws/notify/job_complete", r#"{"job_id":"j"}"#)
            .0,
        400
    );
}

#[test]
fn the_catalogue_is_served_as_json_and_describes_what_the_engine_accepts() {
    let mut h = Harness::default();
    let (status, reply) = h.call("GET", "/api/catalogue", "");
    assert_eq!(status, 200);
    let events = reply["events"].as_array().unwrap();
    assert_eq!(events.len(), 22);
    let progress = events.iter().find(|e| e["type"] == "job_progress").unwrap();
    assert_eq!(progress["channel"], "jobs");
    assert_eq!(
        progress["fields"][2],
        serde_json::json!({"name": "progress", "type": "number", "required": true,
                           "min": 0.0, "max": 100.0})
    );
    // A catalogue served to one engine configures another that accepts the same events.
    let served: livebridge_core::Catalogue =
        serde_json::from_value(serde_json::json!({"events": reply["events"]})).unwrap();
    assert_eq!(served, livebridge_core::Catalogue::builtin());
}

#[test]
fn the_admin_page_and_the_browser_client_are_served_with_their_types() {
    let mut h = Harness::default();
    for (path, content_type) in [
        ("/", ContentType::Html),
        ("/admin.js", ContentType::JavaScript),
        ("/admin.css", ContentType::Css),
        ("/client.js", ContentType::JavaScript),
    ] {
        let request = h.http("GET", path, "");
        let reply = h.take_reply(request).unwrap();
        assert_eq!(reply.status, 200, "{path}");
        assert_eq!(reply.content_type, content_type, "{path}");
        assert!(!reply.body.is_empty());
    }
    let request = h.http("GET", "/", "");
    let page = h.take_reply(request).unwrap();
    let csp = page
        .headers
        .iter()
        .find(|(name, _)| name == "Content-Security-Policy")
        .map(|(_, value)| value.as_str())
        .unwrap();
    assert!(csp.contains("default-src 'self'") && csp.contains("frame-ancestors 'none'"));
    let (status, _) = h.call("POST", "/client.js", "");
    assert_eq!(status, 405);
}
