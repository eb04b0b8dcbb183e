//! Engine back end: feeds the steps to `livebridge-core` with virtual time. It plays the
//! part of the runtime: it acknowledges written frames (unless the actor stalls), answers
//! pings with pongs (like a WebSocket client library), enforces the transport limits the
//! server enforces before the engine sees a request (body size, chunked bodies, frame size),
//! and reports closed sockets.

use crate::{Answer, Driver, Item};
use livebridge_core::{
    Config, ConnId, Engine, HttpRequest, Input, Output, Reply, RequestBody, RequestId, SeededIds,
    Time, TransportFailure,
};
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// Wall-clock time at `Time::ZERO`: 2026-11-25T12:00:00.000Z.
pub const ANCHOR_UNIX_MILLIS: u64 = 1_795_608_000_000;

/// The engine driver.
pub struct EngineDriver {
    engine: Engine,
    config: Config,
    now: Time,
    next_request: u64,
    next_conn: u64,
    replies: BTreeMap<RequestId, (Reply, Time)>,
    conns: BTreeMap<String, ConnId>,
    queues: BTreeMap<ConnId, VecDeque<Item>>,
    pings: BTreeMap<ConnId, usize>,
    unacked: BTreeMap<ConnId, usize>,
    stalled: BTreeSet<ConnId>,
    closed: BTreeSet<ConnId>,
}

impl EngineDriver {
    /// A fresh engine with these settings.
    pub fn new(config: Config) -> Self {
        EngineDriver {
            engine: Engine::new(
                config.clone(),
                SeededIds::new(7),
                Time::ZERO,
                ANCHOR_UNIX_MILLIS,
            ),
            config,
            now: Time::ZERO,
            next_request: 0,
            next_conn: 0,
            replies: BTreeMap::new(),
            conns: BTreeMap::new(),
            queues: BTreeMap::new(),
            pings: BTreeMap::new(),
            unacked: BTreeMap::new(),
            stalled: BTreeSet::new(),
            closed: BTreeSet::new(),
        }
    }

    fn input(&mut self, input: Input) {
        self.engine.handle_input(self.now, input);
        self.drain();
    }

    fn drain(&mut self) {
        loop {
            let mut inputs = Vec::new();
            let mut ends = Vec::new();
            while let Some(output) = self.engine.poll_output() {
                match output {
                    Output::Reply { request, reply } => {
                        assert!(
                            self.replies.insert(request, (reply, self.now)).is_none(),
                            "{request} answered twice"
                        );
                    }
                    Output::WsFrame { conn, frame } => {
                        self.queues
                            .entry(conn)
                            .or_default()
                            .push_back(Item::Frame(frame.to_string()));
                        *self.unacked.entry(conn).or_default() += 1;
                    }
                    Output::WsPing { conn } => {
                        *self.pings.entry(conn).or_default() += 1;
                        if !self.closed.contains(&conn) {
                            inputs.push(Input::WsPong { conn });
                        }
                    }
                    Output::WsClose { conn, code, .. } => {
                        self.queues
                            .entry(conn)
                            .or_default()
                            .push_back(Item::Close(Some(code)));
                        if self.closed.insert(conn) {
                            // The runtime reports the socket's end once it is gone, after
                            // the frames it wrote before the close.
                            ends.push(Input::WsClosed { conn, code: None });
                        }
                    }
                    Output::Session(_) => {}
                    // Sessions are HTTP and WebSocket steps; no step feeds Input::Command.
                    Output::CommandDone { .. } => {}
                    // A store that holds every batch at once (sessions with `durable`).
                    Output::Persist(persist) => inputs.push(Input::Persisted {
                        batch: persist.batch,
                    }),
                    // The recorded sessions run on a single node (`clustered` is off).
                    Output::Broker(_) | Output::Forward { .. } | Output::Gather { .. } => {}
                }
            }
            for (conn, count) in &mut self.unacked {
                if *count > 0 && !self.stalled.contains(conn) {
                    inputs.push(Input::WsWritten {
                        conn: *conn,
                        frames: *count,
                    });
                    *count = 0;
                }
            }
            for end in &ends {
                if let Input::WsClosed { conn, .. } = end
                    && self.stalled.contains(conn)
                {
                    self.lose_unwritten(*conn);
                }
            }
            inputs.append(&mut ends);
            if inputs.is_empty() {
                return;
            }
            for input in inputs {
                self.engine.handle_input(self.now, input);
            }
        }
    }

    /// A stalled socket that ends never writes what it held: its client never sees those
    /// frames (the engine counts them as dropped).
    fn lose_unwritten(&mut self, conn: ConnId) {
        let mut unwritten = self.unacked.insert(conn, 0).unwrap_or(0);
        let Some(queue) = self.queues.get_mut(&conn) else {
            return;
        };
        let mut kept = VecDeque::with_capacity(queue.len());
        while let Some(item) = queue.pop_back() {
            match item {
                Item::Frame(_) if unwritten > 0 => unwritten -= 1,
                other => kept.push_front(other),
            }
        }
        *queue = kept;
    }

    fn conn(&self, actor: &str) -> Result<ConnId, String> {
        self.conns
            .get(actor)
            .copied()
            .ok_or_else(|| format!("{actor} has no WebSocket"))
    }
}

impl Driver for EngineDriver {
    fn name(&self) -> &'static str {
        "engine"
    }

    fn advance(&mut self, at_ms: u64) {
        let end = Time::ZERO + std::time::Duration::from_millis(at_ms);
        while let Some((deadline, _)) = self.engine.poll_timeout() {
            if deadline > end {
                break;
            }
            self.now = self.now.max(deadline);
            self.engine.handle_timeout(self.now);
            self.drain();
        }
        self.now = self.now.max(end);
    }

    fn clock_ms(&self) -> (u64, u64) {
        let now = u64::try_from(self.now.saturating_since(Time::ZERO).as_millis()).unwrap();
        (ANCHOR_UNIX_MILLIS, ANCHOR_UNIX_MILLIS + now)
    }

    fn http_start(
        &mut self,
        method: &str,
        path: &str,
        body: Vec<u8>,
        chunked: bool,
    ) -> Result<u64, String> {
        self.next_request += 1;
        let request = RequestId(self.next_request);
        let mut http = HttpRequest::new(method, path, Vec::new())
            .with_host("localhost:5100")
            .with_peer("127.0.0.1");
        http.body = if chunked {
            RequestBody::LengthRequired
        } else if body.len() > self.config.max_body_bytes {
            RequestBody::TooLarge {
                declared: body.len() as u64,
            }
        } else {
            RequestBody::Complete(body)
        };
        self.input(Input::Http { request, http });
        Ok(self.next_request)
    }

    fn http_answer(&mut self, handle: u64, wait: bool) -> Result<Option<Answer>, String> {
        match self.replies.remove(&RequestId(handle)) {
            Some((reply, at)) => Ok(Some(Answer {
                status: reply.status,
                headers: reply.headers.clone(),
                body: reply.body,
                at_ms: Some(u64::try_from(at.saturating_since(Time::ZERO).as_millis()).unwrap()),
            })),
            None if wait => Err("no answer by now".to_string()),
            None => Ok(None),
        }
    }

    fn ws_open(&mut self, actor: &str, path: &str) -> Result<Option<Answer>, String> {
        self.next_conn += 1;
        let conn = ConnId(self.next_conn);
        let upgrade = HttpRequest::new("GET", path, "")
            .with_host("localhost:5100")
            .with_peer("127.0.0.1");
        let decision = self.engine.open_websocket(self.now, conn, &upgrade);
        self.drain();
        match decision {
            Ok(()) => {
                self.conns.insert(actor.to_string(), conn);
                Ok(None)
            }
            Err(reply) => Ok(Some(Answer {
                status: reply.status,
                headers: reply.headers,
                body: reply.body,
                at_ms: None,
            })),
        }
    }

    fn ws_text(&mut self, actor: &str, text: String) -> Result<(), String> {
        let conn = self.conn(actor)?;
        if text.len() > self.config.max_frame_bytes {
            // The runtime's WebSocket layer refuses it before the engine sees it, with the
            // close code core gives that failure.
            let code = TransportFailure::MessageTooBig
                .close_frame()
                .map(|(code, _)| code);
            self.queues
                .entry(conn)
                .or_default()
                .push_back(Item::Close(code));
            self.closed.insert(conn);
            self.input(Input::WsClosed { conn, code: None });
            return Ok(());
        }
        self.input(Input::WsText { conn, text });
        Ok(())
    }

    fn ws_binary(&mut self, actor: &str, len: usize) -> Result<(), String> {
        let conn = self.conn(actor)?;
        self.input(Input::WsBinary { conn, len });
        Ok(())
    }

    fn ws_close(&mut self, actor: &str, code: Option<u16>) -> Result<(), String> {
        let conn = self.conn(actor)?;
        if self.closed.insert(conn) {
            if self.stalled.contains(&conn) {
                self.lose_unwritten(conn);
            }
            self.input(Input::WsClosed { conn, code });
        }
        Ok(())
    }

    fn ws_stall(&mut self, actor: &str, stall: bool) -> Result<(), String> {
        let conn = self.conn(actor)?;
        if stall {
            self.stalled.insert(conn);
        } else {
            self.stalled.remove(&conn);
            self.drain();
        }
        Ok(())
    }

    fn ws_next(&mut self, actor: &str) -> Result<Option<Item>, String> {
        let conn = self.conn(actor)?;
        Ok(self.queues.entry(conn).or_default().pop_front())
    }

    fn ws_quiet(&mut self, actor: &str) -> Result<Vec<Item>, String> {
        let conn = self.conn(actor)?;
        Ok(self.queues.entry(conn).or_default().drain(..).collect())
    }

    fn ws_pings(&mut self, actor: &str) -> Result<usize, String> {
        let conn = self.conn(actor)?;
        Ok(self.pings.remove(&conn).unwrap_or(0))
    }

    fn leftovers(&mut self) -> Vec<(String, Item)> {
        let names: BTreeMap<ConnId, String> =
            self.conns.iter().map(|(a, c)| (*c, a.clone())).collect();
        let mut out = Vec::new();
        for (conn, queue) in &mut self.queues {
            let actor = names
                .get(conn)
                .cloned()
                .unwrap_or_else(|| format!("(replaced socket {conn})"));
            for item in queue.drain(..) {
                out.push((actor.clone(), item));
            }
        }
        out
    }

    fn shutdown(&mut self) {
        self.input(Input::Shutdown);
    }

    fn finish(&mut self) {}
}
