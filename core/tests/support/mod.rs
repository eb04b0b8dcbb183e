//! Test driver for the engine, in the style of quinn's `Pair`: virtual time, a writer that
//! acknowledges WebSocket frames unless told to stall, and `step()` jumping to the next
//! deadline. Every output is kept in `log` so tests can assert exact sequences.
//!
//! Like a runtime, after the engine closes a WebSocket the harness writes what it can (all
//! frames of a reading client, none of a stalled one) and then reports the connection's end;
//! frames never written are lost, and `received` shows what really reached each client.

#![allow(dead_code)]

use livebridge_core::{
    BatchId, ClientId, Config, ConnId, Engine, HttpRequest, Input, Output, Reply, RequestId,
    SeededIds, Time,
};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

/// 2026-11-25T12:00:00.000Z, the wall-clock time at `Time::ZERO` in every test.
pub const ANCHOR_UNIX_MILLIS: u64 = 1_795_608_000_000;

pub struct Harness {
    pub engine: Engine,
    pub now: Time,
    next_request: u64,
    next_conn: u64,
    /// Every output with the time it came out.
    pub log: Vec<(Time, Output)>,
    /// Replies not yet taken by a test.
    pub replies: BTreeMap<RequestId, Reply>,
    /// Frames handed out and not yet taken, per connection (written or not).
    pub frames: BTreeMap<ConnId, Vec<String>>,
    /// Frames written to the client (acknowledged), not yet taken, per connection: what the
    /// client really received. Frames of a connection that ended unwritten never get here.
    pub received: BTreeMap<ConnId, Vec<String>>,
    /// Frames handed out and not written yet, per connection, oldest first.
    unwritten: BTreeMap<ConnId, VecDeque<String>>,
    /// Connections whose end was reported to the engine.
    ended: BTreeSet<ConnId>,
    /// Connections whose frames are not acknowledged (a client that does not read).
    pub stalled: BTreeSet<ConnId>,
    /// Frames handed out and not acknowledged yet, per connection.
    pub unacked: BTreeMap<ConnId, usize>,
    pub closed: BTreeMap<ConnId, (u16, String)>,
    pub pings: BTreeMap<ConnId, usize>,
    /// Inputs and outputs as readable lines, for snapshot tests (write acks left out).
    pub transcript: Vec<String>,
    /// Batches the engine asked to store (durable history) and that were not acknowledged:
    /// with `store_instantly`, none stay here.
    pub unstored: Vec<BatchId>,
    /// Acknowledge every batch to store at once, as a store that never fails.
    pub store_instantly: bool,
    /// Report written frames as `Input::WsWritten` (as a recorded session does) instead of
    /// calling `Engine::frames_written` (as the runtimes do).
    pub acknowledge_through_input: bool,
}

impl Harness {
    pub fn new(config: Config) -> Self {
        Harness {
            engine: Engine::new(config, SeededIds::new(42), Time::ZERO, ANCHOR_UNIX_MILLIS),
            now: Time::ZERO,
            next_request: 0,
            next_conn: 0,
            log: Vec::new(),
            replies: BTreeMap::new(),
            frames: BTreeMap::new(),
            received: BTreeMap::new(),
            unwritten: BTreeMap::new(),
            ended: BTreeSet::new(),
            stalled: BTreeSet::new(),
            unacked: BTreeMap::new(),
            closed: BTreeMap::new(),
            pings: BTreeMap::new(),
            transcript: Vec::new(),
            unstored: Vec::new(),
            store_instantly: true,
            acknowledge_through_input: false,
        }
    }

    pub fn default() -> Self {
        Harness::new(Config::default())
    }

    /// Feeds an input at the current time and collects the outputs.
    pub fn input(&mut self, input: Input) {
        self.record(format!("-> {}", serde_json::to_string(&input).unwrap()));
        self.engine.handle_input(self.now, input);
        self.drain();
    }

    fn drain(&mut self) {
        loop {
            let mut acks: Vec<(ConnId, usize)> = Vec::new();
            let mut server_closed: Vec<ConnId> = Vec::new();
            let mut stored: Vec<BatchId> = Vec::new();
            while let Some(output) = self.engine.poll_output() {
                match &output {
                    Output::Reply { request, reply } => {
                        assert!(
                            self.replies.insert(*request, reply.clone()).is_none(),
                            "{request} answered twice"
                        );
                    }
                    Output::WsFrame { conn, frame } => {
                        assert!(!self.ended.contains(conn), "frame on ended {conn}");
                        self.frames
                            .entry(*conn)
                            .or_default()
                            .push(frame.to_string());
                        self.unwritten
                            .entry(*conn)
                            .or_default()
                            .push_back(frame.to_string());
                        *self.unacked.entry(*conn).or_default() += 1;
                    }
                    Output::WsClose {
                        conn, code, reason, ..
                    } => {
                        self.closed.insert(*conn, (*code, reason.clone()));
                        server_closed.push(*conn);
                    }
                    Output::WsPing { conn } => *self.pings.entry(*conn).or_default() += 1,
                    Output::Persist(persist) if self.store_instantly => stored.push(persist.batch),
                    Output::Persist(persist) => self.unstored.push(persist.batch),
                    _ => {}
                }
                self.record(format!("<- {}", serde_json::to_string(&output).unwrap()));
                self.log.push((self.now, output));
            }
            for (conn, count) in &self.unacked {
                if *count > 0 && !self.stalled.contains(conn) && !self.ended.contains(conn) {
                    acks.push((*conn, *count));
                }
            }
            let mut ends = Vec::new();
            for conn in server_closed {
                if self.ended.insert(conn) {
                    ends.push(conn);
                }
            }
            if acks.is_empty() && ends.is_empty() && stored.is_empty() {
                return;
            }
            for batch in stored {
                self.engine
                    .handle_input(self.now, Input::Persisted { batch });
            }
            for (conn, frames) in acks {
                self.write(conn, frames);
                self.acknowledge(conn, frames);
            }
            // The runtime reports a closed connection's end after its last writes.
            for conn in ends {
                self.lose_unwritten(conn);
                let code = self.closed.get(&conn).map(|(code, _)| *code);
                self.engine
                    .handle_input(self.now, Input::WsClosed { conn, code });
            }
        }
    }

    /// `frames` of the connection's unwritten frames reach the client.
    fn write(&mut self, conn: ConnId, frames: usize) {
        self.unacked.insert(conn, 0);
        let pending = self.unwritten.entry(conn).or_default();
        let written: Vec<String> = pending.drain(..frames.min(pending.len())).collect();
        self.received.entry(conn).or_default().extend(written);
    }

    /// The connection ended: what it had not written is lost.
    fn lose_unwritten(&mut self, conn: ConnId) {
        self.unwritten.remove(&conn);
        self.unacked.insert(conn, 0);
    }

    /// The client closes its WebSocket (`code`: its close frame's code, `None` for a drop);
    /// frames not written yet are lost.
    pub fn client_closes(&mut self, conn: ConnId, code: Option<u16>) {
        self.lose_unwritten(conn);
        self.ended.insert(conn);
        self.input(Input::WsClosed { conn, code });
    }

    /// Frames the client of `conn` received since the last call, as text.
    pub fn take_received(&mut self, conn: ConnId) -> Vec<String> {
        self.received.remove(&conn).unwrap_or_default()
    }

    fn record(&mut self, line: String) {
        self.transcript
            .push(format!("{:>12} {line}", self.now.to_string()));
    }

    /// The transcript so far, one line per input or output.
    pub fn transcript_text(&self) -> String {
        self.transcript.join("\n")
    }

    /// Acknowledges every frame of a stalled connection and lets it read again.
    pub fn unstall(&mut self, conn: ConnId) {
        self.stalled.remove(&conn);
        if self.ended.contains(&conn) {
            return;
        }
        let frames = self.unacked.get(&conn).copied().unwrap_or(0);
        self.write(conn, frames);
        let input = Input::WsWritten { conn, frames };
        self.record(format!("-> {}", serde_json::to_string(&input).unwrap()));
        self.acknowledge(conn, frames);
        self.drain();
    }

    /// Tells the engine that `frames` of `conn`'s frames were written.
    fn acknowledge(&mut self, conn: ConnId, frames: usize) {
        if self.acknowledge_through_input {
            self.engine
                .handle_input(self.now, Input::WsWritten { conn, frames });
        } else {
            self.engine.frames_written(self.now, conn, frames);
        }
    }

    /// Sends an HTTP request; returns its id (the reply may come later).
    pub fn http(&mut self, method: &str, target: &str, body: &str) -> RequestId {
        self.next_request += 1;
        let request = RequestId(self.next_request);
        self.input(Input::Http {
            request,
            http: HttpRequest::new(method, target, body)
                .with_host("localhost:5100")
                .with_peer("127.0.0.1"),
        });
        request
    }

    /// Sends an HTTP request that must be answered at once; returns status and JSON body.
    pub fn call(&mut self, method: &str, target: &str, body: &str) -> (u16, Value) {
        let request = self.http(method, target, body);
        let reply = self
            .take_reply(request)
            .unwrap_or_else(|| panic!("{method} {target} was not answered at once"));
        (reply.status, json(&reply.body))
    }

    pub fn take_reply(&mut self, request: RequestId) -> Option<Reply> {
        self.replies.remove(&request)
    }

    /// The JSON body of a reply that must have arrived by now.
    pub fn reply_json(&mut self, request: RequestId) -> (u16, Value) {
        let reply = self.take_reply(request).expect("reply has arrived");
        (reply.status, json(&reply.body))
    }

    pub fn handshake(&mut self, client_type: &str) -> ClientId {
        let body = format!(r#"{{"client_type":"{client_type}","protocol_version":"1.0"}}"#);
        let (status, reply) = self.call("POST", "/ws/handshake", &body);
        assert_eq!(status, 200, "{reply}");
        reply["client_id"].as_str().unwrap().parse().unwrap()
    }

    pub fn send(&mut self, client: ClientId, message: Value) -> (u16, Value) {
        let body = serde_json::json!({"client_id": client.to_string(), "message": message});
        self.call("POST", "/ws/send", &body.to_string())
    }

    pub fn subscribe(&mut self, client: ClientId, channels: &[&str]) {
        let (status, reply) = self.send(
            client,
            serde_json::json!({"type": "subscribe", "channels": channels}),
        );
        assert_eq!(status, 200, "{reply}");
    }

    /// Polls without waiting; returns the whole reply body.
    pub fn poll(&mut self, client: ClientId) -> Value {
        let (status, reply) = self.call("GET", &format!("/ws/poll?client_id={client}"), "");
        assert_eq!(status, 200, "{reply}");
        reply
    }

    /// The `type`s of the messages of a poll.
    pub fn poll_types(&mut self, client: ClientId) -> Vec<String> {
        types(&self.poll(client)["messages"])
    }

    /// Publishes one catalogue event through `POST /api/events`.
    pub fn publish(&mut self, event: Value) -> Value {
        let (status, reply) = self.call("POST", "/api/events", &event.to_string());
        assert_eq!(status, 200, "{reply}");
        reply
    }

    /// Asks the engine to open a WebSocket on `conn` and records the decision, then
    /// collects the outputs.
    pub fn open_websocket(&mut self, conn: ConnId, upgrade: HttpRequest) -> Result<(), Reply> {
        self.record(format!(
            "-> open_websocket {conn} {}",
            serde_json::to_string(&upgrade).unwrap()
        ));
        let decision = self.engine.open_websocket(self.now, conn, &upgrade);
        self.record(match &decision {
            Ok(()) => "<= accepted".to_string(),
            Err(reply) => format!("<= refused {}", serde_json::to_string(reply).unwrap()),
        });
        self.drain();
        decision
    }

    /// An upgrade request for `target` on loopback.
    pub fn upgrade(target: &str) -> HttpRequest {
        HttpRequest::new("GET", target, "")
            .with_host("localhost:5100")
            .with_peer("127.0.0.1")
    }

    /// Opens a WebSocket; returns its connection and the client id of its session.
    pub fn ws_open(&mut self) -> (ConnId, ClientId) {
        self.next_conn += 1;
        let conn = ConnId(self.next_conn);
        self.open_websocket(conn, Harness::upgrade("/ws"))
            .expect("upgrade accepted");
        let frames = self.take_frames(conn);
        assert_eq!(frames.len(), 1, "one connection_established frame");
        assert_eq!(frames[0]["type"], "connection_established");
        (
            conn,
            frames[0]["client_id"].as_str().unwrap().parse().unwrap(),
        )
    }

    pub fn ws_send(&mut self, conn: ConnId, message: Value) {
        self.input(Input::WsText {
            conn,
            text: message.to_string(),
        });
    }

    /// Frames received on `conn` since the last call, parsed.
    pub fn take_frames(&mut self, conn: ConnId) -> Vec<Value> {
        self.frames
            .remove(&conn)
            .unwrap_or_default()
            .iter()
            .map(|f| json(f))
            .collect()
    }

    pub fn frame_types(&mut self, conn: ConnId) -> Vec<String> {
        let frames = self.take_frames(conn);
        types(&Value::Array(frames))
    }

    /// Jumps to the next deadline and fires it; false when none is armed.
    pub fn step(&mut self) -> bool {
        match self.engine.poll_timeout() {
            Some((deadline, reason)) => {
                self.now = self.now.max(deadline);
                self.record(format!("-- timeout: {reason}"));
                self.engine.handle_timeout(self.now);
                self.drain();
                true
            }
            None => false,
        }
    }

    /// Moves time forward by `by`, firing every deadline on the way at its own instant.
    pub fn advance(&mut self, by: Duration) {
        let end = self.now + by;
        while let Some((deadline, _)) = self.engine.poll_timeout() {
            if deadline > end {
                break;
            }
            self.step();
        }
        self.now = end;
        self.engine.handle_timeout(self.now);
        self.drain();
    }
}

pub fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

pub fn types(messages: &Value) -> Vec<String> {
    messages
        .as_array()
        .expect("a list of messages")
        .iter()
        .map(|m| m["type"].as_str().unwrap_or("?").to_string())
        .collect()
}

/// A valid `job_progress` event with the given progress.
pub fn job_progress(progress: u32) -> Value {
    serde_json::json!({"type": "job_progress", "job_id": "job-1", "stage": "processing",
                       "progress": progress})
}
