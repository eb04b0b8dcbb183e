//! Bodies of the fuzz targets in `fuzz/`. They live here, not in the fuzz crate, so that
//! `cargo test` replays the committed corpus on stable Rust in every CI run
//! (`core/tests/fuzz_corpus.rs`). Each panics when an invariant breaks.

use crate::{
    Config, ConnId, Engine, HttpRequest, Input, Output, RequestId, SeededIds, Time, TransportKind,
};
use std::collections::BTreeSet;
use std::time::Duration;

/// Small limits so short inputs reach overflow, eviction and the write window.
fn fuzz_config() -> Config {
    Config {
        queue_limit: 4,
        ws_write_window: 2,
        stale_after: Duration::from_secs(10),
        long_poll_max: Duration::from_secs(3),
        ping_interval: Duration::from_secs(2),
        max_subscriptions: 4,
        max_clients: 16,
        ..Config::default()
    }
}

/// Drains the outputs, acknowledging frames like a socket writer, and checks that every
/// frame is a JSON object with a `type` and every reply body is JSON (or empty).
fn drain(engine: &mut Engine, now: Time, answered: &mut BTreeSet<RequestId>) -> Vec<Output> {
    let mut all = Vec::new();
    loop {
        let mut acks = Vec::new();
        while let Some(output) = engine.poll_output() {
            match &output {
                Output::WsFrame { conn, frame } => {
                    let value: serde_json::Value =
                        serde_json::from_str(frame).expect("frames are JSON");
                    assert!(value["type"].is_string(), "frame without type: {frame}");
                    acks.push(*conn);
                }
                Output::Reply { request, reply } => {
                    assert!(answered.insert(*request), "{request} answered twice");
                    if !reply.body.is_empty() && reply.content_type == crate::ContentType::Json {
                        serde_json::from_str::<serde_json::Value>(&reply.body)
                            .expect("replies are JSON");
                    }
                }
                _ => {}
            }
            all.push(output);
        }
        if acks.is_empty() {
            return all;
        }
        for conn in acks {
            engine.handle_input(now, Input::WsWritten { conn, frames: 1 });
        }
    }
}

/// Target 1: one WebSocket text message of arbitrary bytes. It must get a reply frame (an
/// answer or an `error`), and the connection must stay open.
pub fn client_message(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut engine = Engine::new(fuzz_config(), SeededIds::new(0), Time::ZERO, 0);
    let mut answered = BTreeSet::new();
    let conn = ConnId(1);
    let upgrade = HttpRequest::new("GET", "/ws", "")
        .with_host("localhost:5100")
        .with_peer("127.0.0.1");
    engine
        .open_websocket(Time::ZERO, conn, &upgrade)
        .expect("a plain upgrade on loopback is accepted");
    drain(&mut engine, Time::ZERO, &mut answered);
    let now = Time::from_millis(1);
    engine.handle_input(
        now,
        Input::WsText {
            conn,
            text: text.to_string(),
        },
    );
    let outputs = drain(&mut engine, now, &mut answered);
    let frames = outputs
        .iter()
        .filter(|o| matches!(o, Output::WsFrame { conn: c, .. } if *c == conn))
        .count();
    assert!(frames >= 1, "no reply to {text:?}");
    assert!(
        !outputs.iter().any(|o| matches!(o, Output::WsClose { .. })),
        "a message closed the connection: {text:?}"
    );
    // The same message over HTTP gets a JSON answer too.
    if let Ok(message) = serde_json::from_str::<serde_json::Value>(text) {
        let id = engine.sessions()[0].client_id;
        let body = serde_json::json!({"client_id": id.to_string(), "message": message});
        let http = HttpRequest::new("POST", "/ws/send", body.to_string())
            .with_host("localhost:5100")
            .with_peer("127.0.0.1");
        engine.handle_input(
            now,
            Input::Http {
                request: RequestId(1),
                http,
            },
        );
        drain(&mut engine, now, &mut answered);
        assert!(answered.contains(&RequestId(1)));
    }
}

/// Target 2: an arbitrary sequence of inputs, decoded from bytes; the engine's invariants are
/// checked after every step.
pub fn engine_inputs(data: &[u8]) {
    let config = fuzz_config();
    let mut engine = Engine::new(config.clone(), SeededIds::new(1), Time::ZERO, 0);
    let mut now = Time::ZERO;
    let mut answered = BTreeSet::new();
    let mut sent = BTreeSet::new();
    let mut next_request = 0u64;
    let mut conns: Vec<ConnId> = Vec::new();
    let mut bytes = data.iter().copied();
    let channels = ["jobs", "photos", "system"];
    while let Some(op) = bytes.next() {
        let arg = bytes.next().unwrap_or(0);
        let clients: Vec<_> = engine.sessions().iter().map(|s| s.client_id).collect();
        let client = (!clients.is_empty()).then(|| clients[usize::from(arg) % clients.len()]);
        let channel = channels[usize::from(arg) % channels.len()];
        let input = match op % 12 {
            0 => http(
                "POST",
                "/ws/handshake",
                r#"{"client_type":"fuzz"}"#.to_string(),
            ),
            1 => match client {
                Some(id) => http(
                    "GET",
                    &format!("/ws/poll?client_id={id}&wait={}", arg % 5),
                    String::new(),
                ),
                None => continue,
            },
            2 => match client {
                Some(id) => http(
                    "POST",
                    "/ws/send",
                    format!(
                        r#"{{"client_id":"{id}","message":{{"type":"subscribe","channels":["{channel}"]}}}}"#
                    ),
                ),
                None => continue,
            },
            3 => http(
                "POST",
                "/ws/broadcast",
                format!(r#"{{"message":{{"type":"probe","n":{arg}}},"channel":"{channel}"}}"#),
            ),
            4 => http(
                "POST",
                "/api/events",
                format!(
                    r#"{{"type":"job_progress","job_id":{arg},"stage":"s","progress":{}}}"#,
                    arg % 101
                ),
            ),
            5 => {
                let conn = ConnId(conns.len() as u64 + 1);
                conns.push(conn);
                let upgrade = HttpRequest::new("GET", "/ws", "")
                    .with_host("localhost:5100")
                    .with_peer("127.0.0.1");
                // Refusals are fine here (over max_clients, say); they leave no trace.
                let _ = engine.open_websocket(now, conn, &upgrade);
                drain(&mut engine, now, &mut answered);
                check(&engine, &config, now);
                continue;
            }
            6 => match conns.get(usize::from(arg) % conns.len().max(1)) {
                Some(&conn) => Input::WsText {
                    conn,
                    text: format!(r#"{{"type":"subscribe","channels":["{channel}"]}}"#),
                },
                None => continue,
            },
            7 => match conns.get(usize::from(arg) % conns.len().max(1)) {
                Some(&conn) => Input::WsClosed {
                    conn,
                    code: (arg % 2 == 0).then_some(1000),
                },
                None => continue,
            },
            8 => {
                now = now + Duration::from_millis(u64::from(arg) * 50);
                engine.handle_timeout(now);
                check(&engine, &config, now);
                drain(&mut engine, now, &mut answered);
                continue;
            }
            9 => match (client, clients.len()) {
                (Some(id), _) => {
                    let body = format!(r#"{{"client_type":"fuzz","client_id":"{id}"}}"#);
                    http("POST", "/ws/handshake", body)
                }
                _ => continue,
            },
            10 => match client {
                Some(id) => http(
                    "POST",
                    "/ws/disconnect",
                    format!(r#"{{"client_id":"{id}"}}"#),
                ),
                None => continue,
            },
            _ => {
                let minutes = f64::from(arg) / 100.0;
                http(
                    "POST",
                    "/ws/cleanup",
                    format!(r#"{{"timeout_minutes":{minutes}}}"#),
                )
            }
        };
        let input = match input {
            Input::Http { http, .. } => {
                next_request += 1;
                sent.insert(RequestId(next_request));
                Input::Http {
                    request: RequestId(next_request),
                    http,
                }
            }
            other => other,
        };
        engine.handle_input(now, input);
        drain(&mut engine, now, &mut answered);
        check(&engine, &config, now);
    }
    // Every request is answered once the longest wait has passed.
    now = now + config.long_poll_max;
    engine.handle_timeout(now);
    drain(&mut engine, now, &mut answered);
    assert_eq!(sent, answered, "unanswered requests");
}

fn http(method: &str, target: &str, body: String) -> Input {
    Input::Http {
        request: RequestId(0),
        http: HttpRequest::new(method, target, body)
            .with_host("localhost:5100")
            .with_peer("127.0.0.1"),
    }
}

fn check(engine: &Engine, config: &Config, now: Time) {
    for session in engine.sessions() {
        assert!(session.queued <= config.queue_limit, "queue over its bound");
        if session.attached != Some(TransportKind::Polling) {
            assert!(
                now.saturating_since(session.last_activity) < config.stale_after,
                "a stale session is alive"
            );
        }
    }
    if let Some((deadline, _)) = engine.poll_timeout() {
        assert!(deadline > now, "a deadline in the past was not handled");
    }
}
