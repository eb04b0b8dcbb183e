//! A reply sent before the request's body was read reaches the client (issue 27): a client
//! that sends its whole body before reading — ureq here, Python's urllib and most HTTP
//! libraries — gets the 413 for an oversized body, not a reset while it is still sending.
//! Runs on both runtimes (LIVEBRIDGE_TEST_RUNTIME=axum, scripts/test.sh).

mod support;

use std::time::Duration;
use support::TestServer;

/// A body well over the 64 KiB default limit, large enough that the kernel's buffers cannot
/// absorb it: without a lingering close the server's close turns into a reset mid-upload.
const OVERSIZED: usize = 1024 * 1024;

/// An HTTP client as applications use one: it sends the whole request, then reads.
fn agent() -> ureq::Agent {
    support::agent(Duration::from_secs(20))
}

#[test]
fn clients_that_send_a_whole_oversized_body_read_the_413() {
    let server = TestServer::start();
    let agent = agent();
    let body = format!(
        r#"{{"client_type": "lightroom", "padding": "{}"}}"#,
        "x".repeat(OVERSIZED)
    );
    let mut outcomes = std::collections::BTreeMap::<String, usize>::new();
    for _ in 0..100 {
        let outcome = match agent
            .post(&server.url("/ws/handshake"))
            .header("content-type", "application/json")
            .send(&body)
        {
            Ok(mut response) => {
                let status = response.status().as_u16();
                let text = response.body_mut().read_to_string().unwrap_or_default();
                let value: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
                if status == 413 && value["success"] == false && value["error"].is_string() {
                    "413 with its JSON error".to_string()
                } else {
                    format!("{status}: {text}")
                }
            }
            Err(error) => format!("no reply: {error}"),
        };
        *outcomes.entry(outcome).or_default() += 1;
    }
    let read = outcomes
        .get("413 with its JSON error")
        .copied()
        .unwrap_or(0);
    assert!(read >= 99, "of 100 clients: {outcomes:?}");
    // The server is fine afterwards.
    let (status, _) = server.get("/api/system/health");
    assert_eq!(status, 200);
}

#[test]
fn clients_that_stream_an_unsized_body_read_the_411() {
    let server = TestServer::start();
    let agent = agent();
    let mut read = 0;
    for _ in 0..20 {
        // A reader of unknown length: ureq sends it chunked, which the hub does not take.
        let body = std::io::Cursor::new(vec![b'x'; OVERSIZED]);
        let reply = agent
            .post(&server.url("/api/events"))
            .header("content-type", "application/json")
            .send(ureq::SendBody::from_reader(&mut { body }));
        if let Ok(response) = reply {
            read += usize::from(response.status().as_u16() == 411);
        }
    }
    assert!(read >= 19, "{read} of 20 clients read the 411");
}

#[test]
fn a_client_that_never_stops_sending_is_cut_off_after_the_linger_timeout() {
    use std::io::{Read, Write};
    let server = TestServer::with(|config| {
        config.linger.timeout = Duration::from_millis(300);
    });
    let mut socket = std::net::TcpStream::connect(server.addr).unwrap();
    socket
        .set_write_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let head = format!(
        "POST /ws/handshake HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n\
         Content-Length: 1000000000\r\n\r\n",
        server.addr
    );
    socket.write_all(head.as_bytes()).unwrap();
    // Keep sending for up to 20 s: the server must close (a reset, or a write error) long
    // before that, having sent its 413 first.
    let chunk = vec![b'x'; 64 * 1024];
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let cut_off = loop {
        if std::time::Instant::now() > deadline {
            break false;
        }
        if socket.write_all(&chunk).is_err() {
            break true;
        }
    };
    assert!(
        cut_off,
        "the server still read after 20 s: lingering is not bounded"
    );
    let mut reply = Vec::new();
    let _ = socket.read_to_end(&mut reply);
}
