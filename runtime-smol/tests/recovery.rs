//! Recovery over real sockets: a WebSocket client and a polling client go away, 1 000 events
//! are published, and both come back with the positions they saw and receive all 1 000, in
//! order, once, with `recovered: true`.

mod support;

use serde_json::{Value, json};
use support::TestServer;

#[test]
fn a_websocket_and_a_polling_client_get_all_1000_events_they_missed_in_order() {
    let server = TestServer::start();
    // Both subscribe and see one event, which gives them a position.
    let mut ws = server.ws();
    ws.send(json!({"type": "subscribe", "channels": ["jobs"]}));
    assert_eq!(ws.recv().unwrap()["type"], "subscribed");
    let poller = server.handshake("lightroom");
    server.subscribe(&poller, &["jobs"]);
    server.poll(&poller);
    let (status, _) = server.post(
        "/api/events",
        json!({"type": "job_started", "job_id": 0, "photo_id": 1}),
    );
    assert_eq!(status, 200);
    let first = ws.recv().unwrap();
    let position = json!({"jobs": {"offset": first["offset"], "epoch": first["epoch"]}});
    let polled = server.poll(&poller)["messages"][0].clone();
    assert_eq!(polled["offset"], first["offset"]);
    // Both go away: the WebSocket drops, the polling client disconnects.
    drop(ws);
    server.post("/ws/disconnect", json!({"client_id": poller}));
    for batch in 0..10 {
        let events: Vec<Value> = (1..=100)
            .map(|i| json!({"type": "job_started", "job_id": batch * 100 + i, "photo_id": 1}))
            .collect();
        let (status, reply) = server.post("/api/events", Value::from(events));
        assert_eq!(status, 200, "{reply}");
    }
    // They come back on new sessions with their positions.
    let mut ws = server.ws();
    ws.send(json!({"type": "subscribe", "channels": ["jobs"], "since": position}));
    let reply = ws.recv().unwrap();
    assert_eq!(reply["recovered"]["jobs"], true, "{reply}");
    let mut got: Vec<u64> = Vec::new();
    while got.len() < 1000 {
        let event = ws.recv().expect("the replay");
        got.push(event["job_id"].as_u64().unwrap());
    }
    assert_eq!(got, (1..=1000).collect::<Vec<_>>());
    assert!(
        ws.silent_for(std::time::Duration::from_millis(200)),
        "nothing twice"
    );

    let poller = server.handshake("lightroom");
    let (_, reply) = server.send(
        &poller,
        json!({"type": "subscribe", "channels": ["jobs"], "since": position}),
    );
    assert_eq!(reply["response"]["recovered"]["jobs"], true);
    let messages = server.poll(&poller)["messages"].as_array().unwrap().clone();
    let got: Vec<u64> = messages
        .iter()
        .filter(|m| m["type"] == "job_started")
        .map(|m| m["job_id"].as_u64().unwrap())
        .collect();
    assert_eq!(got, (1..=1000).collect::<Vec<_>>());
}
