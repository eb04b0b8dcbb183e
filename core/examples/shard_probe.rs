//! What sharding sessions across engines buys on this machine's cores, measured on the engine
//! alone (issue 17, item 5): the same deliveries made by
//!
//! - `one-thread`: one engine with all subscribers, one thread;
//! - `one-lock`: one engine behind one mutex, driven by `THREADS` threads (the servers today);
//! - `shards`: `THREADS` engines, each with its share of the subscribers and its own thread
//!   (sessions sharded by client, as docs/performance.md proposes).
//!
//! Each publish goes through `POST /api/events`, every frame is taken from `poll_output` and
//! acknowledged, as a runtime does; no sockets, so the figure is the engine's ceiling, not the
//! server's. Usage: `cargo run --release -p livebridge-core --example shard_probe
//! [SUBSCRIBERS] [PUBLISHES] [THREADS]` (defaults 1000, 2000, 2).
use livebridge_core::{
    Config, ConnId, Engine, HttpRequest, Input, Output, RequestId, SeededIds, Time,
};
use serde_json::json;
use std::sync::{Arc, Mutex};
use std::time::Instant;

fn engine_with(subscribers: u64, seed: u64) -> Engine {
    let now = Time::ZERO;
    let mut engine = Engine::new(Config::default(), SeededIds::new(seed), now, 0);
    for i in 0..subscribers {
        let conn = ConnId(i);
        let upgrade = HttpRequest::new("GET", "/ws", "")
            .with_host("localhost:5100")
            .with_peer(format!("10.0.{}.{}", i / 250, i % 250));
        engine
            .open_websocket(now, conn, &upgrade)
            .expect("upgrade accepted");
        let text = r#"{"type":"subscribe","channels":["jobs"]}"#.to_string();
        engine.handle_input(now, Input::WsText { conn, text });
    }
    drain(&mut engine);
    engine
}

/// Takes every output, acknowledging each frame as written; returns the frames.
fn drain(engine: &mut Engine) -> u64 {
    let mut frames = 0;
    let mut acks = Vec::new();
    loop {
        while let Some(output) = engine.poll_output() {
            if let Output::WsFrame { conn, frame } = output {
                frames += 1;
                acks.push(conn);
                drop(frame);
            }
        }
        if acks.is_empty() {
            return frames;
        }
        for conn in acks.drain(..) {
            engine.frames_written(Time::ZERO, conn, 1);
        }
    }
}

fn publish(engine: &mut Engine, request: u64) -> u64 {
    let event = json!({"type": "job_progress", "job_id": "j", "stage": "s", "progress": 50,
                       "message": "x"});
    let http = HttpRequest::new("POST", "/api/events", event.to_string())
        .with_host("localhost:5100")
        .with_peer("127.0.0.1");
    engine.handle_input(
        Time::ZERO,
        Input::Http {
            request: RequestId(request),
            http,
        },
    );
    drain(engine)
}

fn report(name: &str, deliveries: u64, started: Instant) {
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{name:>10}: {deliveries} deliveries in {secs:.3} s = {:.2} M/s",
        deliveries as f64 / secs / 1e6
    );
}

fn main() {
    let arg = |i: usize, default: u64| {
        std::env::args()
            .nth(i)
            .and_then(|a| a.parse().ok())
            .unwrap_or(default)
    };
    let (subscribers, publishes, threads) = (arg(1, 1000), arg(2, 2000), arg(3, 2));
    // History limits how much a run may retain, not how fast it delivers: default config.

    let mut engine = engine_with(subscribers, 1);
    let started = Instant::now();
    let delivered: u64 = (0..publishes).map(|i| publish(&mut engine, i)).sum();
    report("one-thread", delivered, started);

    let shared = Arc::new(Mutex::new(engine_with(subscribers, 2)));
    let started = Instant::now();
    let workers: Vec<_> = (0..threads)
        .map(|t| {
            let shared = Arc::clone(&shared);
            std::thread::spawn(move || {
                (0..publishes / threads)
                    .map(|i| publish(&mut shared.lock().unwrap(), t * publishes + i))
                    .sum::<u64>()
            })
        })
        .collect();
    let delivered: u64 = workers.into_iter().map(|w| w.join().unwrap()).sum();
    report("one-lock", delivered, started);

    // Every shard sees every publish (each holds a share of the channel's subscribers), so
    // the same deliveries are made: publishes × subscribers.
    let shards: Vec<Engine> = (0..threads)
        .map(|t| engine_with(subscribers / threads, 10 + t))
        .collect();
    let started = Instant::now();
    let workers: Vec<_> = shards
        .into_iter()
        .map(|mut shard| {
            std::thread::spawn(move || (0..publishes).map(|i| publish(&mut shard, i)).sum::<u64>())
        })
        .collect();
    let delivered: u64 = workers.into_iter().map(|w| w.join().unwrap()).sum();
    report("shards", delivered, started);
}
