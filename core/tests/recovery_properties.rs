//! No event lost, none twice: for any schedule of publishes, stalled readers, overflowing
//! queues, dropped sockets, evicted sessions and resumes, a client that follows the recovery
//! rules of `docs/protocol.md` ("Recovery") hands its application every event of its channels
//! exactly once and in offset order, as long as history reaches back (here it always does).
//!
//! The model client is the reference of those rules: it keeps the last offset per channel,
//! ignores what it has already seen, treats a jump as a gap, and answers a gap, a
//! `messages_dropped` notice or a reconnect by subscribing with its positions (`since`).

mod support;

use livebridge_core::{ClientId, Config, ConnId, HttpRequest};
use proptest::prelude::*;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::Duration;
use support::{Harness, json as parse};

const CHANNELS: [&str; 2] = ["jobs", "photos"];
const WS_CLIENTS: usize = 3;

#[derive(Clone, Debug)]
enum Op {
    /// The application publishes `count` events on a channel.
    Publish {
        channel: usize,
        count: u8,
    },
    /// A WebSocket client publishes an event itself (it is not sent it back).
    ClientPublishes(usize),
    Stall(usize),
    Unstall(usize),
    /// A WebSocket client's socket dies without a close frame.
    Drop(usize),
    /// A client without a socket reconnects (resuming, or anew if its session is gone).
    Reconnect(usize),
    /// The polling client polls.
    Poll,
    Advance {
        millis: u32,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let ws = 0usize..WS_CLIENTS;
    prop_oneof![
        6 => (0usize..2, 1u8..6).prop_map(|(channel, count)| Op::Publish { channel, count }),
        1 => ws.clone().prop_map(Op::ClientPublishes),
        2 => ws.clone().prop_map(Op::Stall),
        2 => ws.clone().prop_map(Op::Unstall),
        1 => ws.clone().prop_map(Op::Drop),
        2 => ws.prop_map(Op::Reconnect),
        3 => Just(Op::Poll),
        1 => (0u32..25_000).prop_map(|millis| Op::Advance { millis }),
    ]
}

/// A client following the recovery rules.
#[derive(Default)]
struct Client {
    id: Option<ClientId>,
    conn: Option<ConnId>,
    /// Per channel: (epoch, last offset handed to the application).
    positions: BTreeMap<String, (String, u64)>,
    /// Per channel: offsets the application got, in order.
    app: BTreeMap<String, Vec<u64>>,
    needs_recovery: bool,
}

impl Client {
    fn since(&self) -> Value {
        let positions: serde_json::Map<String, Value> = self
            .positions
            .iter()
            .map(|(c, (epoch, offset))| (c.clone(), json!({"offset": offset, "epoch": epoch})))
            .collect();
        Value::Object(positions)
    }

    /// One message from the hub.
    fn receive(&mut self, message: &Value) {
        match message["type"].as_str().unwrap_or("") {
            "messages_dropped" => self.needs_recovery = true,
            "subscribed" | "registered" | "connection_established" => {
                for (channel, ok) in message["recovered"].as_object().into_iter().flatten() {
                    assert_eq!(
                        ok, true,
                        "{channel} not recovered within history: {message}"
                    );
                }
                for (channel, position) in message["positions"].as_object().into_iter().flatten() {
                    // A channel never seen starts at the position the hub gives.
                    self.positions.entry(channel.clone()).or_insert((
                        position["epoch"].as_str().unwrap().to_string(),
                        position["offset"].as_u64().unwrap(),
                    ));
                }
            }
            "published" => self.event(message),
            _ if message.get("offset").is_some() => self.event(message),
            _ => {}
        }
    }

    fn event(&mut self, message: &Value) {
        let channel = message["channel"].as_str().unwrap().to_string();
        let offset = message["offset"].as_u64().unwrap();
        let epoch = message["epoch"].as_str().unwrap();
        let (known, last) = self.positions.get(&channel).cloned().expect("subscribed");
        assert_eq!(known, epoch, "the epoch never changes here");
        if offset <= last {
            return; // seen: a duplicate
        }
        if offset > last + 1 {
            self.needs_recovery = true; // a gap: what is missing will be replayed
            return;
        }
        self.positions.insert(channel.clone(), (known, offset));
        self.app.entry(channel).or_default().push(offset);
    }
}

struct World {
    h: Harness,
    ws: Vec<Client>,
    poller: Client,
    published: BTreeMap<String, u64>,
    next_conn: u64,
}

impl World {
    fn new() -> Self {
        let h = Harness::new(Config {
            queue_limit: 3,
            ws_write_window: 2,
            stale_after: Duration::from_secs(20),
            history_size: 100_000,
            history_ttl: Duration::from_secs(86_400),
            recovery_max: 100_000,
            ..Config::default()
        });
        let mut world = World {
            h,
            ws: (0..WS_CLIENTS).map(|_| Client::default()).collect(),
            poller: Client::default(),
            published: BTreeMap::new(),
            next_conn: 0,
        };
        for i in 0..WS_CLIENTS {
            world.connect_ws(i);
        }
        world.connect_poller();
        world
    }

    fn connect_ws(&mut self, i: usize) {
        self.next_conn += 1;
        let conn = ConnId(self.next_conn);
        let client = &self.ws[i];
        let target = match client.id {
            Some(id) => {
                let since = client.since().to_string();
                let since: String = form_urlencoded::byte_serialize(since.as_bytes()).collect();
                format!("/ws?client_id={id}&since={since}")
            }
            None => "/ws".to_string(),
        };
        self.h
            .open_websocket(
                conn,
                HttpRequest::new("GET", &target, "")
                    .with_host("localhost:5100")
                    .with_peer("127.0.0.1"),
            )
            .expect("upgrade accepted");
        self.ws[i].conn = Some(conn);
        let frames = self.take(i);
        let welcome = frames.first().expect("a welcome").clone();
        let resumed = welcome["resumed"] == true;
        self.ws[i].id = Some(welcome["client_id"].as_str().unwrap().parse().unwrap());
        for frame in &frames {
            self.ws[i].receive(frame);
        }
        if !resumed {
            // A new session: subscribe, with the positions it has.
            let mut subscribe = json!({"type": "subscribe", "channels": CHANNELS});
            if !self.ws[i].positions.is_empty() {
                subscribe["since"] = self.ws[i].since();
            }
            self.h.ws_send(conn, subscribe);
            self.collect_ws(i);
        }
    }

    fn connect_poller(&mut self) {
        let id = self.h.handshake("lightroom");
        self.poller.id = Some(id);
        let mut subscribe = json!({"type": "subscribe", "channels": CHANNELS});
        if !self.poller.positions.is_empty() {
            subscribe["since"] = self.poller.since();
        }
        let (status, reply) = self.h.send(id, subscribe);
        assert_eq!(status, 200, "{reply}");
        self.poller.receive(&reply["response"]);
    }

    /// Frames client `i` received since the last call.
    fn take(&mut self, i: usize) -> Vec<Value> {
        match self.ws[i].conn {
            Some(conn) => self
                .h
                .take_received(conn)
                .iter()
                .map(|f| parse(f))
                .collect(),
            None => Vec::new(),
        }
    }

    fn collect_ws(&mut self, i: usize) {
        for message in self.take(i) {
            self.ws[i].receive(&message);
        }
        if let Some(conn) = self.ws[i].conn
            && self.h.closed.contains_key(&conn)
        {
            self.ws[i].conn = None;
        }
        if self.ws[i].needs_recovery
            && let Some(conn) = self.ws[i].conn
        {
            self.ws[i].needs_recovery = false;
            let subscribe =
                json!({"type": "subscribe", "channels": CHANNELS, "since": self.ws[i].since()});
            self.h.ws_send(conn, subscribe);
            self.collect_ws(i);
        }
    }

    fn poll(&mut self) {
        let id = self.poller.id.expect("connected");
        let (status, reply) = self.h.call("GET", &format!("/ws/poll?client_id={id}"), "");
        if status == 404 {
            // Evicted: a new session recovers with its positions.
            return self.connect_poller();
        }
        for message in reply["messages"].as_array().unwrap() {
            self.poller.receive(message);
        }
        if reply["dropped"].as_u64().unwrap() > 0 {
            self.poller.needs_recovery = true;
        }
        if self.poller.needs_recovery {
            self.poller.needs_recovery = false;
            let subscribe =
                json!({"type": "subscribe", "channels": CHANNELS, "since": self.poller.since()});
            let (_, reply) = self.h.send(id, subscribe);
            self.poller.receive(&reply["response"]);
        }
    }

    fn apply(&mut self, op: &Op) {
        match *op {
            Op::Publish { channel, count } => {
                for _ in 0..count {
                    let event = match channel {
                        0 => {
                            json!({"type": "job_progress", "job_id": 1, "stage": "s", "progress": 1})
                        }
                        _ => json!({"type": "photo_approved", "photo_id": 1}),
                    };
                    let (status, _) = self.h.call("POST", "/api/events", &event.to_string());
                    assert_eq!(status, 200);
                    *self
                        .published
                        .entry(CHANNELS[channel].to_string())
                        .or_default() += 1;
                }
            }
            Op::ClientPublishes(i) => {
                if let Some(conn) = self.ws[i].conn {
                    let event =
                        json!({"type": "job_progress", "job_id": 2, "stage": "c", "progress": 2});
                    self.h.ws_send(conn, event);
                    *self.published.entry("jobs".to_string()).or_default() += 1;
                }
            }
            Op::Stall(i) => {
                if let Some(conn) = self.ws[i].conn {
                    self.h.stalled.insert(conn);
                }
            }
            Op::Unstall(i) => {
                if let Some(conn) = self.ws[i].conn
                    && self.h.stalled.contains(&conn)
                {
                    self.h.unstall(conn);
                }
            }
            Op::Drop(i) => {
                if let Some(conn) = self.ws[i].conn.take() {
                    self.h.client_closes(conn, None);
                }
            }
            Op::Reconnect(i) => {
                if self.ws[i].conn.is_none() {
                    self.connect_ws(i);
                }
            }
            Op::Poll => self.poll(),
            Op::Advance { millis } => self.h.advance(Duration::from_millis(u64::from(millis))),
        }
        for i in 0..WS_CLIENTS {
            self.collect_ws(i);
        }
    }

    /// Every client reads everything, then each must have handed its application every
    /// event of both channels, once, in order.
    fn finish(mut self) {
        for _ in 0..3 {
            for i in 0..WS_CLIENTS {
                self.apply(&Op::Reconnect(i));
                self.apply(&Op::Unstall(i));
            }
            self.poll();
            self.poll();
        }
        for client in self.ws.iter().chain([&self.poller]) {
            for channel in CHANNELS {
                let expected: Vec<u64> =
                    (1..=self.published.get(channel).copied().unwrap_or(0)).collect();
                let got = client.app.get(channel).cloned().unwrap_or_default();
                assert_eq!(got, expected, "{:?} on {channel}", client.id);
            }
        }
    }
}

fn run(ops: &[Op]) {
    let mut world = World::new();
    for op in ops {
        world.apply(op);
    }
    world.finish();
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 256,
        failure_persistence: Some(Box::new(
            proptest::test_runner::FileFailurePersistence::Direct("proptest-regressions/recovery_properties.txt"),
        )),
        ..ProptestConfig::default()
    })]

    #[test]
    fn every_event_reaches_every_application_once_and_in_order(ops in prop::collection::vec(op(), 1..60)) {
        run(&ops);
    }
}
