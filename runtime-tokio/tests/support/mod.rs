//! What the axum runtime's tests share: one HTTP/1.1 request over a real socket.

use serde_json::Value;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// One HTTP/1.1 request on a fresh connection; the status and the JSON body.
pub fn http(addr: SocketAddr, method: &str, target: &str, body: &str) -> (u16, Value) {
    let mut stream = TcpStream::connect(addr).expect("connect");
    // A bound on the wait: a server that never answers (or never closes) fails the test.
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("read timeout");
    write!(
        stream,
        "{method} {target} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .expect("write");
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .unwrap_or_else(|e| panic!("{method} {target}: no whole answer within 20 s: {e}"));
    let status = response[9..12].parse().expect("status");
    let (_, body) = response.split_once("\r\n\r\n").expect("head");
    (status, serde_json::from_str(body).expect("JSON body"))
}
