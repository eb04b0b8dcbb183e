//! The standalone axum server's HTTP limits, as the smol server's framer has them: a request
//! head over `max_head_bytes` is refused with 431, a head that does not arrive within
//! `header_timeout` gets the connection closed, and requests within the limits are served.

use livebridge_axum::{Server, ServerConfig};
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

fn start() -> Server {
    Server::start(ServerConfig {
        bind: "127.0.0.1:0".parse().unwrap(),
        threads: 1,
        max_head_bytes: 4 * 1024,
        header_timeout: Duration::from_millis(300),
        ..ServerConfig::default()
    })
    .expect("server")
}

/// Sends `request` and reads until the server closes; what it answered.
fn exchange(server: &Server, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(server.local_addr()).expect("connect");
    // A bound on the wait, not a measurement: a server that never closes fails the test.
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream.write_all(request).expect("write");
    let mut answer = Vec::new();
    match stream.read_to_end(&mut answer) {
        Ok(_) => {}
        Err(error) if error.kind() == ErrorKind::ConnectionReset => {}
        Err(error) => panic!("the server did not close the connection: {error}"),
    }
    String::from_utf8_lossy(&answer).into_owned()
}

#[test]
fn a_head_over_the_limit_is_refused_with_431() {
    let server = start();
    let big = "x".repeat(5 * 1024);
    let request = format!("GET /ws/status HTTP/1.1\r\nHost: localhost\r\nX-Padding: {big}\r\n\r\n");
    let answer = exchange(&server, request.as_bytes());
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
}

#[test]
fn a_head_that_does_not_arrive_in_time_gets_the_connection_closed() {
    let server = start();
    // The head never ends: the server must hang up rather than wait for it.
    let answer = exchange(&server, b"GET /ws/status HTTP/1.1\r\nHost: local");
    assert!(!answer.contains("200 OK"), "{answer}");
}

#[test]
fn requests_within_the_limits_are_served() {
    let server = start();
    let answer = exchange(
        &server,
        b"GET /ws/status HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    );
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("\"success\":true"), "{answer}");
}

#[test]
fn a_server_beyond_loopback_without_an_admin_token_or_with_an_empty_one_does_not_start() {
    let beyond_loopback = ServerConfig {
        bind: "0.0.0.0:0".parse().unwrap(),
        threads: 1,
        ..ServerConfig::default()
    };
    let refused = Server::start(beyond_loopback.clone())
        .err()
        .expect("refused");
    assert_eq!(refused.kind(), ErrorKind::InvalidInput);
    assert!(
        refused.to_string().contains("without --admin-token"),
        "{refused}"
    );

    let mut empty_token = beyond_loopback;
    empty_token.bind = "127.0.0.1:0".parse().unwrap();
    empty_token.settings.engine.admin_token = Some(String::new());
    let refused = Server::start(empty_token).err().expect("refused");
    assert!(
        refused.to_string().contains("--admin-token is empty"),
        "{refused}"
    );
}
