//! Slow consumers lose nothing silently, under either policy: for any schedule of publishes,
//! stalled readers, dropped sockets and resumes, every event published to a WebSocket client
//! is either received by it or reported to it as dropped — exactly, never more, never less —
//! and what it receives comes in publish order, once.
//!
//! Every message a client can lose here is an event (subscriptions are made before anything
//! is published, and resumes are answered outside the queue), so the balance is exact:
//! `received + reported dropped = published` per client.

mod support;

use livebridge_core::{ClientId, Config, ConnId, HttpRequest, SlowConsumerPolicy};
use proptest::prelude::*;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::Duration;
use support::{Harness, json as parse};

const CLIENTS: usize = 3;

#[derive(Clone, Debug)]
enum Op {
    Publish {
        count: u8,
    },
    Stall(usize),
    Unstall(usize),
    /// The client's socket dies (no close frame): whatever it had not written is lost.
    Drop(usize),
    /// A client whose socket ended opens a new one with `/ws?client_id=`.
    Resume(usize),
    Advance {
        millis: u16,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let client = 0usize..CLIENTS;
    prop_oneof![
        5 => (1u8..8).prop_map(|count| Op::Publish { count }),
        2 => client.clone().prop_map(Op::Stall),
        2 => client.clone().prop_map(Op::Unstall),
        1 => client.clone().prop_map(Op::Drop),
        2 => client.prop_map(Op::Resume),
        1 => (0u16..2_000).prop_map(|millis| Op::Advance { millis }),
    ]
}

struct Client {
    id: ClientId,
    /// The open socket, if any.
    conn: Option<ConnId>,
    received: Vec<u64>,
    reported_dropped: u64,
}

struct World {
    h: Harness,
    clients: Vec<Client>,
    next_conn: u64,
    published: u64,
}

impl World {
    fn new(policy: SlowConsumerPolicy) -> Self {
        World::acknowledging(policy, false)
    }

    /// `through_input`: written frames reported as `Input::WsWritten` rather than with
    /// `Engine::frames_written`.
    fn acknowledging(policy: SlowConsumerPolicy, through_input: bool) -> Self {
        let mut h = Harness::new(Config {
            queue_limit: 3,
            ws_write_window: 2,
            slow_consumer: policy,
            // Nobody goes stale within a run: the balance is about slow readers.
            stale_after: Duration::from_secs(3_600),
            ..Config::default()
        });
        h.acknowledge_through_input = through_input;
        let mut clients = Vec::new();
        for _ in 0..CLIENTS {
            let (conn, id) = h.ws_open();
            h.ws_send(conn, json!({"type": "subscribe", "channels": ["jobs"]}));
            h.take_frames(conn);
            h.take_received(conn);
            clients.push(Client {
                id,
                conn: Some(conn),
                received: Vec::new(),
                reported_dropped: 0,
            });
        }
        World {
            next_conn: 1_000,
            h,
            clients,
            published: 0,
        }
    }

    fn apply(&mut self, op: &Op) {
        match *op {
            Op::Publish { count } => {
                for _ in 0..count {
                    self.published += 1;
                    let probe = json!({"type": "probe", "seq": self.published});
                    let body = json!({"message": probe, "channel": "jobs"});
                    let (status, _) = self.h.call("POST", "/ws/broadcast", &body.to_string());
                    assert_eq!(status, 200);
                }
            }
            Op::Stall(i) => {
                if let Some(conn) = self.clients[i].conn {
                    self.h.stalled.insert(conn);
                }
            }
            Op::Unstall(i) => {
                if let Some(conn) = self.clients[i].conn
                    && self.h.stalled.contains(&conn)
                {
                    self.h.unstall(conn);
                }
            }
            Op::Drop(i) => {
                if let Some(conn) = self.clients[i].conn.take() {
                    self.collect();
                    self.h.client_closes(conn, None);
                }
            }
            Op::Resume(i) => {
                if self.clients[i].conn.is_none() {
                    self.next_conn += 1;
                    let conn = ConnId(self.next_conn);
                    let target = format!("/ws?client_id={}", self.clients[i].id);
                    self.h
                        .open_websocket(
                            conn,
                            HttpRequest::new("GET", &target, "")
                                .with_host("localhost:5100")
                                .with_peer("127.0.0.1"),
                        )
                        .expect("upgrade accepted");
                    self.clients[i].conn = Some(conn);
                }
            }
            Op::Advance { millis } => self.h.advance(Duration::from_millis(u64::from(millis))),
        }
        self.collect();
    }

    /// Takes what each client's socket wrote; notices sockets the server closed.
    fn collect(&mut self) {
        for client in &mut self.clients {
            let Some(conn) = client.conn else { continue };
            for frame in self.h.take_received(conn) {
                let message: Value = parse(&frame);
                match message["type"].as_str().unwrap() {
                    "probe" => client.received.push(message["seq"].as_u64().unwrap()),
                    "messages_dropped" => {
                        client.reported_dropped += message["dropped"].as_u64().unwrap()
                    }
                    "connection_established" => {
                        assert_eq!(message["resumed"], true, "{message}");
                        assert_eq!(message["client_id"], client.id.to_string());
                    }
                    other => panic!("unexpected {other}: {message}"),
                }
            }
            if self.h.closed.contains_key(&conn) {
                client.conn = None;
            }
        }
    }

    /// Lets every client read everything that is left, then checks the balance.
    fn finish(mut self) {
        for _ in 0..4 {
            for i in 0..CLIENTS {
                self.apply(&Op::Resume(i));
                self.apply(&Op::Unstall(i));
            }
        }
        let mut balances = BTreeMap::new();
        for client in &self.clients {
            assert!(
                client.received.windows(2).all(|w| w[0] < w[1]),
                "{}: out of order or twice: {:?}",
                client.id,
                client.received
            );
            let session = self
                .h
                .engine
                .session(&client.id)
                .expect("nobody went stale");
            assert_eq!(session.queued, 0, "everything was read");
            assert_eq!(session.unreported_drops, 0, "every drop was reported");
            balances.insert(
                client.id,
                client.received.len() as u64 + client.reported_dropped,
            );
        }
        for (client, balance) in balances {
            assert_eq!(
                balance, self.published,
                "{client}: received + reported dropped must equal published"
            );
        }
    }
}

fn run(policy: SlowConsumerPolicy, ops: &[Op]) {
    let mut world = World::new(policy);
    for op in ops {
        world.apply(op);
    }
    world.finish();
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 256,
        failure_persistence: Some(Box::new(
            proptest::test_runner::FileFailurePersistence::Direct("proptest-regressions/slow_consumers.txt"),
        )),
        ..ProptestConfig::default()
    })]

    #[test]
    fn with_drop_oldest_every_event_is_received_or_reported(ops in prop::collection::vec(op(), 1..80)) {
        run(SlowConsumerPolicy::DropOldest, &ops);
    }

    #[test]
    fn with_disconnect_every_event_is_received_or_reported(ops in prop::collection::vec(op(), 1..80)) {
        run(SlowConsumerPolicy::Disconnect, &ops);
    }

    /// `Engine::frames_written` (the runtimes' fast path) and `Input::WsWritten` (what
    /// recorded sessions replay) are the same acknowledgement.
    #[test]
    fn acknowledging_directly_or_through_input_gives_the_same_outputs(
        ops in prop::collection::vec(op(), 1..80),
        disconnect in any::<bool>(),
    ) {
        let policy = if disconnect { SlowConsumerPolicy::Disconnect } else { SlowConsumerPolicy::DropOldest };
        let mut direct = World::acknowledging(policy, false);
        let mut through_input = World::acknowledging(policy, true);
        for op in &ops {
            direct.apply(op);
            through_input.apply(op);
        }
        prop_assert_eq!(&direct.h.log, &through_input.h.log);
        prop_assert_eq!(&direct.h.transcript, &through_input.h.transcript);
    }
}

#[test]
fn a_slow_consumer_closed_with_frames_in_its_window_is_told_of_them_after_resuming() {
    let mut world = World::new(SlowConsumerPolicy::Disconnect);
    world.apply(&Op::Stall(0));
    // 2 frames fill the window, 3 the queue, the 6th overflows it: close 1008.
    world.apply(&Op::Publish { count: 6 });
    let closed = world
        .h
        .closed
        .values()
        .map(|(code, _)| *code)
        .collect::<Vec<_>>();
    assert_eq!(closed, [1008]);
    assert!(world.clients[0].conn.is_none());
    world.apply(&Op::Resume(0));
    let client = &world.clients[0];
    // The window's 2 were never written, 1 fell out of the queue; 3 queued arrive.
    assert_eq!(client.reported_dropped, 3);
    assert_eq!(client.received, [4, 5, 6]);
    world.finish();
}
