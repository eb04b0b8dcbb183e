//! Body of the raw-HTTP fuzz target in `fuzz/`: arbitrary bytes go through the framer's head
//! parsing and on into the engine, as a connection's bytes would. It lives here so that
//! `cargo test` replays the committed corpus on stable Rust (`tests/fuzz_corpus.rs`).

use crate::connection::to_request;
use crate::framer::{HttpLimits, Parsed, Stop, parse_head};
use livebridge_core::{
    Config, ConnId, Engine, Input, Output, RequestBody, RequestId, SeededIds, Time,
};

/// Feeds `data` as the bytes of one connection; panics when a request goes unanswered or an
/// answer is not JSON.
pub fn http_bytes(data: &[u8]) {
    let limits = HttpLimits {
        max_head_bytes: 2048,
        max_body_bytes: 1024,
    };
    let config = Config {
        max_body_bytes: limits.max_body_bytes,
        ..Config::default()
    };
    let mut engine = Engine::new(config, SeededIds::new(2), Time::ZERO, 0);
    let mut buf = data.to_vec();
    let mut start = 0usize;
    for round in 0u64..64 {
        while buf[start..].starts_with(b"\n") || buf[start..].starts_with(b"\r\n") {
            start += if buf[start] == b'\r' { 2 } else { 1 };
        }
        let request = RequestId(round);
        let (input, last) = match parse_head(&mut buf[start..], &limits) {
            Parsed::Partial => return,
            Parsed::Request {
                head, length, last, ..
            } => {
                let Some(end) = usize::try_from(length)
                    .ok()
                    .and_then(|l| start.checked_add(l))
                else {
                    return;
                };
                if end > buf.len() {
                    return;
                }
                let body_length = usize::try_from(head.content_length.unwrap_or(0)).unwrap_or(0);
                let body = buf[end - body_length..end].to_vec();
                start = end;
                let http = to_request(head, RequestBody::Complete(body), None);
                (Input::Http { request, http }, last)
            }
            Parsed::Stopped(Stop::Upgrade(head)) => {
                let upgrade = to_request(head, RequestBody::default(), None);
                (
                    Input::WsOpen {
                        conn: ConnId(1),
                        upgrade,
                    },
                    true,
                )
            }
            Parsed::Stopped(Stop::BodyRefused(head, declared)) => {
                let body = match declared {
                    Some(declared) => RequestBody::TooLarge { declared },
                    None => RequestBody::LengthRequired,
                };
                let http = to_request(head, body, None);
                (Input::Http { request, http }, true)
            }
            Parsed::Stopped(Stop::Malformed(status, _)) => {
                assert!(status == 400 || status == 431);
                return;
            }
            Parsed::Stopped(Stop::Eof) => return,
        };
        // Only a long poll may be answered later; everything else is answered at once.
        let may_wait = matches!(&input, Input::Http { http, .. }
            if http.target.starts_with("/ws/poll") && http.target.contains("wait="));
        engine.handle_input(Time::from_millis(round), input);
        let mut answered = false;
        while let Some(output) = engine.poll_output() {
            match output {
                Output::Reply { request: r, reply } if r == request => {
                    answered = true;
                    if !reply.body.is_empty()
                        && reply.content_type == livebridge_core::ContentType::Json
                    {
                        serde_json::from_str::<serde_json::Value>(&reply.body).expect("JSON reply");
                    }
                }
                Output::WsAccept { .. } | Output::WsReject { .. } => answered = true,
                _ => {}
            }
        }
        assert!(answered || may_wait, "request {round} went unanswered");
        if last {
            return;
        }
    }
}
