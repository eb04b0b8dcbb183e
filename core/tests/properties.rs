//! Property tests over arbitrary sequences of client, publisher and clock actions:
//!
//! - no queue ever exceeds its bound;
//! - each session receives messages in publish order;
//! - every message addressed to a session is delivered to it, or reported to it as dropped,
//!   or counted undelivered when the session ends — nothing vanishes silently;
//! - no session outlives `stale_after` of inactivity by even 1 µs (a pending long poll is
//!   presence, not inactivity);
//! - every request is answered exactly once;
//! - the same inputs always give the same outputs.

mod support;

use livebridge_core::{
    ClientId, Config, ConnId, Input, Output, RequestId, SessionEvent, TransportKind,
};
use proptest::prelude::*;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;
use support::{Harness, json as parse};

const CHANNELS: [&str; 3] = ["jobs", "photos", "system"];

#[derive(Clone, Debug)]
enum Op {
    Handshake,
    Resume(usize),
    Poll { client: usize, wait_secs: u8 },
    Subscribe { client: usize, channel: usize },
    Unsubscribe { client: usize, channel: usize },
    PublishToChannel(usize),
    PublishToAll,
    PublishToClient(usize),
    ClientPublishes(usize),
    WsOpen,
    WsSubscribe { conn: usize, channel: usize },
    WsResume { conn: usize, client: usize },
    WsClose { conn: usize, normal: bool },
    WsStall(usize),
    WsUnstall(usize),
    Disconnect(usize),
    Cleanup { tenths_of_minute: u8 },
    AbortPoll(usize),
    Advance { millis: u32 },
}

fn op() -> impl Strategy<Value = Op> {
    let index = 0usize..8;
    prop_oneof![
        2 => Just(Op::Handshake),
        1 => index.clone().prop_map(Op::Resume),
        3 => (index.clone(), 0u8..6).prop_map(|(client, wait_secs)| Op::Poll { client, wait_secs }),
        2 => (index.clone(), 0usize..3).prop_map(|(client, channel)| Op::Subscribe { client, channel }),
        1 => (index.clone(), 0usize..3).prop_map(|(client, channel)| Op::Unsubscribe { client, channel }),
        4 => (0usize..3).prop_map(Op::PublishToChannel),
        1 => Just(Op::PublishToAll),
        1 => index.clone().prop_map(Op::PublishToClient),
        2 => index.clone().prop_map(Op::ClientPublishes),
        2 => Just(Op::WsOpen),
        2 => (index.clone(), 0usize..3).prop_map(|(conn, channel)| Op::WsSubscribe { conn, channel }),
        1 => (index.clone(), index.clone()).prop_map(|(conn, client)| Op::WsResume { conn, client }),
        1 => (index.clone(), any::<bool>()).prop_map(|(conn, normal)| Op::WsClose { conn, normal }),
        1 => index.clone().prop_map(Op::WsStall),
        1 => index.clone().prop_map(Op::WsUnstall),
        1 => index.clone().prop_map(Op::Disconnect),
        1 => (0u8..30).prop_map(|tenths_of_minute| Op::Cleanup { tenths_of_minute }),
        1 => index.clone().prop_map(Op::AbortPoll),
        3 => (0u32..12_000).prop_map(|millis| Op::Advance { millis }),
    ]
}

fn config() -> Config {
    Config {
        queue_limit: 3,
        ws_write_window: 2,
        stale_after: Duration::from_secs(10),
        long_poll_max: Duration::from_secs(4),
        ping_interval: Duration::from_secs(3),
        ..Config::default()
    }
}

/// What the test knows of the world, beside the engine.
#[derive(Default)]
struct World {
    clients: Vec<ClientId>,
    conns: Vec<ConnId>,
    open_conns: BTreeSet<ConnId>,
    /// Which session a connection speaks for now.
    conn_owner: BTreeMap<ConnId, ClientId>,
    poll_requests: BTreeMap<RequestId, ClientId>,
    aborted: BTreeSet<RequestId>,
    next_seq: u64,
    /// Probe sequence numbers addressed to each session.
    addressed: BTreeMap<ClientId, BTreeSet<u64>>,
    /// Probe sequence numbers received by each session, in arrival order.
    received: BTreeMap<ClientId, Vec<u64>>,
    /// Drops reported to each session.
    drops_reported: BTreeMap<ClientId, u64>,
    /// Messages left undelivered when each session ended.
    undelivered: BTreeMap<ClientId, u64>,
    ended: BTreeSet<ClientId>,
    log_seen: usize,
}

impl World {
    fn pick<T: Copy>(items: &[T], index: usize) -> Option<T> {
        (!items.is_empty()).then(|| items[index % items.len()])
    }

    /// Sessions subscribed to `channel` right now, per the engine.
    fn subscribers(h: &Harness, channel: &str) -> Vec<ClientId> {
        h.engine
            .sessions()
            .into_iter()
            .filter(|s| s.subscriptions.iter().any(|c| c == channel))
            .map(|s| s.client_id)
            .collect()
    }

    fn probe(&mut self, audience: &[ClientId]) -> Value {
        self.next_seq += 1;
        for client in audience {
            self.addressed
                .entry(*client)
                .or_default()
                .insert(self.next_seq);
        }
        json!({"type": "probe", "seq": self.next_seq})
    }

    fn apply(&mut self, h: &mut Harness, op: &Op) {
        match *op {
            Op::Handshake => {
                let id = h.handshake("lightroom");
                self.clients.push(id);
            }
            Op::Resume(i) => {
                if let Some(id) = Self::pick(&self.clients, i) {
                    let body = format!(r#"{{"client_type":"lightroom","client_id":"{id}"}}"#);
                    let (_, reply) = h.call("POST", "/ws/handshake", &body);
                    let new: ClientId = reply["client_id"].as_str().unwrap().parse().unwrap();
                    if new != id {
                        self.clients.push(new);
                    }
                    // A socket the resume took over keeps its owner: the frames it wrote
                    // before it closed are still to be collected.
                }
            }
            Op::Poll { client, wait_secs } => {
                if let Some(id) = Self::pick(&self.clients, client) {
                    let target = format!("/ws/poll?client_id={id}&wait={wait_secs}");
                    let request = h.http("GET", &target, "");
                    self.poll_requests.insert(request, id);
                }
            }
            Op::Subscribe { client, channel } | Op::Unsubscribe { client, channel } => {
                if let Some(id) = Self::pick(&self.clients, client) {
                    let kind = if matches!(op, Op::Subscribe { .. }) {
                        "subscribe"
                    } else {
                        "unsubscribe"
                    };
                    h.send(id, json!({"type": kind, "channels": [CHANNELS[channel]]}));
                }
            }
            Op::PublishToChannel(channel) => {
                let audience = Self::subscribers(h, CHANNELS[channel]);
                let message = self.probe(&audience);
                let body = json!({"message": message, "channel": CHANNELS[channel]});
                let (_, reply) = h.call("POST", "/ws/broadcast", &body.to_string());
                assert_eq!(reply["recipients"], audience.len());
            }
            Op::PublishToAll => {
                let audience: Vec<_> = h.engine.sessions().iter().map(|s| s.client_id).collect();
                let message = self.probe(&audience);
                let (_, reply) = h.call(
                    "POST",
                    "/ws/broadcast",
                    &json!({"message": message}).to_string(),
                );
                assert_eq!(reply["recipients"], audience.len());
            }
            Op::PublishToClient(i) => {
                if let Some(id) = Self::pick(&self.clients, i) {
                    let live = h.engine.session(&id).is_some();
                    let audience = if live { vec![id] } else { vec![] };
                    let message = self.probe(&audience);
                    let (status, _) =
                        h.call("POST", &format!("/ws/send/{id}"), &message.to_string());
                    assert_eq!(status, if live { 200 } else { 404 });
                }
            }
            Op::ClientPublishes(i) => {
                if let Some(id) = Self::pick(&self.clients, i) {
                    if h.engine.session(&id).is_none() {
                        return;
                    }
                    let audience: Vec<_> = Self::subscribers(h, "jobs")
                        .into_iter()
                        .filter(|c| *c != id)
                        .collect();
                    self.next_seq += 1;
                    for client in &audience {
                        self.addressed
                            .entry(*client)
                            .or_default()
                            .insert(self.next_seq);
                    }
                    let event = json!({"type": "job_progress", "job_id": self.next_seq,
                                       "stage": "s", "progress": 1});
                    let (status, reply) = h.send(id, event);
                    assert_eq!(status, 200);
                    assert_eq!(reply["response"]["recipients"], audience.len());
                }
            }
            Op::WsOpen => {
                if h.engine.sessions().len() >= h.engine.config().max_clients {
                    return;
                }
                let (conn, id) = h.ws_open();
                self.conns.push(conn);
                self.open_conns.insert(conn);
                self.conn_owner.insert(conn, id);
                self.clients.push(id);
            }
            Op::WsSubscribe { conn, channel } => {
                if let Some(conn) = Self::pick(&self.conns, conn) {
                    h.ws_send(
                        conn,
                        json!({"type": "subscribe", "channels": [CHANNELS[channel]]}),
                    );
                }
            }
            Op::WsResume { conn, client } => {
                if let (Some(conn), Some(id)) = (
                    Self::pick(&self.conns, conn),
                    Self::pick(&self.clients, client),
                ) && self.open_conns.contains(&conn)
                {
                    h.ws_send(
                        conn,
                        json!({"type": "register", "client_id": id.to_string()}),
                    );
                }
            }
            Op::WsClose { conn, normal } => {
                if let Some(conn) = Self::pick(&self.conns, conn)
                    && self.open_conns.remove(&conn)
                {
                    let code = if normal { Some(1000) } else { None };
                    h.client_closes(conn, code);
                }
            }
            Op::WsStall(conn) => {
                if let Some(conn) = Self::pick(&self.conns, conn) {
                    h.stalled.insert(conn);
                }
            }
            Op::WsUnstall(conn) => {
                if let Some(conn) = Self::pick(&self.conns, conn)
                    && h.stalled.contains(&conn)
                {
                    h.unstall(conn);
                }
            }
            Op::Disconnect(i) => {
                if let Some(id) = Self::pick(&self.clients, i) {
                    h.call(
                        "POST",
                        "/ws/disconnect",
                        &json!({"client_id": id.to_string()}).to_string(),
                    );
                }
            }
            Op::Cleanup { tenths_of_minute } => {
                let body = json!({"timeout_minutes": f64::from(tenths_of_minute) / 10.0});
                h.call("POST", "/ws/cleanup", &body.to_string());
            }
            Op::AbortPoll(i) => {
                let pending: Vec<RequestId> = self
                    .poll_requests
                    .keys()
                    .filter(|r| !h.replies.contains_key(r) && !self.aborted.contains(r))
                    .copied()
                    .collect();
                if let Some(request) = Self::pick(&pending, i) {
                    self.aborted.insert(request);
                    h.input(Input::RequestAborted { request });
                }
            }
            Op::Advance { millis } => {
                let end = h.now + Duration::from_millis(u64::from(millis));
                // Land on every eviction instant the rules predict, and check it happened
                // there: not a microsecond early, not a microsecond late.
                loop {
                    let stale_after = h.engine.config().stale_after;
                    let next = h
                        .engine
                        .sessions()
                        .into_iter()
                        .filter(|s| s.attached != Some(TransportKind::Polling))
                        .map(|s| (s.last_activity + stale_after, s.client_id))
                        .filter(|(at, _)| *at <= end)
                        .min();
                    let Some((at, client)) = next else { break };
                    let just_before = at - Duration::from_micros(1);
                    if just_before > h.now {
                        h.advance(just_before.saturating_since(h.now));
                        assert!(
                            h.engine.session(&client).is_some(),
                            "{client} evicted early"
                        );
                    }
                    h.advance(at.saturating_since(h.now));
                    assert!(
                        h.engine.session(&client).is_none(),
                        "{client} outlived stale_after"
                    );
                }
                h.advance(end.saturating_since(h.now));
            }
        }
    }

    /// Takes what clients received since the last call: poll replies, frames, session ends.
    fn collect(&mut self, h: &mut Harness) {
        let requests: Vec<RequestId> = self.poll_requests.keys().copied().collect();
        for request in requests {
            if let Some(reply) = h.replies.remove(&request) {
                let id = self.poll_requests[&request];
                if reply.status == 200 {
                    let body = parse(&reply.body);
                    *self.drops_reported.entry(id).or_default() +=
                        body["dropped"].as_u64().unwrap();
                    for message in body["messages"].as_array().unwrap() {
                        self.receive(id, message);
                    }
                }
                self.poll_requests.remove(&request);
            }
        }
        h.replies.clear();
        h.frames.clear();
        // What reached the clients: frames their socket wrote, not merely handed out.
        for (conn, frames) in std::mem::take(&mut h.received) {
            for frame in frames {
                let message = parse(&frame);
                if message["type"] == "registered" && message["resumed"] == true {
                    let owner: ClientId = message["client_id"].as_str().unwrap().parse().unwrap();
                    self.conn_owner.insert(conn, owner);
                }
                let owner = self.conn_owner[&conn];
                self.receive(owner, &message);
            }
        }
        for (_, output) in &h.log[self.log_seen..] {
            match output {
                Output::Session(SessionEvent::Closed {
                    client_id,
                    undelivered,
                    unreported_drops,
                    ..
                }) => {
                    self.ended.insert(*client_id);
                    *self.undelivered.entry(*client_id).or_default() +=
                        *undelivered as u64 + unreported_drops;
                }
                Output::Session(SessionEvent::UnwrittenAfterEnd {
                    client_id,
                    frames,
                    unreported_drops,
                }) => {
                    *self.undelivered.entry(*client_id).or_default() +=
                        *frames as u64 + unreported_drops;
                }
                _ => {}
            }
        }
        self.log_seen = h.log.len();
    }

    fn receive(&mut self, owner: ClientId, message: &Value) {
        let seq = match message["type"].as_str() {
            Some("probe") => message["seq"].as_u64(),
            Some("job_progress") => message["job_id"].as_u64(),
            Some("messages_dropped") => {
                *self.drops_reported.entry(owner).or_default() +=
                    message["dropped"].as_u64().unwrap();
                None
            }
            _ => None,
        };
        if let Some(seq) = seq {
            self.received.entry(owner).or_default().push(seq);
        }
    }

    fn check_invariants(&self, h: &Harness) {
        let config = h.engine.config();
        for session in h.engine.sessions() {
            assert!(
                session.queued <= config.queue_limit,
                "queue bound: {session:?}"
            );
            if session.attached != Some(TransportKind::Polling) {
                let idle = h.now.saturating_since(session.last_activity);
                assert!(
                    idle < config.stale_after,
                    "stale session alive: {session:?} at {}",
                    h.now
                );
            }
        }
        for (client, seqs) in &self.received {
            assert!(
                seqs.windows(2).all(|w| w[0] < w[1]),
                "order of {client}: {seqs:?}"
            );
            let addressed = self.addressed.get(client).cloned().unwrap_or_default();
            assert!(
                seqs.iter().all(|s| addressed.contains(s)),
                "{client} got what was not sent to it"
            );
        }
    }

    /// After the run: everything addressed was received, reported dropped or counted
    /// undelivered.
    fn check_accounting(&self) {
        for (client, addressed) in &self.addressed {
            let received: BTreeSet<u64> = self
                .received
                .get(client)
                .into_iter()
                .flatten()
                .copied()
                .collect();
            let missing = addressed.difference(&received).count() as u64;
            let explained = self.drops_reported.get(client).copied().unwrap_or(0)
                + self.undelivered.get(client).copied().unwrap_or(0);
            // Undelivered counts every queued message, probes or not, so this bound is one-sided;
            // `slow_consumers.rs` checks the exact balance where every message is a probe.
            assert!(
                missing <= explained,
                "{client}: {missing} messages missing but only {explained} reported dropped or undelivered"
            );
        }
    }
}

fn run(ops: &[Op]) -> (World, Harness) {
    let mut h = Harness::new(config());
    let mut world = World::default();
    for op in ops {
        world.apply(&mut h, op);
        world.collect(&mut h);
        world.check_invariants(&h);
    }
    // Let every client read what is left: unstall sockets, poll every polling session.
    for conn in world.conns.clone() {
        if h.stalled.contains(&conn) {
            h.unstall(conn);
        }
    }
    h.advance(config().long_poll_max + Duration::from_secs(1));
    world.collect(&mut h);
    let pending: Vec<_> = world
        .poll_requests
        .keys()
        .filter(|r| !world.aborted.contains(r))
        .copied()
        .collect();
    assert!(pending.is_empty(), "unanswered requests: {pending:?}");
    for session in h.engine.sessions() {
        if session.attached.is_none() {
            let request = h.http(
                "GET",
                &format!("/ws/poll?client_id={}", session.client_id),
                "",
            );
            world.poll_requests.insert(request, session.client_id);
        }
    }
    world.collect(&mut h);
    world.check_invariants(&h);
    world.check_accounting();
    (world, h)
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 256,
        failure_persistence: Some(Box::new(
            proptest::test_runner::FileFailurePersistence::Direct("proptest-regressions/properties.txt"),
        )),
        ..ProptestConfig::default()
    })]

    #[test]
    fn invariants_hold_for_any_input_sequence(ops in prop::collection::vec(op(), 1..120)) {
        run(&ops);
    }

    #[test]
    fn the_same_inputs_always_give_the_same_outputs(ops in prop::collection::vec(op(), 1..60)) {
        let (_, first) = run(&ops);
        let (_, second) = run(&ops);
        prop_assert_eq!(first.transcript, second.transcript);
    }
}
