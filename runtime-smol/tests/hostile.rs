//! Hostile clients over real sockets — garbage bytes, half-open connections, slowloris
//! headers, a WebSocket that never reads, a burst of 10 000 handshakes, oversized frames,
//! invalid UTF-8 — while a well-behaved WebSocket client keeps receiving every event, in
//! order.

mod support;

use async_tungstenite::tungstenite::Message;
use serde_json::json;
use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};
use support::{Raw, TestServer, UPGRADE_REQUEST, client_text_frame};

#[test]
fn a_well_behaved_client_keeps_receiving_everything_during_an_attack() {
    let server = TestServer::with(|c| {
        c.engine.max_frame_bytes = 4096;
        c.engine.max_clients = 20_000;
    });
    let addr = server.addr;
    let mut good = server.ws();
    good.send(json!({"type": "subscribe", "channels": ["jobs"]}));
    assert_eq!(good.recv().unwrap()["type"], "subscribed");

    // Half-open connections and slowloris heads, kept open through the attack.
    let mut idle: Vec<TcpStream> = (0..50).map(|_| TcpStream::connect(addr).unwrap()).collect();
    for (i, socket) in idle.iter_mut().enumerate() {
        if i % 2 == 0 {
            socket.write_all(b"GET /ws/status HTTP/1.1\r\nHo").unwrap();
        }
    }
    // A WebSocket that subscribes and never reads again.
    let mut deaf = Raw::connect(addr);
    let mut upgrade = UPGRADE_REQUEST.as_bytes().to_vec();
    upgrade.extend(client_text_frame(
        r#"{"type":"subscribe","channels":["jobs"]}"#,
    ));
    deaf.write(&upgrade);

    std::thread::scope(|scope| {
        // Garbage, oversized and invalid frames, over and over.
        scope.spawn(move || {
            for round in 0..30 {
                let mut raw = Raw::connect(addr);
                match round % 3 {
                    0 => raw.write(&[0xff, 0x00, 0x13, 0x37, b'\r', b'\n', b'\r', b'\n']),
                    1 => {
                        let mut bytes = UPGRADE_REQUEST.as_bytes().to_vec();
                        bytes.extend(client_text_frame(&"x".repeat(5000)));
                        raw.write(&bytes);
                    }
                    _ => {
                        let mut bytes = UPGRADE_REQUEST.as_bytes().to_vec();
                        // A text frame whose payload is not UTF-8.
                        bytes.extend([0x81, 0x82, 0, 0, 0, 0, 0xc3, 0x28]);
                        raw.write(&bytes);
                    }
                }
                raw.read_to_close();
            }
        });
        // 10 000 handshakes in a burst, over a few keep-alive connections.
        let burst: Vec<_> = (0..4)
            .map(|_| {
                scope.spawn(move || {
                    let mut raw = Raw::connect(addr);
                    let body = r#"{"client_type":"burst"}"#;
                    let request = format!(
                        "POST /ws/handshake HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    let (mut ok, mut limited) = (0, 0);
                    for _ in 0..2500 {
                        raw.write(request.as_bytes());
                        match raw.read_response().status {
                            200 => ok += 1,
                            429 => limited += 1,
                            other => panic!("handshake answered {other}"),
                        }
                    }
                    (ok, limited)
                })
            })
            .collect();
        // Meanwhile the application publishes, and the good client must get every event.
        let started = Instant::now();
        for progress in 0..100 {
            let (status, _) = server.post(
                "/ws/notify/job_progress",
                json!({"job_id": "j", "stage": "s", "progress": progress}),
            );
            assert_eq!(status, 200);
            let event = good.recv().expect("event during the attack");
            assert_eq!(event["progress"], f64::from(progress));
            std::thread::sleep(Duration::from_millis(5));
        }
        let (ok, limited) = burst
            .into_iter()
            .map(|t| t.join().unwrap())
            .fold((0, 0), |(a, b), (c, d)| (a + c, b + d));
        // Every handshake was answered: the burst allowance, then 429 beyond the rate.
        assert_eq!(ok + limited, 10_000);
        assert!(ok >= 1_000, "{ok} accepted");
        assert!(limited > 0, "the per-address handshake limit never engaged");
        assert!(started.elapsed() < Duration::from_secs(120));
    });
    // The deaf socket cost the server a bounded queue, not unbounded memory: its session
    // holds at most queue_limit messages.
    let (_, clients) = server.get("/ws/clients");
    let queued_max = clients["clients"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["queued"].as_u64().unwrap())
        .max()
        .unwrap();
    assert!(queued_max <= 100, "{queued_max}");
    drop(idle);
    // Still serving.
    let id = server.handshake("lightroom");
    assert_eq!(server.poll_types(&id), ["connection_established"]);
    good.send_frame(Message::text(json!({"type": "ping"}).to_string()));
    assert_eq!(good.recv().unwrap()["type"], "pong");
}
