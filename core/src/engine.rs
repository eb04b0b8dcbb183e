//! The protocol state machine: sessions, transports, subscriptions, delivery, timers.
//!
//! Inputs go in through [`Engine::handle_input`] and [`Engine::handle_timeout`], each with the
//! current time; outputs come out of [`Engine::poll_output`]; [`Engine::poll_timeout`] says
//! when the engine next needs [`Engine::handle_timeout`]. Nothing here reads a clock, touches
//! a socket or draws a random number, so the same inputs always give the same outputs.

use crate::catalogue::Event;
use crate::channel::{ChannelIndex, validate_channel_name};
use crate::config::{Config, SlowConsumerPolicy};
use crate::http_api;
use crate::ids::{ClientId, ConnId, IdSource, RequestId};
use crate::input::{Command, HttpRequest, Initiator, Input};
use crate::output::{
    CloseReason, Output, Reply, SessionEvent, TimeoutReason, TimerKind, TransportKind,
};
use crate::session::{Session, SessionKey, SessionTable, Transport};
use crate::stats::{Counters, Gauges, render_prometheus};
use crate::time::{Time, WallClock};
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

/// The protocol version this engine speaks; handshakes must ask for `1.x`.
pub const PROTOCOL_VERSION: &str = "1.0";

/// WebSocket close codes the engine uses.
pub mod close_code {
    /// The client asked to disconnect.
    pub const NORMAL: u16 = 1000;
    /// The server is shutting down.
    pub const GOING_AWAY: u16 = 1001;
    /// The client could not keep up and the policy is to disconnect slow consumers.
    pub const SLOW_CONSUMER: u16 = 1008;
    /// The server ended the session (operator disconnect, stale, cleanup).
    pub const SESSION_ENDED: u16 = 4000;
    /// Another connection resumed this session.
    pub const SESSION_TAKEN_OVER: u16 = 4001;
}

/// A read-only view of one session, for embedders and tests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionView {
    /// The session's id.
    pub client_id: ClientId,
    /// Its client type.
    pub client_type: String,
    /// Its display name.
    pub client_name: Option<String>,
    /// The transport attached right now, if any (a polling client between polls has none).
    pub attached: Option<TransportKind>,
    /// Subscribed channels, by name.
    pub subscriptions: Vec<String>,
    /// Messages waiting for delivery.
    pub queued: usize,
    /// Dropped messages the client has not been told about yet.
    pub unreported_drops: u64,
    /// When it was created.
    pub connected_at: Time,
    /// Its last activity (handshake, poll, message, frame, pong).
    pub last_activity: Time,
}

/// Who receives a published message.
#[derive(Clone, Copy, Debug)]
enum Audience<'a> {
    /// Every session, optionally only those of one client type.
    Everyone { client_type: Option<&'a str> },
    /// Subscribers of a channel, optionally only those of one client type.
    Channel {
        channel: &'a str,
        client_type: Option<&'a str>,
    },
    /// One session.
    Session(SessionKey),
}

/// How a client message arrived, which decides how its reply travels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Via {
    Http,
    WebSocket,
}

/// The livebridge protocol engine. See the crate documentation for the calling pattern.
pub struct Engine {
    config: Config,
    ids: Box<dyn IdSource>,
    clock: WallClock,
    started_at: Time,
    /// The latest time seen; earlier times passed in later are treated as this one.
    now: Time,
    sessions: SessionTable,
    channels: ChannelIndex,
    timers: BTreeSet<(Time, TimerKind, SessionKey)>,
    pending_polls: BTreeMap<RequestId, SessionKey>,
    ready_polls: Vec<SessionKey>,
    outputs: VecDeque<Output>,
    counters: Counters,
    shutting_down: bool,
    /// Reused recipient list, so a publish does not allocate once warmed up.
    recipients: Vec<SessionKey>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("now", &self.now)
            .field("sessions", &self.sessions.len())
            .field("pending_outputs", &self.outputs.len())
            .finish_non_exhaustive()
    }
}

impl Engine {
    /// A new engine. `now` is the caller's current [`Time`] and `unix_millis` the wall-clock
    /// time at that instant (milliseconds since the Unix epoch); timestamps are derived from
    /// the pair. `ids` supplies the bytes of client ids.
    pub fn new(config: Config, ids: impl IdSource + 'static, now: Time, unix_millis: u64) -> Self {
        Engine {
            config,
            ids: Box::new(ids),
            clock: WallClock::new(now, unix_millis),
            started_at: now,
            now,
            sessions: SessionTable::default(),
            channels: ChannelIndex::default(),
            timers: BTreeSet::new(),
            pending_polls: BTreeMap::new(),
            ready_polls: Vec::new(),
            outputs: VecDeque::new(),
            counters: Counters::default(),
            shutting_down: false,
            recipients: Vec::new(),
        }
    }

    /// The settings the engine runs with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Feeds one input. Timers that are due at `now` fire first, so the input always meets
    /// a state that is current. Drain [`Engine::poll_output`] afterwards and re-read
    /// [`Engine::poll_timeout`].
    pub fn handle_input(&mut self, now: Time, input: Input) {
        let now = self.advance(now);
        self.fire_due_timers(now);
        match input {
            Input::Http { request, http } => self.on_http(now, request, http),
            Input::Command { request, command } => self.run_command(now, request, None, command),
            Input::RequestAborted { request } => self.on_request_aborted(now, request),
            Input::WsOpen { conn, upgrade } => self.on_ws_open(now, conn, &upgrade),
            Input::WsText { conn, text } => self.on_ws_text(now, conn, &text),
            Input::WsBinary { conn, len } => {
                if let Some(key) = self.sessions.key_of_conn(conn) {
                    self.touch(now, key);
                    let message = format!(
                        "binary messages are not supported ({len} bytes received); send JSON text"
                    );
                    self.send_error(now, key, &message);
                }
            }
            Input::WsPong { conn } => {
                if let Some(key) = self.sessions.key_of_conn(conn) {
                    self.touch(now, key);
                }
            }
            Input::WsWritten { conn, frames } => {
                if let Some(key) = self.sessions.key_of_conn(conn) {
                    self.on_ws_written(now, key, frames);
                }
            }
            Input::WsClosed { conn, code } => self.on_ws_closed(now, conn, code),
            Input::Shutdown => self.shutdown(now),
        }
        self.answer_ready_polls(now);
    }

    /// Fires every timer due at `now`. Calling it early, late or twice is harmless.
    pub fn handle_timeout(&mut self, now: Time) {
        let now = self.advance(now);
        self.fire_due_timers(now);
        self.answer_ready_polls(now);
    }

    /// The next output, or `None` when there is nothing to do. Call after every
    /// [`Engine::handle_input`] and [`Engine::handle_timeout`] until it returns `None`.
    #[must_use]
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// When [`Engine::handle_timeout`] must next be called, and why; `None` when no timer is
    /// armed. Changes after every input.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<(Time, TimeoutReason)> {
        self.timers.first().map(|&(at, kind, key)| {
            let client_id = self
                .sessions
                .get(key)
                .map(|s| s.id)
                .expect("timers only exist for live sessions");
            (at, TimeoutReason { kind, client_id })
        })
    }

    /// One session, by id.
    pub fn session(&self, client_id: &ClientId) -> Option<SessionView> {
        let key = self.sessions.key_of(client_id)?;
        self.sessions.get(key).map(view)
    }

    /// Every session, oldest first.
    pub fn sessions(&self) -> Vec<SessionView> {
        self.sessions.iter_by_age().into_iter().map(view).collect()
    }

    fn advance(&mut self, now: Time) -> Time {
        self.now = self.now.max(now);
        self.now
    }

    fn timestamp(&self, now: Time) -> String {
        self.clock.timestamp(now)
    }

    // ----- HTTP and commands -------------------------------------------------------------

    fn on_http(&mut self, now: Time, request: RequestId, http: HttpRequest) {
        let routed = http_api::route(&http, &self.config);
        if self.shutting_down {
            let reply = Reply::error(503, "the server is shutting down");
            return self.reply(request, Some(routed.route), reply);
        }
        match routed.command {
            Ok(command) => self.run_command(now, request, Some(routed.route), command),
            Err(reply) => self.reply(request, Some(routed.route), reply),
        }
    }

    fn reply(&mut self, request: RequestId, route: Option<&'static str>, reply: Reply) {
        if let Some(route) = route {
            *self
                .counters
                .http_requests
                .entry((route, reply.status))
                .or_default() += 1;
        }
        self.outputs.push_back(Output::Reply { request, reply });
    }

    fn run_command(
        &mut self,
        now: Time,
        request: RequestId,
        route: Option<&'static str>,
        command: Command,
    ) {
        if self.shutting_down {
            return self.reply(
                request,
                route,
                Reply::error(503, "the server is shutting down"),
            );
        }
        let reply = match command {
            Command::Handshake {
                client_type,
                protocol_version,
                client_id,
                client_name,
            } => self.handshake(
                now,
                client_type,
                &protocol_version,
                client_id.as_deref(),
                client_name,
            ),
            Command::Poll { client_id, wait } => {
                match self.poll(now, request, route.is_some(), client_id, wait) {
                    Some(reply) => reply,
                    None => return,
                }
            }
            Command::Send { client_id, message } => self.http_send(now, client_id, message),
            Command::Disconnect {
                client_id,
                initiator,
            } => self.disconnect(client_id, initiator),
            Command::Broadcast {
                message,
                channel,
                client_type,
            } => self.broadcast(now, message, channel.as_deref(), client_type.as_deref()),
            Command::SendTo { client_id, message } => self.send_to(now, client_id, message),
            Command::Publish { events } => self.publish_events(now, events),
            Command::Cleanup { idle_for } => self.cleanup(now, idle_for),
            Command::ListClients => self.list_clients(now),
            Command::Status => Reply::json(200, self.status_json(now, true).to_string()),
            Command::Stats => Reply::json(200, self.status_json(now, false).to_string()),
            Command::Health => self.health(now),
            Command::Metrics => self.metrics(now),
        };
        self.reply(request, route, reply);
    }

    fn handshake(
        &mut self,
        now: Time,
        client_type: String,
        protocol_version: &str,
        client_id: Option<&str>,
        client_name: Option<String>,
    ) -> Reply {
        if protocol_version != "1" && !protocol_version.starts_with("1.") {
            return Reply::error(
                400,
                &format!(
                    "unsupported protocol_version {protocol_version:?}; this server speaks {PROTOCOL_VERSION}"
                ),
            );
        }
        if let Err(problem) = validate_label("client_type", &client_type) {
            return Reply::error(400, &problem);
        }
        let resumable = client_id
            .and_then(|text| text.parse::<ClientId>().ok())
            .and_then(|id| self.sessions.key_of(&id));
        let (key, resumed) = match resumable {
            Some(key) => {
                self.release_transport(now, key, "session resumed by a new handshake");
                let session = self.sessions.get_mut(key).expect("resumable session");
                session.client_type = client_type;
                session.kind = TransportKind::Polling;
                self.counters.sessions_resumed += 1;
                self.outputs
                    .push_back(Output::Session(SessionEvent::Resumed {
                        client_id: session.id,
                        transport: TransportKind::Polling,
                    }));
                (key, true)
            }
            None => {
                if self.sessions.len() >= self.config.max_clients {
                    return self.server_full();
                }
                let key = self.open_session(now, client_type, TransportKind::Polling);
                let welcome = self.connection_established(now, key);
                self.deliver(key, welcome);
                (key, false)
            }
        };
        self.touch(now, key);
        let session = self.sessions.get_mut(key).expect("live session");
        if client_name.is_some() {
            session.client_name = client_name;
        }
        let body = json!({
            "success": true,
            "client_id": session.id,
            "protocol_version": PROTOCOL_VERSION,
            "server_time": self.clock.timestamp(now),
            "resumed": resumed,
            "queued": session.queue.len(),
        });
        Reply::json(200, body.to_string())
    }

    fn server_full(&self) -> Reply {
        Reply::error(
            503,
            &format!(
                "the server holds its limit of {} clients; try again later",
                self.config.max_clients
            ),
        )
    }

    fn unknown_client(client_id: ClientId) -> Reply {
        Reply::error(
            404,
            &format!(
                "unknown client_id {client_id}: the session ended or never existed; handshake again"
            ),
        )
    }

    /// Returns the reply, or `None` when the poll waits for messages.
    fn poll(
        &mut self,
        now: Time,
        request: RequestId,
        http: bool,
        client_id: ClientId,
        wait: Option<Duration>,
    ) -> Option<Reply> {
        let Some(key) = self.sessions.key_of(&client_id) else {
            return Some(Self::unknown_client(client_id));
        };
        let session = self.sessions.get(key).expect("indexed session");
        if session.websocket().is_some() {
            return Some(Reply::error(
                409,
                &format!("client {client_id} is connected over WebSocket and cannot poll as well"),
            ));
        }
        // A second poll supersedes the first, which is answered at once: no request hangs.
        if let Transport::PendingPoll { request: older, .. } = session.transport {
            self.answer_poll(now, key, older, true);
        }
        let wait = wait
            .unwrap_or(Duration::ZERO)
            .min(self.config.long_poll_max);
        let session = self.sessions.get_mut(key).expect("indexed session");
        session.last_poll = Some(now);
        session.kind = TransportKind::Polling;
        if !session.queue.is_empty() || wait.is_zero() {
            self.touch(now, key);
            return Some(self.take_poll_reply(now, key));
        }
        session.transport = Transport::PendingPoll { request, http };
        session.last_activity = now;
        self.pending_polls.insert(request, key);
        self.set_timer(key, TimerKind::LongPollExpiry, Some(now + wait));
        // A client holding a poll open is present; staleness counts from when it ends.
        self.set_timer(key, TimerKind::StaleEviction, None);
        None
    }

    /// Answers the pending poll `request` of `key`: with whatever is queued, or, when it is
    /// `superseded` by another transport or poll, empty so the messages wait for that one.
    fn answer_poll(&mut self, now: Time, key: SessionKey, request: RequestId, superseded: bool) {
        let session = self.sessions.get_mut(key).expect("polling session");
        let http = match session.transport {
            Transport::PendingPoll {
                request: pending,
                http,
            } if pending == request => http,
            _ => return,
        };
        session.transport = Transport::Detached;
        self.pending_polls.remove(&request);
        self.set_timer(key, TimerKind::LongPollExpiry, None);
        self.touch(now, key);
        let reply = if superseded {
            let body = json!({"success": true, "messages": [], "dropped": 0,
                              "superseded": true, "timestamp": self.timestamp(now)});
            Reply::json(200, body.to_string())
        } else {
            self.take_poll_reply(now, key)
        };
        self.reply(request, http.then_some("/ws/poll"), reply);
    }

    /// Drains the queue into a poll reply. Messages are already JSON, so the reply is
    /// assembled from them without re-encoding.
    fn take_poll_reply(&mut self, now: Time, key: SessionKey) -> Reply {
        let timestamp = self.timestamp(now);
        let session = self.sessions.get_mut(key).expect("polling session");
        let dropped = session.queue.take_unreported_drops();
        let mut body = String::with_capacity(64 + session.queue.len() * 160);
        body.push_str("{\"success\":true,\"messages\":[");
        let mut count = 0u64;
        for (index, message) in session.queue.drain().enumerate() {
            if index > 0 {
                body.push(',');
            }
            body.push_str(&message);
            count += 1;
        }
        body.push_str("],\"dropped\":");
        body.push_str(&dropped.to_string());
        body.push_str(",\"timestamp\":\"");
        body.push_str(&timestamp);
        body.push_str("\"}");
        self.counters.delivered += count;
        Reply::json(200, body)
    }

    fn answer_ready_polls(&mut self, now: Time) {
        if self.ready_polls.is_empty() {
            return;
        }
        for key in std::mem::take(&mut self.ready_polls) {
            let Some(session) = self.sessions.get_mut(key) else {
                continue;
            };
            session.poll_ready = false;
            if let Transport::PendingPoll { request, .. } = session.transport
                && !session.queue.is_empty()
            {
                self.answer_poll(now, key, request, false);
            }
        }
    }

    fn http_send(&mut self, now: Time, client_id: ClientId, message: Value) -> Reply {
        let Some(key) = self.sessions.key_of(&client_id) else {
            return Self::unknown_client(client_id);
        };
        self.touch(now, key);
        match self.client_message(now, key, message, Via::Http) {
            Ok(response) => {
                Reply::json(200, format!("{{\"success\":true,\"response\":{response}}}"))
            }
            Err(problem) => Reply::error(400, &problem),
        }
    }

    fn disconnect(&mut self, client_id: ClientId, initiator: Initiator) -> Reply {
        let Some(key) = self.sessions.key_of(&client_id) else {
            return Self::unknown_client(client_id);
        };
        let reason = match initiator {
            Initiator::Client => CloseReason::ClientDisconnect,
            Initiator::Admin => CloseReason::AdminDisconnect,
        };
        self.end_session(key, reason);
        Reply::json(
            200,
            json!({"success": true, "client_id": client_id, "disconnected": true}).to_string(),
        )
    }

    /// Encodes a message sent by the application or an operator: a catalogue event is
    /// validated and stamped; any other object needs a string `type` and gets a `timestamp`
    /// unless it has one.
    fn encode_message(&self, now: Time, message: Value) -> Result<Arc<str>, String> {
        let Value::Object(mut map) = message else {
            return Err("`message` must be a JSON object".to_string());
        };
        if !map.get("type").is_some_and(Value::is_string) {
            return Err("`message` needs a string field `type`".to_string());
        }
        if let Some(event) = Event::decode(&map).map_err(|e| e.to_string())? {
            return Ok(event.to_json(&self.timestamp(now)).into());
        }
        if !map.contains_key("timestamp") {
            map.insert("timestamp".to_string(), Value::from(self.timestamp(now)));
        }
        Ok(Value::Object(map).to_string().into())
    }

    fn broadcast(
        &mut self,
        now: Time,
        message: Value,
        channel: Option<&str>,
        client_type: Option<&str>,
    ) -> Reply {
        if let Some(channel) = channel
            && let Err(problem) = validate_channel_name(channel, self.config.max_channel_name_bytes)
        {
            return Reply::error(400, &problem);
        }
        let message_type = message.get("type").cloned().unwrap_or(Value::Null);
        let frame = match self.encode_message(now, message) {
            Ok(frame) => frame,
            Err(problem) => return Reply::error(400, &problem),
        };
        let audience = match channel {
            Some(channel) => Audience::Channel {
                channel,
                client_type,
            },
            None => Audience::Everyone { client_type },
        };
        let recipients = self.publish(audience, frame, None);
        Reply::json(
            200,
            json!({"success": true, "type": message_type, "channel": channel,
                   "client_type": client_type, "recipients": recipients})
            .to_string(),
        )
    }

    fn send_to(&mut self, now: Time, client_id: ClientId, message: Value) -> Reply {
        let Some(key) = self.sessions.key_of(&client_id) else {
            return Self::unknown_client(client_id);
        };
        let message_type = message.get("type").cloned().unwrap_or(Value::Null);
        let frame = match self.encode_message(now, message) {
            Ok(frame) => frame,
            Err(problem) => return Reply::error(400, &problem),
        };
        let recipients = self.publish(Audience::Session(key), frame, None);
        Reply::json(
            200,
            json!({"success": true, "type": message_type, "client_id": client_id,
                   "recipients": recipients})
            .to_string(),
        )
    }

    fn publish_events(&mut self, now: Time, events: Vec<Value>) -> Reply {
        if events.is_empty() {
            return Reply::error(400, "no events to publish");
        }
        let batch = events.len() > 1;
        let mut decoded = Vec::with_capacity(events.len());
        for (index, value) in events.into_iter().enumerate() {
            let prefix = if batch {
                format!("events[{index}]: ")
            } else {
                String::new()
            };
            let Value::Object(map) = value else {
                return Reply::error(400, &format!("{prefix}an event must be a JSON object"));
            };
            match Event::decode(&map) {
                Ok(Some(event)) => decoded.push(event),
                Ok(None) => {
                    let problem = match map.get("type") {
                        Some(Value::String(name)) => {
                            format!("unknown event type {name:?}; see the event catalogue")
                        }
                        _ => "missing field `type`".to_string(),
                    };
                    return Reply::error(400, &format!("{prefix}{problem}"));
                }
                Err(problem) => return Reply::error(400, &format!("{prefix}{problem}")),
            }
        }
        // Every event was valid: publish them all, in order.
        let timestamp = self.timestamp(now);
        let mut results = Vec::with_capacity(decoded.len());
        for event in decoded {
            let frame: Arc<str> = event.to_json(&timestamp).into();
            let audience = Audience::Channel {
                channel: event.channel(),
                client_type: None,
            };
            let recipients = self.publish(audience, frame, None);
            results.push(json!({"type": event.name(), "channel": event.channel(),
                                "recipients": recipients}));
        }
        Reply::json(200, json!({"success": true, "events": results}).to_string())
    }

    fn cleanup(&mut self, now: Time, idle_for: Duration) -> Reply {
        // Only detached sessions are idle: a pending poll or an open WebSocket is a client
        // that is there (an open WebSocket that stops answering pings goes stale instead).
        let idle: Vec<SessionKey> = self
            .sessions
            .iter()
            .filter(|(_, s)| {
                matches!(s.transport, Transport::Detached)
                    && now.saturating_since(s.last_activity) >= idle_for
            })
            .map(|(key, _)| key)
            .collect();
        for &key in &idle {
            self.end_session(key, CloseReason::Cleanup);
        }
        Reply::json(
            200,
            json!({"success": true, "removed": idle.len(), "remaining": self.sessions.len()})
                .to_string(),
        )
    }

    fn list_clients(&self, now: Time) -> Reply {
        let clients: Vec<Value> = self
            .sessions
            .iter_by_age()
            .into_iter()
            .map(|s| {
                json!({
                    "id": s.id,
                    "client_type": s.client_type,
                    "client_name": s.client_name,
                    "transport": s.kind.as_str(),
                    "attached": !matches!(s.transport, Transport::Detached),
                    "connected_at": self.timestamp(s.connected_at),
                    "last_activity": self.timestamp(s.last_activity),
                    "last_poll": s.last_poll.map(|t| self.timestamp(t)),
                    "idle_seconds": now.saturating_since(s.last_activity).as_secs_f64(),
                    "subscriptions": s.subscriptions,
                    "queued": s.queue.len(),
                })
            })
            .collect();
        Reply::json(
            200,
            json!({"success": true, "count": clients.len(), "clients": clients}).to_string(),
        )
    }

    fn status_json(&self, now: Time, with_config: bool) -> Value {
        let mut by_type: BTreeMap<&str, usize> = BTreeMap::new();
        let mut by_transport: BTreeMap<&str, usize> = BTreeMap::new();
        for (_, session) in self.sessions.iter() {
            *by_type.entry(&session.client_type).or_default() += 1;
            *by_transport.entry(session.kind.as_str()).or_default() += 1;
        }
        let channels: BTreeMap<&str, usize> = self.channels.counts().collect();
        let mut status = json!({
            "success": true,
            "enabled": true,
            "protocol_version": PROTOCOL_VERSION,
            "server_time": self.timestamp(now),
            "uptime_seconds": now.saturating_since(self.started_at).as_secs_f64(),
            "total_clients": self.sessions.len(),
            "clients_by_type": by_type,
            "clients_by_transport": by_transport,
            "channels": channels,
            "messages_published": self.counters.published,
            "messages_delivered": self.counters.delivered,
            "messages_dropped": self.counters.dropped,
            "messages_undelivered": self.counters.undelivered,
            "evictions": self.counters.evictions,
        });
        if with_config {
            status["config"] = json!({
                "queue_limit": self.config.queue_limit,
                "stale_after_seconds": self.config.stale_after.as_secs_f64(),
                "long_poll_max_seconds": self.config.long_poll_max.as_secs_f64(),
                "ping_interval_seconds": self.config.ping_interval.as_secs_f64(),
                "max_clients": self.config.max_clients,
            });
        }
        status
    }

    fn health(&self, now: Time) -> Reply {
        Reply::json(
            200,
            json!({
                "success": true,
                "status": "healthy",
                "service": "livebridge",
                "version": env!("CARGO_PKG_VERSION"),
                "protocol_version": PROTOCOL_VERSION,
                "uptime_seconds": now.saturating_since(self.started_at).as_secs_f64(),
                "clients": self.sessions.len(),
            })
            .to_string(),
        )
    }

    fn metrics(&self, now: Time) -> Reply {
        let mut sessions: BTreeMap<(&'static str, String), usize> = BTreeMap::new();
        let mut queued = 0;
        for (_, session) in self.sessions.iter() {
            *sessions
                .entry((session.kind.as_str(), session.client_type.clone()))
                .or_default() += 1;
            queued += session.queue.len();
        }
        let gauges = Gauges {
            sessions,
            queued_messages: queued,
            channels: self.channels.counts().count(),
            uptime_seconds: now.saturating_since(self.started_at).as_secs_f64(),
        };
        Reply {
            status: 200,
            content_type: crate::output::ContentType::Prometheus,
            headers: Vec::new(),
            body: render_prometheus(&self.counters, &gauges),
        }
    }

    fn on_request_aborted(&mut self, now: Time, request: RequestId) {
        let Some(key) = self.pending_polls.remove(&request) else {
            return;
        };
        let session = self
            .sessions
            .get_mut(key)
            .expect("pending poll of a live session");
        if matches!(session.transport, Transport::PendingPoll { request: r, .. } if r == request) {
            session.transport = Transport::Detached;
            self.set_timer(key, TimerKind::LongPollExpiry, None);
            self.touch(now, key);
        }
    }

    // ----- client messages (both transports) ---------------------------------------------

    /// Handles one message from a client; returns the JSON of the reply, or the problem.
    fn client_message(
        &mut self,
        now: Time,
        key: SessionKey,
        message: Value,
        via: Via,
    ) -> Result<String, String> {
        let Value::Object(map) = message else {
            return Err("a message must be a JSON object with a string field `type`".to_string());
        };
        let Some(message_type) = map.get("type").and_then(Value::as_str) else {
            return Err("a message must be a JSON object with a string field `type`".to_string());
        };
        let timestamp = self.timestamp(now);
        match message_type {
            "ping" => Ok(json!({"type": "pong", "timestamp": timestamp}).to_string()),
            "register" => self.register(now, key, &map, via),
            "subscribe" | "unsubscribe" => {
                let subscribe = message_type == "subscribe";
                let channels = channel_list(&map)?;
                self.change_subscriptions(key, &channels, subscribe)?;
                let session = self.sessions.get(key).expect("live session");
                Ok(json!({
                    "type": if subscribe { "subscribed" } else { "unsubscribed" },
                    "channels": channels,
                    "subscriptions": session.subscriptions,
                    "timestamp": timestamp,
                })
                .to_string())
            }
            other => match Event::decode(&map) {
                Ok(Some(event)) => {
                    let frame: Arc<str> = event.to_json(&timestamp).into();
                    let audience = Audience::Channel {
                        channel: event.channel(),
                        client_type: None,
                    };
                    let recipients = self.publish(audience, frame, Some(key));
                    Ok(json!({
                        "type": "published",
                        "event": event.name(),
                        "channel": event.channel(),
                        "recipients": recipients,
                        "timestamp": timestamp,
                    })
                    .to_string())
                }
                Ok(None) => Err(format!(
                    "unknown message type {other:?}: expected ping, register, subscribe, \
                     unsubscribe or an event of the catalogue"
                )),
                Err(problem) => Err(problem.to_string()),
            },
        }
    }

    /// `register`: sets type and name. Over a WebSocket, a `client_id` naming another live
    /// session resumes it (see [`Engine::resume_over_websocket`], handled before this).
    fn register(
        &mut self,
        now: Time,
        key: SessionKey,
        map: &Map<String, Value>,
        via: Via,
    ) -> Result<String, String> {
        let client_type = optional_str(map, "client_type")?;
        let client_name = optional_str(map, "client_name")?;
        let requested_id = optional_str(map, "client_id")?;
        if let Some(client_type) = client_type {
            validate_label("client_type", client_type)?;
        }
        let session = self.sessions.get_mut(key).expect("live session");
        let own_id = session.id.to_string();
        if via == Via::Http && requested_id.is_some_and(|id| id != own_id) {
            return Err(
                "to resume another session over HTTP, send its client_id to /ws/handshake"
                    .to_string(),
            );
        }
        if let Some(client_type) = client_type {
            session.client_type = client_type.to_string();
        }
        if let Some(client_name) = client_name {
            session.client_name = Some(client_name.to_string());
        }
        Ok(self.registered_json(now, key, false))
    }

    fn registered_json(&self, now: Time, key: SessionKey, resumed: bool) -> String {
        let session = self.sessions.get(key).expect("live session");
        json!({
            "type": "registered",
            "client_id": session.id,
            "client_type": session.client_type,
            "client_name": session.client_name,
            "resumed": resumed,
            "subscriptions": session.subscriptions,
            "timestamp": self.timestamp(now),
        })
        .to_string()
    }

    fn change_subscriptions(
        &mut self,
        key: SessionKey,
        channels: &[String],
        subscribe: bool,
    ) -> Result<(), String> {
        for channel in channels {
            validate_channel_name(channel, self.config.max_channel_name_bytes)?;
        }
        let session = self.sessions.get_mut(key).expect("live session");
        if subscribe {
            let added = channels
                .iter()
                .filter(|c| !session.subscriptions.contains(*c))
                .collect::<BTreeSet<_>>()
                .len();
            let total = session.subscriptions.len() + added;
            if total > self.config.max_subscriptions {
                return Err(format!(
                    "subscribing would make {total} subscriptions; the limit is {}",
                    self.config.max_subscriptions
                ));
            }
            for channel in channels {
                if session.subscriptions.insert(channel.clone()) {
                    self.channels.subscribe(channel, key);
                }
            }
        } else {
            for channel in channels {
                if session.subscriptions.remove(channel) {
                    self.channels.unsubscribe(channel, key);
                }
            }
        }
        Ok(())
    }

    // ----- WebSocket ---------------------------------------------------------------------

    fn on_ws_open(&mut self, now: Time, conn: ConnId, upgrade: &HttpRequest) {
        let (path, _) = http_api::split_target(&upgrade.target);
        let refusal = if self.shutting_down {
            Some(Reply::error(503, "the server is shutting down"))
        } else if path != http_api::WEBSOCKET_PATH {
            Some(Reply::error(
                404,
                &format!("no WebSocket endpoint at {path}; use /ws"),
            ))
        } else if self.sessions.key_of_conn(conn).is_some() {
            Some(Reply::error(409, &format!("{conn} is already open")))
        } else if self.sessions.len() >= self.config.max_clients {
            Some(self.server_full())
        } else {
            None
        };
        if let Some(reply) = refusal {
            self.outputs.push_back(Output::WsReject { conn, reply });
            return;
        }
        self.outputs.push_back(Output::WsAccept { conn });
        let key = self.open_session(now, "unknown".to_string(), TransportKind::Websocket);
        self.sessions.attach_websocket(key, conn, 0);
        self.touch(now, key);
        let welcome = self.connection_established(now, key);
        self.deliver(key, welcome);
    }

    fn on_ws_text(&mut self, now: Time, conn: ConnId, text: &str) {
        let Some(key) = self.sessions.key_of_conn(conn) else {
            return;
        };
        self.touch(now, key);
        if text.len() > self.config.max_frame_bytes {
            let problem = format!(
                "message is {} bytes; the limit is {}",
                text.len(),
                self.config.max_frame_bytes
            );
            return self.send_error(now, key, &problem);
        }
        let message: Value = match serde_json::from_str(text) {
            Ok(message) => message,
            Err(err) => return self.send_error(now, key, &format!("invalid JSON: {err}")),
        };
        if let Some(target) = self.resume_target(key, &message) {
            return self.resume_over_websocket(now, key, conn, target, &message);
        }
        match self.client_message(now, key, message, Via::WebSocket) {
            Ok(reply) => self.deliver(key, reply.into()),
            Err(problem) => self.send_error(now, key, &problem),
        }
    }

    /// The live session a WebSocket `register` asks to resume, if any.
    fn resume_target(&self, key: SessionKey, message: &Value) -> Option<SessionKey> {
        if message.get("type").and_then(Value::as_str) != Some("register") {
            return None;
        }
        let id: ClientId = message.get("client_id")?.as_str()?.parse().ok()?;
        let target = self.sessions.key_of(&id)?;
        (target != key).then_some(target)
    }

    /// Moves the connection from its fresh session `fresh` to the resumed session `target`:
    /// subscriptions made on the fresh session are kept, the fresh session ends, the target's
    /// previous transport is closed or answered, and its queued messages follow the reply.
    fn resume_over_websocket(
        &mut self,
        now: Time,
        fresh: SessionKey,
        conn: ConnId,
        target: SessionKey,
        message: &Value,
    ) {
        let map = message.as_object().expect("register is an object");
        if let Err(problem) = ["client_type", "client_name"]
            .iter()
            .try_for_each(|field| optional_str(map, field).map(drop))
            .and_then(|()| match optional_str(map, "client_type")? {
                Some(client_type) => validate_label("client_type", client_type),
                None => Ok(()),
            })
        {
            return self.send_error(now, fresh, &problem);
        }
        self.release_transport(now, target, "session resumed on another connection");
        let in_flight = match self.sessions.get(fresh).map(|s| &s.transport) {
            Some(Transport::WebSocket { in_flight, .. }) => *in_flight,
            _ => 0,
        };
        let carried: Vec<String> = self
            .sessions
            .get(fresh)
            .map(|s| s.subscriptions.iter().cloned().collect())
            .unwrap_or_default();
        self.sessions.detach(fresh);
        self.end_session(fresh, CloseReason::MergedIntoResumed);
        // Subscriptions made before `register` are kept, within the per-client limit.
        let room = self.config.max_subscriptions;
        let session = self.sessions.get_mut(target).expect("resume target");
        for channel in carried {
            if session.subscriptions.len() >= room {
                break;
            }
            if session.subscriptions.insert(channel.clone()) {
                self.channels.subscribe(&channel, target);
            }
        }
        self.sessions.attach_websocket(target, conn, in_flight);
        let session = self.sessions.get_mut(target).expect("resume target");
        if let Some(client_type) = map.get("client_type").and_then(Value::as_str) {
            session.client_type = client_type.to_string();
        }
        if let Some(client_name) = map.get("client_name").and_then(Value::as_str) {
            session.client_name = Some(client_name.to_string());
        }
        let client_id = session.id;
        self.counters.sessions_resumed += 1;
        self.outputs
            .push_back(Output::Session(SessionEvent::Resumed {
                client_id,
                transport: TransportKind::Websocket,
            }));
        self.touch(now, target);
        // The reply goes out ahead of the backlog so the client knows what follows.
        let registered = self.registered_json(now, target, true);
        self.emit_frame(target, registered.into());
        self.flush_websocket(now, target);
    }

    fn on_ws_written(&mut self, now: Time, key: SessionKey, frames: usize) {
        if let Some(Session {
            transport: Transport::WebSocket { in_flight, .. },
            ..
        }) = self.sessions.get_mut(key)
        {
            *in_flight = in_flight.saturating_sub(frames);
        }
        self.flush_websocket(now, key);
    }

    /// Moves queued messages into the write window, preceded by a `messages_dropped` notice
    /// when some were lost.
    fn flush_websocket(&mut self, now: Time, key: SessionKey) {
        let window = self.config.ws_write_window.max(1);
        loop {
            let Some(session) = self.sessions.get_mut(key) else {
                return;
            };
            let Transport::WebSocket { in_flight, .. } = session.transport else {
                return;
            };
            if in_flight >= window {
                return;
            }
            let frame: Arc<str> = if session.queue.unreported_drops() > 0 {
                let dropped = session.queue.take_unreported_drops();
                json!({"type": "messages_dropped", "dropped": dropped,
                       "timestamp": self.clock.timestamp(now)})
                .to_string()
                .into()
            } else {
                match session.queue.pop() {
                    Some(frame) => frame,
                    None => return,
                }
            };
            self.emit_frame(key, frame);
        }
    }

    /// Hands one frame to the WebSocket writer.
    fn emit_frame(&mut self, key: SessionKey, frame: Arc<str>) {
        let session = self.sessions.get_mut(key).expect("live session");
        if let Transport::WebSocket { conn, in_flight } = &mut session.transport {
            *in_flight += 1;
            self.counters.delivered += 1;
            self.outputs
                .push_back(Output::WsFrame { conn: *conn, frame });
        }
    }

    fn on_ws_closed(&mut self, now: Time, conn: ConnId, code: Option<u16>) {
        let Some(key) = self.sessions.key_of_conn(conn) else {
            return;
        };
        self.sessions.detach(key);
        self.set_timer(key, TimerKind::Ping, None);
        if code == Some(close_code::NORMAL) {
            return self.end_session(key, CloseReason::WebSocketClosed);
        }
        self.touch(now, key);
        let client_id = self.sessions.get(key).expect("live session").id;
        self.outputs
            .push_back(Output::Session(SessionEvent::Detached { client_id }));
    }

    fn send_error(&mut self, now: Time, key: SessionKey, problem: &str) {
        let frame = json!({"type": "error", "error": problem, "timestamp": self.timestamp(now)});
        self.deliver(key, frame.to_string().into());
    }

    // ----- sessions ----------------------------------------------------------------------

    fn open_session(&mut self, now: Time, client_type: String, kind: TransportKind) -> SessionKey {
        let id = loop {
            let id = ClientId::from_random_bytes(self.ids.next_id_bytes());
            if self.sessions.key_of(&id).is_none() {
                break id;
            }
        };
        let session = Session::new(id, client_type.clone(), kind, self.config.queue_limit, now);
        let key = self.sessions.insert(session);
        self.counters.sessions_opened += 1;
        self.outputs
            .push_back(Output::Session(SessionEvent::Opened {
                client_id: id,
                client_type,
                transport: kind,
            }));
        key
    }

    fn connection_established(&self, now: Time, key: SessionKey) -> Arc<str> {
        let session = self.sessions.get(key).expect("live session");
        let timestamp = self.timestamp(now);
        json!({
            "type": "connection_established",
            "client_id": session.id,
            "protocol_version": PROTOCOL_VERSION,
            "server_time": timestamp,
            "timestamp": timestamp,
        })
        .to_string()
        .into()
    }

    /// Records client activity: restarts the stale countdown and, on a WebSocket, the ping
    /// countdown.
    fn touch(&mut self, now: Time, key: SessionKey) {
        let Some(session) = self.sessions.get_mut(key) else {
            return;
        };
        session.last_activity = now;
        let polling = matches!(session.transport, Transport::PendingPoll { .. });
        let websocket = session.websocket().is_some();
        let stale_at = (!polling).then(|| now + self.config.stale_after);
        let ping_at = websocket.then(|| now + self.config.ping_interval);
        self.set_timer(key, TimerKind::StaleEviction, stale_at);
        self.set_timer(key, TimerKind::Ping, ping_at);
    }

    fn set_timer(&mut self, key: SessionKey, kind: TimerKind, at: Option<Time>) {
        let Some(session) = self.sessions.get_mut(key) else {
            return;
        };
        let slot = match kind {
            TimerKind::StaleEviction => &mut session.timers.stale_at,
            TimerKind::LongPollExpiry => &mut session.timers.poll_expires_at,
            TimerKind::Ping => &mut session.timers.ping_at,
        };
        if *slot == at {
            return;
        }
        if let Some(old) = slot.take() {
            self.timers.remove(&(old, kind, key));
        }
        if let Some(at) = at {
            self.timers.insert((at, kind, key));
            *slot = Some(at);
        }
    }

    fn fire_due_timers(&mut self, now: Time) {
        while let Some(&(at, kind, key)) = self.timers.first() {
            if at > now {
                break;
            }
            self.set_timer(key, kind, None);
            match kind {
                TimerKind::LongPollExpiry => {
                    if let Some(Transport::PendingPoll { request, .. }) =
                        self.sessions.get(key).map(|s| &s.transport)
                    {
                        let request = *request;
                        self.answer_poll(now, key, request, false);
                    }
                }
                TimerKind::Ping => {
                    if let Some(conn) = self.sessions.get(key).and_then(Session::websocket) {
                        self.outputs.push_back(Output::WsPing { conn });
                        self.set_timer(key, kind, Some(now + self.config.ping_interval));
                    }
                }
                TimerKind::StaleEviction => self.end_session(key, CloseReason::Stale),
            }
        }
    }

    /// Detaches the session's transport: a pending poll is answered with what is queued, a
    /// WebSocket is closed as taken over.
    fn release_transport(&mut self, now: Time, key: SessionKey, why: &str) {
        match self.sessions.get(key).map(|s| &s.transport) {
            Some(Transport::PendingPoll { request, .. }) => {
                let request = *request;
                self.answer_poll(now, key, request, true);
            }
            Some(Transport::WebSocket { conn, .. }) => {
                let conn = *conn;
                self.sessions.detach(key);
                self.set_timer(key, TimerKind::Ping, None);
                self.outputs.push_back(Output::WsClose {
                    conn,
                    code: close_code::SESSION_TAKEN_OVER,
                    reason: why.to_string(),
                });
            }
            _ => {}
        }
    }

    /// Ends a session: its transport is closed (or its poll answered 410), its timers and
    /// subscriptions go, and undelivered messages are counted.
    fn end_session(&mut self, key: SessionKey, reason: CloseReason) {
        match self.sessions.detach(key) {
            Transport::PendingPoll { request, http } => {
                self.pending_polls.remove(&request);
                let reply =
                    Reply::error(410, &format!("the session ended ({})", reason_text(reason)));
                self.reply(request, http.then_some("/ws/poll"), reply);
            }
            Transport::WebSocket { conn, .. } => {
                let code = match reason {
                    CloseReason::ClientDisconnect | CloseReason::WebSocketClosed => {
                        close_code::NORMAL
                    }
                    _ => close_code::SESSION_ENDED,
                };
                self.outputs.push_back(Output::WsClose {
                    conn,
                    code,
                    reason: reason_text(reason).to_string(),
                });
            }
            Transport::Detached => {}
        }
        for kind in [
            TimerKind::StaleEviction,
            TimerKind::LongPollExpiry,
            TimerKind::Ping,
        ] {
            self.set_timer(key, kind, None);
        }
        let session = self.sessions.remove(key).expect("ending a live session");
        for channel in &session.subscriptions {
            self.channels.unsubscribe(channel, key);
        }
        let undelivered = session.queue.len();
        self.counters.undelivered += undelivered as u64;
        if matches!(reason, CloseReason::Stale | CloseReason::Cleanup) {
            self.counters.evictions += 1;
        }
        self.outputs
            .push_back(Output::Session(SessionEvent::Closed {
                client_id: session.id,
                reason,
                undelivered,
                unreported_drops: session.queue.unreported_drops(),
            }));
    }

    fn shutdown(&mut self, now: Time) {
        self.shutting_down = true;
        let attached: Vec<SessionKey> = self
            .sessions
            .iter()
            .filter(|(_, s)| !matches!(s.transport, Transport::Detached))
            .map(|(key, _)| key)
            .collect();
        for key in attached {
            match self.sessions.get(key).map(|s| &s.transport) {
                Some(Transport::PendingPoll { request, .. }) => {
                    let request = *request;
                    self.answer_poll(now, key, request, false);
                }
                Some(Transport::WebSocket { conn, .. }) => {
                    let conn = *conn;
                    self.sessions.detach(key);
                    self.set_timer(key, TimerKind::Ping, None);
                    self.outputs.push_back(Output::WsClose {
                        conn,
                        code: close_code::GOING_AWAY,
                        reason: "server shutting down".to_string(),
                    });
                }
                _ => {}
            }
        }
    }

    // ----- delivery ----------------------------------------------------------------------

    /// The one place a message reaches its audience: every event, broadcast and targeted
    /// message goes through here, already encoded, and is shared by all recipients. Returns
    /// the number of recipients.
    fn publish(
        &mut self,
        audience: Audience<'_>,
        frame: Arc<str>,
        exclude: Option<SessionKey>,
    ) -> usize {
        self.counters.published += 1;
        let mut recipients = std::mem::take(&mut self.recipients);
        recipients.clear();
        let type_matches = |session: &Session, client_type: Option<&str>| {
            client_type.is_none_or(|wanted| session.client_type == wanted)
        };
        match audience {
            Audience::Everyone { client_type } => recipients.extend(
                self.sessions
                    .iter()
                    .filter(|(_, s)| type_matches(s, client_type))
                    .map(|(key, _)| key),
            ),
            Audience::Channel {
                channel,
                client_type,
            } => recipients.extend(self.channels.subscribers(channel).filter(|key| {
                client_type.is_none()
                    || self
                        .sessions
                        .get(*key)
                        .is_some_and(|s| type_matches(s, client_type))
            })),
            Audience::Session(key) => recipients.push(key),
        }
        if let Some(excluded) = exclude {
            recipients.retain(|key| *key != excluded);
        }
        for &key in &recipients {
            self.deliver(key, Arc::clone(&frame));
        }
        let count = recipients.len();
        self.recipients = recipients;
        count
    }

    /// Puts one message on its way to one session: straight into an open WebSocket's write
    /// window when it has room and nothing is queued ahead, otherwise into the bounded queue
    /// (dropping the oldest when full) where a poll or the window will pick it up.
    fn deliver(&mut self, key: SessionKey, frame: Arc<str>) {
        let window = self.config.ws_write_window.max(1);
        let Some(session) = self.sessions.get_mut(key) else {
            return;
        };
        match &mut session.transport {
            Transport::WebSocket { conn, in_flight }
                if *in_flight < window && session.queue.is_empty() =>
            {
                *in_flight += 1;
                self.counters.delivered += 1;
                self.outputs
                    .push_back(Output::WsFrame { conn: *conn, frame });
            }
            transport => {
                let overflowed = session.queue.push(frame);
                if overflowed {
                    self.counters.dropped += 1;
                }
                match transport {
                    Transport::PendingPoll { .. } if !session.poll_ready => {
                        session.poll_ready = true;
                        self.ready_polls.push(key);
                    }
                    Transport::WebSocket { conn, .. }
                        if overflowed
                            && self.config.slow_consumer == SlowConsumerPolicy::Disconnect =>
                    {
                        let conn = *conn;
                        self.sessions.detach(key);
                        self.set_timer(key, TimerKind::Ping, None);
                        self.outputs.push_back(Output::WsClose {
                            conn,
                            code: close_code::SLOW_CONSUMER,
                            reason: "client too slow: outbound queue overflowed".to_string(),
                        });
                    }
                    _ => {}
                }
            }
        }
    }
}

fn view(session: &Session) -> SessionView {
    SessionView {
        client_id: session.id,
        client_type: session.client_type.clone(),
        client_name: session.client_name.clone(),
        attached: match session.transport {
            Transport::Detached => None,
            Transport::PendingPoll { .. } => Some(TransportKind::Polling),
            Transport::WebSocket { .. } => Some(TransportKind::Websocket),
        },
        subscriptions: session.subscriptions.iter().cloned().collect(),
        queued: session.queue.len(),
        unreported_drops: session.queue.unreported_drops(),
        connected_at: session.connected_at,
        last_activity: session.last_activity,
    }
}

fn reason_text(reason: CloseReason) -> &'static str {
    match reason {
        CloseReason::Stale => "session expired after inactivity",
        CloseReason::Cleanup => "session removed by cleanup",
        CloseReason::ClientDisconnect => "client disconnected",
        CloseReason::AdminDisconnect => "disconnected by the server operator",
        CloseReason::WebSocketClosed => "WebSocket closed",
        CloseReason::MergedIntoResumed => "merged into a resumed session",
    }
}

fn optional_str<'a>(map: &'a Map<String, Value>, field: &str) -> Result<Option<&'a str>, String> {
    match map.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(text)),
        Some(_) => Err(format!("field `{field}` must be a string")),
    }
}

/// Client types and similar labels: 1 to 64 printable characters.
fn validate_label(field: &str, value: &str) -> Result<(), String> {
    if value.is_empty() || value.len() > 64 || value.chars().any(char::is_control) {
        return Err(format!(
            "field `{field}` must be 1 to 64 printable characters"
        ));
    }
    Ok(())
}

/// The `channels` list of a subscribe or unsubscribe message.
fn channel_list(map: &Map<String, Value>) -> Result<Vec<String>, String> {
    let Some(Value::Array(items)) = map.get("channels") else {
        return Err("field `channels` must be a list of channel names".to_string());
    };
    items
        .iter()
        .map(|item| {
            item.as_str()
                .map(str::to_string)
                .ok_or_else(|| "field `channels` must be a list of channel names".to_string())
        })
        .collect()
}
