//! The faults a hostile fault battery found, each over real sockets: header values that are
//! not ASCII (they used to panic the connection's task), a slow consumer whose unwritten
//! frames vanished, a resume after a restart that said nothing, idle connections that held a
//! descriptor forever, and refusals missing from the request metrics.

mod support;

use async_tungstenite::tungstenite::Message;
use futures_lite::StreamExt;
use livebridge_core::SlowConsumerPolicy;
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use support::{Raw, TestServer, WsClient, block_on_within};

/// The value of one Prometheus sample, 0 when absent.
fn metric(server: &TestServer, sample: &str) -> u64 {
    let (status, text) = server.http_text("GET", "/metrics", None);
    assert_eq!(status, 200);
    text.lines()
        .find_map(|line| line.strip_prefix(sample)?.trim().parse().ok())
        .unwrap_or(0)
}

#[test]
fn header_values_that_are_not_ascii_get_400_and_the_server_lives_on() {
    let server = TestServer::start();
    let requests = [
        "GET /api/system/health HTTP/1.1\r\nHost: localhost\r\nX-A: \u{e9}\r\n\r\n".to_string(),
        "GET /api/system/health HTTP/1.1\r\nHost: localh\u{e9}st\r\n\r\n".to_string(),
        "GET /ws/status HTTP/1.1\r\nHost: localhost\r\nOrigin: http://\u{e9}.example\r\n\r\n"
            .to_string(),
        "GET /ws/clients HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer \u{e9}\r\n\r\n"
            .to_string(),
        "GET /ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25j\u{e9}==\r\n\r\n"
            .to_string(),
    ];
    for request in &requests {
        let mut raw = Raw::connect(server.addr);
        raw.write(request.as_bytes());
        let response = raw.read_response();
        assert_eq!(response.status, 400, "{request:?}: {}", response.body);
        let body: Value = serde_json::from_str(&response.body).unwrap();
        assert_eq!(body["success"], false);
        assert!(
            body["error"].as_str().unwrap().contains("0xc3"),
            "{}",
            body["error"]
        );
    }
    // Bytes that are not even UTF-8.
    let mut raw = Raw::connect(server.addr);
    raw.write(b"GET /health HTTP/1.1\r\nHost: localhost\r\nX-B: \xff\xfe\r\n\r\n");
    assert_eq!(raw.read_response().status, 400);
    let (status, health) = server.get("/api/system/health");
    assert_eq!((status, &health["status"]), (200, &json!("healthy")));
    assert_eq!(metric(&server, "livebridge_connection_panics_total"), 0);
    assert_eq!(
        metric(
            &server,
            "livebridge_http_requests_total{route=\"unparsed\",status=\"400\"}"
        ),
        6
    );
}

#[test]
fn refused_websocket_upgrades_are_counted_with_the_requests() {
    let server = TestServer::with(|config| config.engine.max_clients = 1);
    let first = server.ws();
    let mut raw = Raw::connect(server.addr);
    raw.write(support::UPGRADE_REQUEST.as_bytes());
    assert_eq!(raw.read_response().status, 503);
    assert_eq!(
        metric(
            &server,
            "livebridge_http_requests_total{route=\"/ws\",status=\"101\"}"
        ),
        1
    );
    assert_eq!(
        metric(
            &server,
            "livebridge_http_requests_total{route=\"/ws\",status=\"503\"}"
        ),
        1
    );
    drop(first);
}

#[test]
fn connections_that_send_nothing_in_time_are_closed() {
    let server = TestServer::with(|config| {
        config.header_timeout = Duration::from_millis(300);
        config.keep_alive_timeout = Duration::from_millis(600);
    });
    // Nothing at all: closed without an answer.
    let started = Instant::now();
    let mut silent = Raw::connect(server.addr);
    assert!(silent.read_to_close().is_empty());
    let waited = started.elapsed();
    assert!(waited < Duration::from_secs(4), "closed after {waited:?}");
    // Half a request head: 408, then closed.
    let mut slow = Raw::connect(server.addr);
    slow.write(b"GET /health HTTP/1.1\r\nHost: loc");
    let answer = String::from_utf8(slow.read_to_close()).unwrap();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("did not arrive within"), "{answer}");
    // A keep-alive connection idle after its request: closed.
    let mut idle = Raw::connect(server.addr);
    idle.write(b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n");
    assert_eq!(idle.read_response().status, 200);
    assert!(idle.read_to_close().is_empty());
    assert_eq!(
        metric(&server, "livebridge_idle_connections_closed_total"),
        2
    );
    assert_eq!(
        metric(
            &server,
            "livebridge_http_requests_total{route=\"unparsed\",status=\"408\"}"
        ),
        1
    );
}

#[test]
fn a_keep_alive_connection_busy_past_its_first_idle_deadline_stays_open() {
    // The connection's timer is set once, for the first request's idle deadline, and only
    // moved when it fires: it must then find the later deadline and wait again, not close.
    let server = TestServer::with(|config| {
        config.keep_alive_timeout = Duration::from_millis(1000);
    });
    let mut busy = Raw::connect(server.addr);
    for _ in 0..3 {
        busy.write(b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n");
        assert_eq!(busy.read_response().status, 200);
        std::thread::sleep(Duration::from_millis(600));
    }
    busy.write(b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n");
    assert_eq!(
        busy.read_response().status,
        200,
        "1.8 s after the first request, 600 ms after the last"
    );
    assert!(busy.read_to_close().is_empty(), "then idle: closed");
    assert_eq!(
        metric(&server, "livebridge_idle_connections_closed_total"),
        1
    );
}

#[test]
fn a_resume_after_a_restart_says_it_could_not_resume_on_both_paths() {
    let mut first = TestServer::start();
    let addr = first.addr;
    let websocket = first.ws();
    let old_ws_id = websocket.client_id.clone();
    let old_polling_id = first.handshake("lightroom");
    drop(websocket);
    first.shutdown();
    let restarted = TestServer::with(|config| config.bind = addr);
    let (_client, welcome) = smol::block_on(WsClient::connect_to(
        addr,
        &format!("/ws?client_id={old_ws_id}"),
    ));
    assert_eq!(welcome["resumed"], false, "{welcome}");
    assert_ne!(welcome["client_id"], old_ws_id);
    assert!(
        welcome["reason"]
            .as_str()
            .unwrap()
            .contains("server restarted")
    );
    let (status, reply) = restarted.post(
        "/ws/handshake",
        json!({"client_type": "lightroom", "client_id": old_polling_id}),
    );
    assert_eq!(status, 200);
    assert_eq!(reply["resumed"], false);
    assert_ne!(reply["client_id"], old_polling_id);
    assert!(reply["reason"].as_str().unwrap().contains("new session"));
}

/// What a WebSocket reader got: event numbers in order, drops reported, the close code.
#[derive(Default)]
struct Reading {
    events: Vec<u64>,
    dropped: u64,
    close: Option<u16>,
}

/// How long [`read_all`] may take: thousands of large events on a slow machine.
const READ_ALL_WAIT: Duration = Duration::from_secs(120);

/// Reads until the socket closes or stays quiet for a second.
async fn read_all(client: &mut WsClient, reading: &mut Reading) {
    loop {
        let next = futures_lite::future::or(async { client.ws.next().await }, async {
            smol::Timer::after(Duration::from_secs(1)).await;
            None
        })
        .await;
        match next {
            Some(Ok(Message::Text(text))) => {
                let message: Value = serde_json::from_str(&text).unwrap();
                match message["type"].as_str().unwrap() {
                    "job_progress" => reading.events.push(message["job_id"].as_u64().unwrap()),
                    "messages_dropped" => reading.dropped += message["dropped"].as_u64().unwrap(),
                    other => panic!("unexpected {other}"),
                }
            }
            Some(Ok(Message::Close(frame))) => {
                reading.close = frame.map(|f| u16::from(f.code));
                // Answer the close (tungstenite queued the reply; reading on sends it), so
                // the server sees the end of the connection.
                let _ = client.ws.next().await;
                return;
            }
            Some(Ok(_)) => {}
            Some(Err(_)) | None => return,
        }
    }
}

/// A subscriber stops reading while `count` large events are published, then reads
/// everything (resuming if the server closed it): every event is received or reported
/// dropped, exactly.
fn a_reader_that_stops_reading(policy: SlowConsumerPolicy) -> Reading {
    const COUNT: u64 = 4_000;
    let server = TestServer::with(|config| {
        config.engine.slow_consumer = policy;
        config.engine.max_body_bytes = 8 << 20;
        // The close frame waits behind what the socket holds until the reader reads again.
        config.close_timeout = Duration::from_secs(60);
    });
    let mut reader = server.ws();
    reader.send(json!({"type": "subscribe", "channels": ["jobs"]}));
    assert_eq!(reader.recv().unwrap()["type"], "subscribed");
    let padding = "x".repeat(4_000);
    for batch in 0..COUNT / 500 {
        let events: Vec<Value> = (1..=500)
            .map(|i| {
                json!({"type": "job_progress", "job_id": batch * 500 + i, "stage": "s",
                       "progress": 1, "message": padding})
            })
            .collect();
        let (status, reply) = server.post("/api/events", Value::from(events));
        assert_eq!(status, 200, "{reply}");
    }
    let mut reading = Reading::default();
    block_on_within(
        "the stopped reader to read everything",
        READ_ALL_WAIT,
        read_all(&mut reader, &mut reading),
    );
    if policy == SlowConsumerPolicy::Disconnect {
        assert_eq!(reading.close, Some(1008), "the client sees the close frame");
        let (mut resumed, welcome) = smol::block_on(WsClient::connect_to(
            server.addr,
            &format!("/ws?client_id={}", reader.client_id),
        ));
        assert_eq!(welcome["resumed"], true);
        block_on_within(
            "the resumed reader to read everything",
            READ_ALL_WAIT,
            read_all(&mut resumed, &mut reading),
        );
    }
    assert!(
        reading.events.windows(2).all(|w| w[0] < w[1]),
        "in order, once"
    );
    assert!(
        reading.dropped > 0,
        "the reader must have overflowed its queue"
    );
    assert_eq!(
        reading.events.len() as u64 + reading.dropped,
        COUNT,
        "received {} + reported dropped {} = published",
        reading.events.len(),
        reading.dropped
    );
    let (_, stats) = server.get("/websocket/stats");
    assert_eq!(stats["messages_dropped"], reading.dropped);
    reading
}

#[test]
fn a_slow_consumer_under_drop_oldest_is_told_of_every_event_it_lost() {
    let reading = a_reader_that_stops_reading(SlowConsumerPolicy::DropOldest);
    assert_eq!(reading.close, None);
}

#[test]
fn a_slow_consumer_closed_by_the_disconnect_policy_is_told_of_every_event_it_lost() {
    a_reader_that_stops_reading(SlowConsumerPolicy::Disconnect);
}
