//! The publishing side of a load run: P closed-loop HTTP publishers on one OS thread of their
//! own with their own executor, so a publish never waits behind the subscriber readers (which
//! run on the `--threads` executor), and the request bodies of both publish paths
//! (`POST /api/events`, `POST /ws/broadcast`).

use crate::{Args, Http, Shared};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

/// Where the publishers send their events.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum PublishPath {
    /// `POST /api/events`: one event, or a JSON array of `--batch` events.
    ApiEvents,
    /// `POST /ws/broadcast`: `{"channel", "message"}`, one event per request.
    WsBroadcast,
}

impl PublishPath {
    pub fn target(self) -> &'static str {
        match self {
            PublishPath::ApiEvents => "/api/events",
            PublishPath::WsBroadcast => "/ws/broadcast",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            PublishPath::ApiEvents => "api-events",
            PublishPath::WsBroadcast => "ws-broadcast",
        }
    }
}

/// The marks of one publish request: `events` events of `publisher` numbered from `seq + 1`,
/// sent at `sent` µs (the tool's clock).
#[derive(Clone, Copy, Debug)]
pub struct Marks {
    pub publisher: usize,
    pub seq: u64,
    pub events: usize,
    pub sent: u64,
}

/// Writes the body of one publish request carrying `marks` into `body`.
pub fn write_body(
    body: &mut Vec<u8>,
    path: PublishPath,
    channel: &str,
    marks: Marks,
    filler: &str,
) {
    use std::io::Write;
    let Marks {
        publisher,
        seq,
        events,
        sent,
    } = marks;
    body.clear();
    match path {
        PublishPath::ApiEvents => {
            if events > 1 {
                body.push(b'[');
            }
            for i in 0..events {
                if i > 0 {
                    body.push(b',');
                }
                let _ = write!(
                    body,
                    r#"{{"type":"job_progress","job_id":"load","stage":"s","progress":1,"message":"lg{publisher}.{}.{sent}.{filler}"}}"#,
                    seq + 1 + i as u64
                );
            }
            if events > 1 {
                body.push(b']');
            }
        }
        PublishPath::WsBroadcast => {
            let _ = write!(
                body,
                r#"{{"channel":"{channel}","message":{{"type":"job_progress","job_id":"load","stage":"s","progress":1,"message":"lg{publisher}.{}.{sent}.{filler}"}}}}"#,
                seq + 1
            );
        }
    }
}

/// What the publisher thread reports when it is done.
pub struct PublishOutcome {
    /// CPU seconds of the publisher thread (user + system) over the publish phase.
    pub thread_cpu_secs: Option<f64>,
}

/// Starts the publisher thread. It connects every publisher, sends the schedule's start on
/// `started`, publishes until `--duration` is over and returns what it measured.
pub fn spawn_publishers(
    addr: SocketAddr,
    args: &Args,
    shared: Arc<Shared>,
    started: async_channel::Sender<Instant>,
) -> std::thread::JoinHandle<PublishOutcome> {
    let args = args.clone();
    std::thread::Builder::new()
        .name("publishers".into())
        .spawn(move || {
            let ex = smol::LocalExecutor::new();
            smol::block_on(ex.run(async {
                let mut connections = Vec::with_capacity(args.publishers);
                for i in 0..args.publishers {
                    match Http::connect(addr).await {
                        Ok(mut http) => {
                            http.auth = args.admin_token.clone();
                            connections.push(Some(http));
                        }
                        Err(e) => {
                            eprintln!("publisher {i} cannot connect: {e}");
                            connections.push(None);
                        }
                    }
                }
                let cpu_before = thread_cpu_secs();
                let start = Instant::now() + Duration::from_millis(10);
                let _ = started.send(start).await;
                let tasks: Vec<_> = connections
                    .into_iter()
                    .enumerate()
                    .filter_map(|(i, http)| Some((i, http?)))
                    .map(|(i, http)| {
                        let args = args.clone();
                        let shared = Arc::clone(&shared);
                        ex.spawn(async move {
                            if let Err(e) = publisher(http, i, &args, &shared, start).await {
                                eprintln!("publisher {i} failed: {e}");
                            }
                        })
                    })
                    .collect();
                for t in tasks {
                    t.await;
                }
                PublishOutcome {
                    thread_cpu_secs: match (cpu_before, thread_cpu_secs()) {
                        (Some(b), Some(a)) => Some(a - b),
                        _ => None,
                    },
                }
            }))
        })
        .expect("publisher thread")
}

/// User + system CPU seconds of the calling thread (`/proc/thread-self/stat`).
fn thread_cpu_secs() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").ok()?;
    let fields: Vec<&str> = stat[stat.rfind(')')? + 2..].split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / crate::clock_ticks_per_second())
}

/// One closed-loop publisher: sends its share of the schedule, one request in flight.
async fn publisher(
    mut http: Http,
    index: usize,
    args: &Args,
    shared: &Shared,
    start: Instant,
) -> std::io::Result<()> {
    let per_publisher = args.rate / args.publishers as f64;
    let interval = Duration::from_secs_f64(args.batch as f64 / per_publisher);
    let end = start + Duration::from_secs_f64(args.duration);
    // Filler so the delivered frame is about `payload` bytes (timestamp and envelope ~120).
    let filler = "x".repeat(args.payload.saturating_sub(125));
    let mut body = Vec::with_capacity(args.batch * (args.payload + 64));
    let mut request = Vec::with_capacity(body.capacity() + 256);
    let mut seq = 0u64;
    // Publishers share one schedule, offset by a fraction of the interval each, so the
    // aggregate rate is even: with a common start they would fire together and every tick
    // would be a burst of P publishes (latency would measure the burst, not the rate).
    let mut next = start + interval.mul_f64(index as f64 / args.publishers as f64);
    while next < end {
        if next > Instant::now() {
            smol::Timer::at(next).await;
        }
        next += interval;
        let sent = shared.now_micros();
        let path = args.publish_path;
        let marks = Marks {
            publisher: index,
            seq,
            events: args.batch,
            sent,
        };
        write_body(&mut body, path, &args.channel, marks, &filler);
        http.write_request(&mut request, "POST", path.target(), &body);
        let (status, _) = http.exchange(&request).await?;
        if status == 200 {
            seq += args.batch as u64;
            shared
                .ack_latency
                .record(shared.now_micros().saturating_sub(sent));
            shared.published[index].store(seq, Relaxed);
        } else if shared.publish_errors.fetch_add(1, Relaxed) < 3 {
            // The sequence numbers of a refused request were never sent: they are reused.
            let text = String::from_utf8_lossy(&http.buf).into_owned();
            eprintln!("publish failed: {status} {text}");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_events_bodies_are_one_event_or_an_array() {
        let mut body = Vec::new();
        write_body(
            &mut body,
            PublishPath::ApiEvents,
            "jobs",
            Marks {
                publisher: 2,
                seq: 0,
                events: 1,
                sent: 77,
            },
            "xx",
        );
        let one: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(one["type"], "job_progress");
        assert_eq!(one["message"], "lg2.1.77.xx");
        write_body(
            &mut body,
            PublishPath::ApiEvents,
            "jobs",
            Marks {
                publisher: 0,
                seq: 10,
                events: 3,
                sent: 5,
            },
            "",
        );
        let many: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let messages: Vec<_> = many
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["message"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(messages, ["lg0.11.5.", "lg0.12.5.", "lg0.13.5."]);
    }

    #[test]
    fn broadcast_body_names_the_channel_and_wraps_the_event() {
        let mut body = Vec::new();
        write_body(
            &mut body,
            PublishPath::WsBroadcast,
            "alerts",
            Marks {
                publisher: 1,
                seq: 41,
                events: 1,
                sent: 9,
            },
            "x",
        );
        let value: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(value["channel"], "alerts");
        assert_eq!(value["message"]["type"], "job_progress");
        assert_eq!(value["message"]["message"], "lg1.42.9.x");
    }

    #[test]
    fn marked_events_scan_back_to_publisher_and_sequence() {
        let mut body = Vec::new();
        write_body(
            &mut body,
            PublishPath::WsBroadcast,
            "jobs",
            Marks {
                publisher: 3,
                seq: 6,
                events: 1,
                sent: 1234,
            },
            "",
        );
        let shared = crate::tests::shared(4);
        let sub = crate::SubState::new(4);
        assert_eq!(crate::scan_events(&shared, &sub, &body, 1300), 1);
        assert_eq!(sub.last[3].load(Relaxed), 7);
        assert_eq!(shared.latency.max.load(Relaxed), 66);
    }
}
