//! Instruction-count probe of the delivery path: 1 000 WebSocket subscribers of `jobs`, then
//! `PUBLISHES` (default 200) publishes, every frame acknowledged at once. Wall-clock engine
//! benchmarks on a shared 2-core machine vary by ±10 %; instructions counted by callgrind do
//! not, so two commits are compared by running this under valgrind with `PUBLISHES=0` and
//! `PUBLISHES=200` and subtracting (see `docs/performance.md`).
use livebridge_core::{
    Config, ConnId, Engine, HttpRequest, Input, Output, RequestId, SeededIds, Time,
};
use serde_json::json;

fn drain(engine: &mut Engine, now: Time) {
    let mut acks = Vec::new();
    loop {
        while let Some(output) = engine.poll_output() {
            // Moved out of the output as the runtimes do (they hand the frame to the
            // connection's outbox), so no `Output` drop glue runs per delivery.
            if let Output::WsFrame { conn, frame } = output {
                acks.push(conn);
                drop(frame);
            }
        }
        if acks.is_empty() {
            return;
        }
        for conn in acks.drain(..) {
            engine.frames_written(now, conn, 1);
        }
    }
}

fn main() {
    let now = Time::ZERO;
    let mut engine = Engine::new(Config::default(), SeededIds::new(1), now, 1_764_000_000_000);
    for i in 0..1_000u64 {
        let conn = ConnId(i);
        engine
            .open_websocket(
                now,
                conn,
                &HttpRequest::new("GET", "/ws", "")
                    .with_host("localhost:5100")
                    .with_peer("127.0.0.1"),
            )
            .expect("upgrade accepted");
        engine.handle_input(
            now,
            Input::WsText {
                conn,
                text: r#"{"type":"subscribe","channels":["jobs"]}"#.to_string(),
            },
        );
    }
    drain(&mut engine, now);
    let publishes: u64 = std::env::var("PUBLISHES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    for i in 0..publishes {
        let event = json!({"type": "job_progress", "job_id": "j", "stage": "s", "progress": 50, "message": "x"});
        // Through HTTP, as the servers publish (a command's typed result costs a little more
        // per publish; the delivery path is the same).
        let http = HttpRequest::new("POST", "/api/events", event.to_string())
            .with_host("localhost:5100")
            .with_peer("127.0.0.1");
        engine.handle_input(
            now,
            Input::Http {
                request: RequestId(i),
                http,
            },
        );
        drain(&mut engine, now);
    }
    println!("{publishes} publishes to 1 000 subscribers");
}
