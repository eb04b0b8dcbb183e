//! Frames written to idle sockets directly by whoever publishes them (`outbox.rs`), over real
//! sockets with a real client: when the client stops reading, the socket fills in the middle
//! of a frame and the connection's task takes over; every frame must still arrive whole, once
//! and in order, with the task's own frames (a pong) between them, and none reported dropped.

mod support;

use async_tungstenite::tungstenite::Message;
use futures_lite::StreamExt;
use serde_json::{Value, json};
use std::time::Duration;
use support::{TestServer, block_on_within};

const EVENTS: usize = 600;
const MESSAGE_BYTES: usize = 20_000;

fn big_event(seq: usize) -> Value {
    let filler = "x".repeat(MESSAGE_BYTES);
    json!({"type": "job_progress", "job_id": seq.to_string(), "stage": "s", "progress": 1, "message": format!("{seq}:{filler}")})
}

#[test]
fn every_frame_arrives_whole_and_in_order_when_the_client_stalls_and_resumes() {
    let server = TestServer::with(|config| {
        config.engine.queue_limit = 1_000;
        config.engine.max_body_bytes = 256 * 1024;
    });
    let mut client = server.ws();
    client.send(json!({"type": "subscribe", "channels": ["jobs"]}));
    assert_eq!(client.recv().unwrap()["type"], "subscribed");

    // The client reads nothing while 12 MB are published (more than loopback's socket buffers hold): the socket's buffers fill, most
    // likely in the middle of a frame.
    for seq in 0..EVENTS {
        let (status, body) = server.post("/api/events", big_event(seq));
        assert_eq!(status, 200, "{body}");
    }
    std::thread::sleep(Duration::from_millis(200));

    // Ends only once every event and the pong came.
    let seen = block_on_within(
        "every event and the pong",
        Duration::from_secs(120),
        async {
            // A ping while frames wait: the task writes the pong behind the frames it holds.
            client
                .ws
                .send(Message::Ping(b"mid".to_vec().into()))
                .await
                .unwrap();
            let mut seen = Vec::new();
            let mut pong = false;
            while seen.len() < EVENTS || !pong {
                let next = futures_lite::future::or(async { client.ws.next().await }, async {
                    smol::Timer::after(Duration::from_secs(10)).await;
                    None
                })
                .await;
                match next {
                    Some(Ok(Message::Text(text))) => {
                        let event: Value = serde_json::from_str(&text).expect("a whole JSON frame");
                        let seq: usize = event["job_id"].as_str().unwrap().parse().unwrap();
                        let message = event["message"].as_str().unwrap();
                        assert_eq!(message, format!("{seq}:{}", "x".repeat(MESSAGE_BYTES)));
                        seen.push(seq);
                    }
                    Some(Ok(Message::Pong(payload))) => {
                        assert_eq!(&payload[..], b"mid");
                        pong = true;
                    }
                    Some(Ok(_)) => {}
                    other => panic!("after {} events: {other:?}", seen.len()),
                }
            }
            seen
        },
    );
    assert_eq!(seen, (0..EVENTS).collect::<Vec<_>>(), "once each, in order");

    // Still a working connection, and the server counted nothing as dropped.
    client.send(json!({"type": "ping"}));
    assert_eq!(client.recv().unwrap()["type"], "pong");
    let (_, stats) = server.get("/api/websocket/stats");
    assert_eq!(stats["messages_dropped"], 0, "{stats}");
}

#[test]
fn many_idle_sockets_each_get_every_small_event_in_order() {
    // The common case: small events to many idle sockets, written by the publishing thread
    // (and, past a threshold, half of them by another executor thread).
    let server = TestServer::start();
    let mut clients: Vec<_> = (0..300).map(|_| server.ws()).collect();
    for client in &mut clients {
        client.send(json!({"type": "subscribe", "channels": ["jobs"]}));
        assert_eq!(client.recv().unwrap()["type"], "subscribed");
    }
    for seq in 0..20 {
        let (status, body) = server.post(
            "/api/events",
            json!({"type": "job_progress", "job_id": "small", "stage": "s", "progress": seq}),
        );
        assert_eq!(
            (status, body["events"][0]["recipients"].clone()),
            (200, json!(300))
        );
    }
    for client in &mut clients {
        let got: Vec<u64> = (0..20)
            .map(|_| {
                client.recv().expect("an event")["progress"]
                    .as_f64()
                    .unwrap() as u64
            })
            .collect();
        assert_eq!(got, (0..20).collect::<Vec<_>>());
    }
}
