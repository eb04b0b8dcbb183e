//! Byte-level HTTP behaviour over raw TCP sockets: the async-h1 2.3 pitfalls livebridge must
//! not inherit (lost pipelined requests, a WebSocket frame lost with the upgrade, HTTP/1.0
//! dropped unanswered, `content-length: 0` on 101, Nagle delays), and refusals answered
//! cleanly.

mod support;

use std::time::{Duration, Instant};
use support::{Raw, TestServer, UPGRADE_REQUEST, client_text_frame, header};

const STATUS: &str = "GET /ws/status HTTP/1.1\r\nHost: localhost\r\n\r\n";

#[test]
fn pipelined_requests_in_one_write_are_all_answered_in_order() {
    let server = TestServer::start();
    let mut raw = Raw::connect(server.addr);
    let handshake = "POST /ws/handshake HTTP/1.1\r\nHost: localhost\r\nContent-Length: 27\r\n\r\n{\"client_type\":\"lightroom\"}";
    raw.write(
        format!("{STATUS}{handshake}GET /nope HTTP/1.1\r\nHost: localhost\r\n\r\n{STATUS}")
            .as_bytes(),
    );
    let statuses: Vec<u16> = (0..4).map(|_| raw.read_response().status).collect();
    assert_eq!(statuses, [200, 200, 404, 200]);
}

#[test]
fn a_websocket_frame_sent_with_the_upgrade_request_is_not_lost() {
    let server = TestServer::start();
    let mut raw = Raw::connect(server.addr);
    let mut bytes = UPGRADE_REQUEST.as_bytes().to_vec();
    bytes.extend(client_text_frame(r#"{"type":"ping"}"#));
    raw.write(&bytes);
    let response = raw.read_response();
    assert_eq!(response.status, 101);
    // A 101 has no body; a content-length header would be wrong.
    assert_eq!(
        header(&response.head, "content-length"),
        None,
        "{}",
        response.head
    );
    assert_eq!(
        header(&response.head, "sec-websocket-accept"),
        Some("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
    );
    let (opcode, welcome) = raw.read_frame();
    assert_eq!(opcode, 1);
    assert!(
        String::from_utf8(welcome)
            .unwrap()
            .contains("connection_established")
    );
    let (opcode, pong) = raw.read_frame();
    assert_eq!(opcode, 1);
    assert!(
        String::from_utf8(pong)
            .unwrap()
            .contains("\"type\":\"pong\"")
    );
}

#[test]
fn http_1_0_requests_are_answered_and_the_connection_closed() {
    let server = TestServer::start();
    let mut raw = Raw::connect(server.addr);
    raw.write(b"GET /ws/status HTTP/1.0\r\nHost: localhost\r\n\r\n");
    let reply = String::from_utf8(raw.read_to_close()).unwrap();
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert!(reply.contains("\"enabled\":true"), "{reply}");
}

#[test]
fn keep_alive_requests_are_not_delayed_by_nagle() {
    let server = TestServer::start();
    let mut raw = Raw::connect(server.addr);
    raw.write(STATUS.as_bytes());
    raw.read_response();
    // With Nagle's algorithm and delayed ACKs each of these would wait ~40 ms (2 s in all);
    // the bound is 5 times what even a slow machine needs without them.
    let started = Instant::now();
    for _ in 0..50 {
        raw.write(STATUS.as_bytes());
        assert_eq!(raw.read_response().status, 200);
    }
    assert!(
        started.elapsed() < Duration::from_millis(1000),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn expect_100_continue_gets_a_continue_then_the_answer() {
    let server = TestServer::start();
    let mut raw = Raw::connect(server.addr);
    let body = r#"{"client_type":"gui"}"#;
    raw.write(
        format!(
            "POST /ws/handshake HTTP/1.1\r\nHost: localhost\r\nExpect: 100-continue\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    );
    let mut continue_line = [0u8; 25];
    std::io::Read::read_exact(&mut raw.stream, &mut continue_line).unwrap();
    assert_eq!(&continue_line, b"HTTP/1.1 100 Continue\r\n\r\n");
    raw.write(body.as_bytes());
    let response = raw.read_response();
    assert_eq!(response.status, 200, "{}", response.body);
}

#[test]
fn refused_requests_get_a_json_error_and_a_closed_connection() {
    let server = TestServer::with(|c| {
        c.engine.max_body_bytes = 1024;
        c.max_head_bytes = 2048;
    });
    let cases: Vec<(String, u16)> = vec![
        ("garbage\r\n\r\n".to_string(), 400),
        ("GET /ws/status HTTP/1.1\r\n\r\n".to_string(), 400),
        (
            "POST /ws/send HTTP/1.1\r\nHost: localhost\r\nContent-Length: 99999999\r\n\r\n".to_string(),
            413,
        ),
        (
            "POST /ws/send HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n".to_string(),
            411,
        ),
        (
            format!("GET /ws/status HTTP/1.1\r\nHost: localhost\r\nX-Pad: {}\r\n\r\n", "a".repeat(4000)),
            431,
        ),
        (
            "GET /ws/status HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n".to_string(),
            400,
        ),
    ];
    for (request, expected) in cases {
        let mut raw = Raw::connect(server.addr);
        raw.write(request.as_bytes());
        let reply = String::from_utf8_lossy(&raw.read_to_close()).to_string();
        let status: u16 = reply.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
        assert_eq!(status, expected, "{request:.60}: {reply}");
        let body = &reply[reply.find("\r\n\r\n").unwrap() + 4..];
        let json: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(json["success"], false);
    }
    // Nobody else noticed.
    let mut raw = Raw::connect(server.addr);
    raw.write(STATUS.as_bytes());
    assert_eq!(raw.read_response().status, 200);
}

#[test]
fn a_client_that_vanishes_during_a_long_poll_does_not_take_its_messages() {
    let server = TestServer::start();
    let id = server.handshake("lightroom");
    server.subscribe(&id, &["jobs"]);
    server.poll(&id);
    let mut raw = Raw::connect(server.addr);
    raw.write(
        format!("GET /ws/poll?client_id={id}&wait=30 HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .as_bytes(),
    );
    std::thread::sleep(Duration::from_millis(200));
    drop(raw);
    std::thread::sleep(Duration::from_millis(200));
    server.post(
        "/ws/notify/job_progress",
        serde_json::json!({"job_id": "j", "stage": "s", "progress": 3}),
    );
    // The message waits for the client's next poll instead of going to the dead socket.
    assert_eq!(server.poll_types(&id), ["job_progress"]);
}

#[test]
fn pages_of_other_sites_and_rebound_host_names_are_refused() {
    let server =
        TestServer::with(|c| c.engine.allowed_origins = vec!["http://localhost:3000".into()]);
    let cases = [
        ("Origin: https://evil.example\r\n", "localhost", 403),
        ("", "attacker.example:5100", 403),
        ("Origin: http://localhost:3000\r\n", "localhost", 200),
        ("", "127.0.0.1", 200),
    ];
    for (origin, host, expected) in cases {
        let mut raw = Raw::connect(server.addr);
        raw.write(format!("POST /ws/handshake HTTP/1.1\r\nHost: {host}\r\n{origin}Content-Length: 21\r\n\r\n{{\"client_type\":\"web\"}}").as_bytes());
        let response = raw.read_response();
        assert_eq!(
            response.status, expected,
            "{origin}{host}: {}",
            response.body
        );
        let cors = header(&response.head, "access-control-allow-origin");
        assert_eq!(cors.is_some(), origin.contains("3000"), "{}", response.head);
    }
    let mut raw = Raw::connect(server.addr);
    raw.write(
        UPGRADE_REQUEST
            .replace(
                "Host: localhost\r\n",
                "Host: localhost\r\nOrigin: https://evil.example\r\n",
            )
            .as_bytes(),
    );
    let response = raw.read_response();
    assert_eq!(response.status, 403, "{}", response.body);
    let (_, clients) = server.get("/ws/clients");
    assert_eq!(
        clients["count"], 2,
        "only the two allowed handshakes made sessions"
    );
}
