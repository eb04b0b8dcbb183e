//! The WebSocket endpoint with a real async-tungstenite client: welcome, client messages,
//! events both ways with polling clients, resume, server-side closes and limits.

mod support;

use async_tungstenite::tungstenite::Message;
use futures_lite::StreamExt;
use serde_json::json;
use std::time::Duration;
use support::{TestServer, WAIT, WsClient, block_on_within, join_within};

#[test]
fn websocket_and_polling_clients_see_each_others_events() {
    let server = TestServer::start();
    let mut gui = server.ws();
    gui.send(json!({"type": "register", "client_type": "gui", "client_name": "Desktop GUI v2.0"}));
    assert_eq!(gui.recv().unwrap()["type"], "registered");
    gui.send(json!({"type": "subscribe", "channels": ["jobs", "photos", "sessions", "system"]}));
    let subscribed = gui.recv().unwrap();
    assert_eq!(
        subscribed["subscriptions"],
        json!(["jobs", "photos", "sessions", "system"])
    );

    let plugin = server.handshake("lightroom");
    server.subscribe(&plugin, &["jobs"]);
    server.poll(&plugin);
    // The plugin reports progress; the GUI sees it.
    let (status, reply) = server.send(
        &plugin,
        json!({"type": "job_progress", "job_id": "job123", "stage": "processing", "progress": 50, "message": "Applying HSL"}),
    );
    assert_eq!(
        (status, reply["response"]["recipients"].clone()),
        (200, json!(1))
    );
    let event = gui.recv().unwrap();
    assert_eq!(event["type"], "job_progress");
    assert_eq!(event["progress"], 50.0);
    assert!(event["timestamp"].as_str().unwrap().ends_with('Z'));
    // The GUI publishes; the plugin's poll gets it.
    gui.send(
        json!({"type": "job_progress", "job_id": "job123", "stage": "exporting", "progress": 90}),
    );
    assert_eq!(gui.recv().unwrap()["type"], "published");
    let polled = server.poll(&plugin);
    assert_eq!(polled["messages"][0]["stage"], "exporting");
    // Application events reach the socket.
    server.post("/api/events", json!({"type": "session_updated", "session_id": 12, "total_photos": 100, "processed_photos": 45, "status": "processing"}));
    assert_eq!(gui.recv().unwrap()["progress_percent"], 45.0);
}

#[test]
fn ping_messages_and_websocket_pings_are_answered() {
    let server = TestServer::start();
    let mut client = server.ws();
    client.send(json!({"type": "ping"}));
    assert_eq!(client.recv().unwrap()["type"], "pong");
    block_on_within("the pong to a WebSocket ping", WAIT, async {
        client
            .ws
            .send(Message::Ping(b"hi".to_vec().into()))
            .await
            .unwrap();
        match client.ws.next().await.unwrap().unwrap() {
            Message::Pong(payload) => assert_eq!(&payload[..], b"hi"),
            other => panic!("expected a pong, got {other:?}"),
        }
    });
}

#[test]
fn bad_messages_get_error_frames_and_the_socket_stays_open() {
    let server = TestServer::start();
    let mut client = server.ws();
    client.send_frame(Message::text("{oops"));
    assert!(
        client.recv().unwrap()["error"]
            .as_str()
            .unwrap()
            .starts_with("invalid JSON")
    );
    client.send_frame(Message::binary(vec![1, 2, 3]));
    assert!(
        client.recv().unwrap()["error"]
            .as_str()
            .unwrap()
            .contains("binary")
    );
    client.send(json!({"type": "teleport"}));
    let error = client.recv().unwrap();
    assert_eq!(error["type"], "error");
    assert!(error["error"].as_str().unwrap().contains("teleport"));
    client.send(json!({"type": "ping"}));
    assert_eq!(client.recv().unwrap()["type"], "pong");
}

#[test]
fn an_oversized_message_closes_with_1009_and_others_are_unaffected() {
    let server = TestServer::with(|c| c.engine.max_frame_bytes = 1024);
    let mut bystander = server.ws();
    bystander.send(json!({"type": "subscribe", "channels": ["system"]}));
    bystander.recv();
    let mut client = server.ws();
    let huge = json!({"type": "ping", "pad": "x".repeat(4096)});
    client.send_frame(Message::text(huge.to_string()));
    assert_eq!(client.close_code(), Some(1009));
    server.post("/ws/notify/system_status", json!({"status": "ok"}));
    assert_eq!(bystander.recv().unwrap()["type"], "system_status");
}

#[test]
fn an_operator_disconnect_closes_the_socket_with_a_close_frame() {
    let server = TestServer::start();
    let mut client = server.ws();
    let (status, _) = server.post(
        &format!("/api/websocket/disconnect/{}", client.client_id),
        json!({}),
    );
    assert_eq!(status, 200);
    assert_eq!(client.close_code(), Some(4000));
}

#[test]
fn a_new_socket_resumes_a_dropped_session_with_what_was_queued() {
    let server = TestServer::start();
    let mut first = server.ws();
    let id = first.client_id.clone();
    first.send(json!({"type": "subscribe", "channels": ["jobs"]}));
    first.recv();
    // Drop the socket without a close handshake (network loss).
    drop(first);
    std::thread::sleep(Duration::from_millis(200));
    server.post(
        "/ws/notify/job_progress",
        json!({"job_id": "j", "stage": "s", "progress": 7}),
    );
    let mut second = server.ws();
    second.send(json!({"type": "register", "client_type": "web", "client_id": id}));
    let registered = second.recv().unwrap();
    assert_eq!(registered["type"], "registered");
    assert_eq!(registered["resumed"], true);
    assert_eq!(registered["client_id"], id.as_str());
    let queued = second.recv().unwrap();
    assert_eq!(
        (queued["type"].clone(), queued["progress"].clone()),
        (json!("job_progress"), json!(7.0))
    );
    let (_, clients) = server.get("/ws/clients");
    assert_eq!(clients["count"], 1);
}

#[test]
fn a_normal_close_from_the_client_ends_its_session() {
    let server = TestServer::start();
    let mut client = server.ws();
    block_on_within(
        "the client's close frame to go out",
        WAIT,
        client.ws.close(None),
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let (_, clients) = server.get("/ws/clients");
    assert_eq!(
        clients["count"], 1,
        "no close code: the session stays resumable"
    );
    let mut other = server.ws();
    block_on_within(
        "the client's close frame to go out",
        WAIT,
        other
            .ws
            .close(Some(async_tungstenite::tungstenite::protocol::CloseFrame {
                code: 1000.into(),
                reason: "bye".into(),
            })),
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let (_, clients) = server.get("/ws/clients");
    assert_eq!(clients["count"], 1, "a 1000 close ends the session");
}

#[test]
fn graceful_shutdown_closes_sockets_with_1001_and_answers_pending_polls() {
    let mut server = TestServer::start();
    let mut client = server.ws();
    let id = server.handshake("lightroom");
    server.poll(&id);
    let addr = server.addr;
    let poll = std::thread::spawn(move || {
        // Beyond the 30 s long poll.
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(60)))
            .build()
            .new_agent();
        let mut response = agent
            .get(format!("http://{addr}/ws/poll?client_id={id}&wait=30"))
            .call()
            .unwrap();
        (
            response.status().as_u16(),
            response.body_mut().read_to_string().unwrap(),
        )
    });
    std::thread::sleep(Duration::from_millis(300));
    server.shutdown();
    assert_eq!(client.close_code(), Some(1001));
    let (status, body) = join_within(poll, "the long poll's answer", WAIT).unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"messages\":[]"));
    assert!(
        std::net::TcpStream::connect(addr).is_err(),
        "the port is released"
    );
}

#[test]
fn many_sockets_receive_one_broadcast() {
    let server = TestServer::start();
    let mut clients: Vec<WsClient> = (0..50).map(|_| server.ws()).collect();
    for client in &mut clients {
        client.send(json!({"type": "subscribe", "channels": ["export"]}));
        client.recv();
    }
    let (_, reply) = server.post(
        "/api/events",
        json!({"type": "export_completed", "photo_id": 1, "preset_name": "Web", "output_path": "/o.jpg"}),
    );
    assert_eq!(reply["events"][0]["recipients"], 50);
    for client in &mut clients {
        assert_eq!(client.recv().unwrap()["type"], "export_completed");
    }
}
