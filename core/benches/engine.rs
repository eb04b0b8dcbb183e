//! Engine benchmarks: the cost of the protocol state machine alone, without sockets.
//!
//! Every benchmark drives the engine the way a runtime does: feed an input, drain
//! `poll_output`, and acknowledge each WebSocket frame with `Engine::frames_written` (what
//! `Input::WsWritten` does, called directly as the runtimes do) so the write window never fills. Publish benchmarks report throughput in delivered messages
//! (`Throughput::Elements(subscribers)`), so criterion prints deliveries per second.
//!
//! Run with `cargo bench -p livebridge-core --bench engine`; results and the machine they
//! were taken on are in `docs/performance.md`.

use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use livebridge_core::{
    Command, Config, ConnId, Engine, HttpRequest, Input, Output, RequestId, SeededIds, Time,
};
use std::hint::black_box;
use std::time::Duration;

const UNIX_MILLIS: u64 = 1_764_000_000_000;

/// A fresh engine with room for `clients` sessions.
fn engine(clients: usize) -> Engine {
    let config = Config {
        max_clients: clients.max(10_000) + 16,
        ..Config::default()
    };
    Engine::new(config, SeededIds::new(1), Time::ZERO, UNIX_MILLIS)
}

/// Drains every output, acknowledging frames per connection as a runtime's writer would
/// (one `WsWritten` per connection and batch). Returns the number of frames.
fn drain_and_ack(engine: &mut Engine, now: Time, acks: &mut Vec<ConnId>) -> usize {
    acks.clear();
    let mut frames = 0;
    while let Some(output) = engine.poll_output() {
        if let Output::WsFrame { conn, frame } = output {
            black_box(&frame);
            frames += 1;
            acks.push(conn);
        } else {
            black_box(&output);
        }
    }
    for &conn in acks.iter() {
        engine.frames_written(now, conn, 1);
    }
    // Acks may open windows on which queued frames go out; none are queued here.
    while let Some(output) = engine.poll_output() {
        black_box(&output);
    }
    frames
}

/// Drains outputs without acknowledging anything.
fn drain(engine: &mut Engine) -> usize {
    let mut count = 0;
    while let Some(output) = engine.poll_output() {
        black_box(&output);
        count += 1;
    }
    count
}

/// An engine with `subscribers` WebSocket sessions subscribed to `jobs`, all frames acked.
fn ws_engine(subscribers: usize) -> Engine {
    let mut engine = engine(subscribers);
    let now = Time::ZERO;
    let mut acks = Vec::new();
    for i in 0..subscribers {
        let conn = ConnId(i as u64 + 1);
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
        drain_and_ack(&mut engine, now, &mut acks);
    }
    engine
}

/// A `job_progress` event whose encoded frame is about `frame_bytes` long.
fn event_json(frame_bytes: usize) -> String {
    let base = r#"{"type":"job_progress","job_id":"j","stage":"s","progress":1,"message":""}"#;
    // The server adds `"timestamp":"2026-11-25T15:08:21.123Z",` (39 bytes).
    let pad = frame_bytes.saturating_sub(base.len() + 39);
    format!(
        r#"{{"type":"job_progress","job_id":"j","stage":"s","progress":1,"message":"{}"}}"#,
        "x".repeat(pad)
    )
}

fn publish_request(body: &str) -> HttpRequest {
    HttpRequest::new("POST", "/api/events", body)
        .with_host("localhost:5100")
        .with_peer("127.0.0.1")
}

/// Publish one event over `POST /api/events` to 1, 100 and 10 000 WebSocket subscribers.
fn publish_websocket(c: &mut Criterion) {
    let mut group = c.benchmark_group("publish_ws");
    group.sample_size(20);
    group.warm_up_time(Duration::from_millis(500));
    group.measurement_time(Duration::from_secs(2));
    let body = event_json(128);
    for subscribers in [1usize, 100, 10_000] {
        let mut engine = ws_engine(subscribers);
        let mut acks = Vec::with_capacity(subscribers);
        let mut request = 0u64;
        group.throughput(Throughput::Elements(subscribers as u64));
        group.bench_function(BenchmarkId::new("http", subscribers), |b| {
            b.iter(|| {
                request += 1;
                engine.handle_input(
                    Time::ZERO,
                    Input::Http {
                        request: RequestId(request),
                        http: publish_request(&body),
                    },
                );
                let frames = drain_and_ack(&mut engine, Time::ZERO, &mut acks);
                debug_assert_eq!(frames, subscribers);
                frames
            })
        });
    }
    group.finish();
}

/// The same publish through `Command::Publish` (no HTTP routing or body parse), and a
/// variant that acknowledges nothing per frame but one `WsWritten` per connection for a batch
/// of 32 publishes — the runtime batches writes the same way.
fn publish_command(c: &mut Criterion) {
    let mut group = c.benchmark_group("publish_ws_command");
    group.sample_size(20);
    group.warm_up_time(Duration::from_millis(500));
    group.measurement_time(Duration::from_secs(2));
    let event: serde_json::Value = serde_json::from_str(&event_json(128)).unwrap();
    let subscribers = 10_000usize;
    let mut engine = ws_engine(subscribers);
    let mut acks = Vec::with_capacity(subscribers);
    let mut request = 0u64;
    group.throughput(Throughput::Elements(subscribers as u64));
    group.bench_function(BenchmarkId::new("ack_each", subscribers), |b| {
        b.iter(|| {
            request += 1;
            engine.handle_input(
                Time::ZERO,
                Input::Command {
                    request: RequestId(request),
                    command: Command::Publish {
                        events: vec![event.clone()],
                    },
                },
            );
            drain_and_ack(&mut engine, Time::ZERO, &mut acks)
        })
    });
    const BATCH: usize = 32;
    group.throughput(Throughput::Elements((subscribers * BATCH) as u64));
    group.bench_function(BenchmarkId::new("ack_per_32", subscribers), |b| {
        b.iter(|| {
            for _ in 0..BATCH {
                request += 1;
                engine.handle_input(
                    Time::ZERO,
                    Input::Command {
                        request: RequestId(request),
                        command: Command::Publish {
                            events: vec![event.clone()],
                        },
                    },
                );
            }
            let frames = drain(&mut engine);
            for i in 0..subscribers {
                engine.frames_written(Time::ZERO, ConnId(i as u64 + 1), BATCH);
            }
            drain(&mut engine);
            frames
        })
    });
    group.finish();
}

/// Encoding once: the cost per delivery at 1 000 subscribers should barely move between a
/// 128-byte and a 4 KiB frame, since the frame is encoded once and shared by `Arc`.
fn publish_payload_size(c: &mut Criterion) {
    let mut group = c.benchmark_group("publish_ws_payload");
    group.sample_size(20);
    group.warm_up_time(Duration::from_millis(500));
    group.measurement_time(Duration::from_secs(2));
    let subscribers = 1_000usize;
    for size in [128usize, 4096] {
        let body = event_json(size);
        let mut engine = ws_engine(subscribers);
        let mut acks = Vec::with_capacity(subscribers);
        let mut request = 0u64;
        group.throughput(Throughput::Elements(subscribers as u64));
        group.bench_function(BenchmarkId::new("bytes", size), |b| {
            b.iter(|| {
                request += 1;
                engine.handle_input(
                    Time::ZERO,
                    Input::Http {
                        request: RequestId(request),
                        http: publish_request(&body),
                    },
                );
                drain_and_ack(&mut engine, Time::ZERO, &mut acks)
            })
        });
    }
    group.finish();
}

/// Handshake of a polling client, and its client id.
fn handshake(engine: &mut Engine, now: Time, request: u64) -> String {
    engine.handle_input(
        now,
        Input::Http {
            request: RequestId(request),
            http: HttpRequest::new("POST", "/ws/handshake", r#"{"client_type":"lightroom"}"#)
                .with_host("localhost:5100")
                .with_peer("127.0.0.1"),
        },
    );
    let mut id = String::new();
    while let Some(output) = engine.poll_output() {
        if let Output::Reply { reply, .. } = output {
            let body: serde_json::Value = serde_json::from_str(&reply.body).unwrap();
            id = body["client_id"].as_str().unwrap().to_string();
        }
    }
    id
}

/// A polling client's cycle: publish one event to it, then poll (without wait) and take the
/// reply; and the same with the poll pending first (long poll answered by the publish).
fn poll_cycle(c: &mut Criterion) {
    let mut group = c.benchmark_group("poll");
    group.sample_size(20);
    group.warm_up_time(Duration::from_millis(500));
    group.measurement_time(Duration::from_secs(2));
    let body = event_json(128);
    let mut engine = engine(1);
    let mut request = 1u64;
    let id = handshake(&mut engine, Time::ZERO, request);
    let send =
        format!(r#"{{"client_id":"{id}","message":{{"type":"subscribe","channels":["jobs"]}}}}"#);
    request += 1;
    engine.handle_input(
        Time::ZERO,
        Input::Http {
            request: RequestId(request),
            http: HttpRequest::new("POST", "/ws/send", send)
                .with_host("localhost:5100")
                .with_peer("127.0.0.1"),
        },
    );
    drain(&mut engine);
    let poll = format!("/ws/poll?client_id={id}");
    let long_poll = format!("/ws/poll?client_id={id}&wait=20");
    let mut now = Time::ZERO;
    group.throughput(Throughput::Elements(1));
    group.bench_function("publish_then_poll", |b| {
        b.iter(|| {
            request += 1;
            engine.handle_input(
                now,
                Input::Http {
                    request: RequestId(request),
                    http: publish_request(&body),
                },
            );
            request += 1;
            engine.handle_input(
                now,
                Input::Http {
                    request: RequestId(request),
                    http: HttpRequest::new("GET", &poll, "")
                        .with_host("localhost:5100")
                        .with_peer("127.0.0.1"),
                },
            );
            drain(&mut engine)
        })
    });
    group.bench_function("long_poll_then_publish", |b| {
        b.iter(|| {
            now = now + Duration::from_micros(1);
            request += 1;
            engine.handle_input(
                now,
                Input::Http {
                    request: RequestId(request),
                    http: HttpRequest::new("GET", &long_poll, "")
                        .with_host("localhost:5100")
                        .with_peer("127.0.0.1"),
                },
            );
            request += 1;
            engine.handle_input(
                now,
                Input::Http {
                    request: RequestId(request),
                    http: publish_request(&body),
                },
            );
            drain(&mut engine)
        })
    });
    group.finish();
}

/// New sessions: a polling handshake, a WebSocket open (with its `connection_established`),
/// and a WebSocket `subscribe`.
fn sessions(c: &mut Criterion) {
    let mut group = c.benchmark_group("session");
    group.sample_size(20);
    group.warm_up_time(Duration::from_millis(500));
    group.measurement_time(Duration::from_secs(2));
    const N: usize = 1_000;
    group.throughput(Throughput::Elements(N as u64));
    group.bench_function("handshake_x1000", |b| {
        b.iter_batched(
            || engine(N),
            |mut engine| {
                for i in 0..N {
                    black_box(handshake(&mut engine, Time::ZERO, i as u64 + 1));
                }
                engine
            },
            BatchSize::PerIteration,
        )
    });
    group.bench_function("ws_open_x1000", |b| {
        b.iter_batched(
            || engine(N),
            |mut engine| {
                let mut acks = Vec::new();
                for i in 0..N {
                    engine
                        .open_websocket(
                            Time::ZERO,
                            ConnId(i as u64 + 1),
                            &HttpRequest::new("GET", "/ws", "")
                                .with_host("localhost:5100")
                                .with_peer("127.0.0.1"),
                        )
                        .expect("upgrade accepted");
                    drain_and_ack(&mut engine, Time::ZERO, &mut acks);
                }
                engine
            },
            BatchSize::PerIteration,
        )
    });
    group.bench_function("ws_subscribe_x1000", |b| {
        b.iter_batched(
            || {
                let mut engine = engine(N);
                let mut acks = Vec::new();
                for i in 0..N {
                    engine
                        .open_websocket(
                            Time::ZERO,
                            ConnId(i as u64 + 1),
                            &HttpRequest::new("GET", "/ws", "")
                                .with_host("localhost:5100")
                                .with_peer("127.0.0.1"),
                        )
                        .expect("upgrade accepted");
                    drain_and_ack(&mut engine, Time::ZERO, &mut acks);
                }
                engine
            },
            |mut engine| {
                let mut acks = Vec::new();
                for i in 0..N {
                    engine.handle_input(
                        Time::ZERO,
                        Input::WsText {
                            conn: ConnId(i as u64 + 1),
                            text: r#"{"type":"subscribe","channels":["jobs"]}"#.to_string(),
                        },
                    );
                    drain_and_ack(&mut engine, Time::ZERO, &mut acks);
                }
                engine
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

/// Stale eviction: 10 000 idle polling sessions, all evicted by one `handle_timeout` at
/// their deadline (outputs drained).
fn eviction(c: &mut Criterion) {
    let mut group = c.benchmark_group("evict");
    group.sample_size(10);
    group.warm_up_time(Duration::from_millis(500));
    group.measurement_time(Duration::from_secs(3));
    const N: usize = 10_000;
    let stale_after = Config::default().stale_after;
    group.throughput(Throughput::Elements(N as u64));
    group.bench_function("stale_10000", |b| {
        b.iter_batched(
            || {
                let mut engine = engine(N);
                for i in 0..N {
                    handshake(&mut engine, Time::ZERO, i as u64 + 1);
                }
                engine
            },
            |mut engine| {
                let deadline = Time::ZERO + stale_after;
                engine.handle_timeout(deadline);
                let outputs = drain(&mut engine);
                debug_assert!(outputs >= N);
                engine
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

criterion_group!(
    benches,
    publish_websocket,
    publish_command,
    publish_payload_size,
    poll_cycle,
    sessions,
    eviction
);
criterion_main!(benches);
