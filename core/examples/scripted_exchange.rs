//! Drives the engine from a plain loop, with no async runtime and no sockets: a Lightroom
//! plugin long-polls over HTTP, a desktop GUI holds a WebSocket, and the application
//! publishes job events. Time is simulated: the loop jumps to the next scripted action or the
//! engine's next deadline, whichever comes first.
//!
//! Run with `cargo run -p livebridge-core --example scripted_exchange`.

use livebridge_core::{
    Config, ConnId, Engine, HttpRequest, Input, Output, RequestId, SeededIds, Time,
};

/// What the script does at a given time.
enum Action {
    Input(Input),
    /// An input built from the Lightroom client id learned from the handshake reply.
    WithPluginId(fn(&str) -> Input),
    /// A WebSocket upgrade on this connection, decided at once.
    OpenWebSocket(ConnId),
}

fn http(request: u64, method: &str, target: &str, body: &str) -> Input {
    Input::Http {
        request: RequestId(request),
        http: HttpRequest::new(method, target, body)
            .with_host("localhost:5100")
            .with_peer("127.0.0.1"),
    }
}

fn main() {
    let gui = ConnId(1);
    let script: Vec<(u64, Action)> = vec![
        (
            0,
            Action::Input(http(
                1,
                "POST",
                "/ws/handshake",
                r#"{"client_type":"lightroom","protocol_version":"1.0"}"#,
            )),
        ),
        (
            0,
            Action::WithPluginId(|id| {
                http(
                    2,
                    "POST",
                    "/ws/send",
                    &format!(
                        r#"{{"client_id":"{id}","message":{{"type":"subscribe","channels":["jobs"]}}}}"#
                    ),
                )
            }),
        ),
        (
            0,
            Action::WithPluginId(|id| http(3, "GET", &format!("/ws/poll?client_id={id}"), "")),
        ),
        // The plugin now waits up to 20 s for something to happen.
        (
            100,
            Action::WithPluginId(|id| {
                http(4, "GET", &format!("/ws/poll?client_id={id}&wait=20"), "")
            }),
        ),
        (200, Action::OpenWebSocket(gui)),
        (
            210,
            Action::Input(Input::WsText {
                conn: gui,
                text: r#"{"type":"register","client_type":"gui","client_name":"Desktop GUI"}"#
                    .into(),
            }),
        ),
        (
            220,
            Action::Input(Input::WsText {
                conn: gui,
                text: r#"{"type":"subscribe","channels":["jobs"]}"#.into(),
            }),
        ),
        // The application publishes; the pending long poll and the WebSocket get it at once.
        (
            1_500,
            Action::Input(http(
                5,
                "POST",
                "/api/events",
                r#"{"type":"job_progress","job_id":"job123","stage":"processing","progress":50,"message":"Applying settings"}"#,
            )),
        ),
        (
            1_600,
            Action::WithPluginId(|id| {
                http(6, "GET", &format!("/ws/poll?client_id={id}&wait=2"), "")
            }),
        ),
    ];

    let mut now = Time::ZERO;
    let mut engine = Engine::new(Config::default(), SeededIds::new(7), now, 1_795_608_000_000);
    let mut plugin_id = String::new();
    let end = Time::from_millis(40_000);
    let mut script = script.into_iter().peekable();

    loop {
        let next_action = script.peek().map(|(at, _)| Time::from_millis(*at));
        let next_deadline = engine.poll_timeout().map(|(at, _)| at);
        let next = match (next_action, next_deadline) {
            (Some(a), Some(d)) => a.min(d),
            (Some(a), None) => a,
            (None, Some(d)) => d,
            (None, None) => break,
        };
        if next > end {
            break;
        }
        now = now.max(next);
        if next_action == Some(next) {
            let (_, action) = script.next().expect("peeked");
            match action {
                Action::Input(input) => engine.handle_input(now, input),
                Action::WithPluginId(build) => engine.handle_input(now, build(&plugin_id)),
                Action::OpenWebSocket(conn) => {
                    let upgrade = HttpRequest::new("GET", "/ws", "")
                        .with_host("localhost:5100")
                        .with_peer("127.0.0.1");
                    match engine.open_websocket(now, conn, &upgrade) {
                        Ok(()) => println!("[{now}] {conn} upgraded"),
                        Err(reply) => println!("[{now}] {conn} refused: {}", reply.body),
                    }
                }
            }
        } else {
            if let Some((_, reason)) = engine.poll_timeout() {
                println!("[{now}] timer: {reason}");
            }
            engine.handle_timeout(now);
        }
        while let Some(output) = engine.poll_output() {
            match output {
                Output::Reply { request, reply } => {
                    if request == RequestId(1) {
                        let body: serde_json::Value = serde_json::from_str(&reply.body).unwrap();
                        plugin_id = body["client_id"].as_str().unwrap().to_string();
                    }
                    println!("[{now}] HTTP {request} <- {} {}", reply.status, reply.body);
                }
                Output::WsFrame { conn, frame } => {
                    println!("[{now}] {conn} <- {frame}");
                    // A real writer reports frames once they are on the wire.
                    engine.handle_input(now, Input::WsWritten { conn, frames: 1 });
                }
                Output::WsPing { conn } => {
                    println!("[{now}] {conn} <- ping");
                    engine.handle_input(now, Input::WsPong { conn });
                }
                other => println!("[{now}] {other:?}"),
            }
        }
    }
    println!("[{now}] done: {} sessions", engine.sessions().len());
}
