//! The protocol state machine: sessions, transports, subscriptions, delivery, timers.
//!
//! Inputs go in through [`Engine::handle_input`] and [`Engine::handle_timeout`], each with the
//! current time; outputs come out of [`Engine::poll_output`]; [`Engine::poll_timeout`] says
//! when the engine next needs [`Engine::handle_timeout`]. Nothing here reads a clock, touches
//! a socket or draws a random number, so the same inputs always give the same outputs.

use crate::access;
use crate::auth::{self, ClientClaims};
use crate::catalogue::FieldError;
use crate::channel::{ChannelIndex, validate_channel_name};
use crate::command::CommandKind;
use crate::config::{Config, SlowConsumerPolicy};
use crate::history::History;
use crate::http_api;
use crate::ids::{ClientId, ConnId, IdSource, RequestId};
use crate::input::{Command, HttpRequest, Initiator, Input, TransportEvent};
use crate::output::{
    CloseReason, Output, Reply, SessionEvent, TimeoutReason, TimerKind, TransportKind,
};
use crate::rate::KeyedBuckets;
use crate::session::{Session, SessionKey, SessionTable, Transport};
use crate::stats::{Counters, Gauges, render_prometheus};
use crate::time::{Time, WallClock};
use crate::timer_queue::TimerQueue;
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

mod broker;
mod cluster_views;
mod delivery;
mod lifecycle;
mod management;
mod messages;
mod polling;
mod publishing;
mod recovery;
mod websocket;

pub(crate) use broker::BrokerStats;
use messages::Via;

/// The protocol version this engine speaks; handshakes must ask for `1.x`.
pub const PROTOCOL_VERSION: &str = "1.0";

/// The handshake budget shared by every request that came without a peer address. Peer
/// addresses are IPs, so this key cannot collide with a real one.
const UNKNOWN_PEER: &str = "unknown";

/// WebSocket close codes the engine uses.
pub mod close_code {
    /// The client asked to disconnect.
    pub const NORMAL: u16 = 1000;
    /// The server is shutting down.
    pub const GOING_AWAY: u16 = 1001;
    /// The client could not keep up and the policy is to disconnect slow consumers.
    pub const SLOW_CONSUMER: u16 = 1008;
    /// The client broke the WebSocket protocol (see [`crate::TransportFailure`]).
    pub const PROTOCOL_ERROR: u16 = 1002;
    /// The client sent a text message that is not UTF-8 (see [`crate::TransportFailure`]).
    pub const INVALID_UTF8: u16 = 1007;
    /// The client sent a message larger than `max_frame_bytes`.
    pub const MESSAGE_TOO_BIG: u16 = 1009;
    /// The server ended the session (operator disconnect, stale, cleanup).
    pub const SESSION_ENDED: u16 = 4000;
    /// Another connection resumed this session.
    pub const SESSION_TAKEN_OVER: u16 = 4001;
    /// The client's token expired.
    pub const TOKEN_EXPIRED: u16 = 4003;
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
    timers: TimerQueue,
    pending_polls: BTreeMap<RequestId, SessionKey>,
    /// Handshakes and upgrades still allowed per remote address.
    handshake_budgets: KeyedBuckets,
    /// Commands not answered yet, by the kind of their typed result.
    commands: BTreeMap<RequestId, CommandKind>,
    /// Allowed browser origins of requests not answered yet; their replies get CORS headers.
    cors_origins: BTreeMap<RequestId, String>,
    ready_polls: Vec<SessionKey>,
    outputs: VecDeque<Output>,
    counters: Counters,
    shutting_down: bool,
    /// Reused recipient list, so a publish does not allocate once warmed up.
    recipients: Vec<SessionKey>,
    /// Channel offsets and retained events.
    history: History,
    /// Publishes waiting for the store, when history is durable.
    durability: publishing::Durability,
    /// Cluster mode's link to the broker and the events waiting for it.
    cluster: broker::Cluster,
    /// WebSockets the engine closed whose end the runtime has not reported yet: the session
    /// they served and the frames handed to them not yet reported written.
    closing: BTreeMap<ConnId, (SessionKey, ClientId, usize)>,
    /// For connections a `register` moved to another session with frames unwritten: the
    /// oldest of those frames, by the earlier sessions they were handed out for (rare, so kept
    /// here rather than in every session).
    inherited: BTreeMap<ConnId, Vec<(ClientId, usize)>>,
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
    pub fn new(
        config: Config,
        mut ids: impl IdSource + 'static,
        now: Time,
        unix_millis: u64,
    ) -> Self {
        let history = History::new(new_epoch(&mut ids), config.history_size, config.history_ttl);
        Engine {
            history,
            durability: publishing::Durability::default(),
            cluster: broker::Cluster::default(),
            config,
            ids: Box::new(ids),
            clock: WallClock::new(now, unix_millis),
            started_at: now,
            now,
            sessions: SessionTable::default(),
            channels: ChannelIndex::default(),
            timers: TimerQueue::default(),
            pending_polls: BTreeMap::new(),
            cors_origins: BTreeMap::new(),
            commands: BTreeMap::new(),
            handshake_budgets: KeyedBuckets::default(),
            ready_polls: Vec::new(),
            outputs: VecDeque::new(),
            counters: Counters::default(),
            shutting_down: false,
            recipients: Vec::new(),
            closing: BTreeMap::new(),
            inherited: BTreeMap::new(),
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
        if self.timers.first_due(now).is_some() {
            self.fire_due_timers(now);
        }
        match input {
            Input::Http { request, http } => self.on_http(now, request, http),
            Input::Command { request, command } => {
                self.commands.insert(request, CommandKind::of(&command));
                self.run_command(now, request, None, command)
            }
            Input::RequestAborted { request } => self.on_request_aborted(now, request),
            Input::WsText { conn, text } => self.on_ws_text(now, conn, &text),
            Input::WsBinary { conn, len } => {
                if let Some(key) = self.sessions.key_of_conn(conn) {
                    self.touch(now, key);
                    let problem = self.spend_message_budget(now, key).err().unwrap_or_else(|| {
                        format!(
                            "binary messages are not supported ({len} bytes received); send JSON text"
                        )
                    });
                    self.send_error(now, key, &problem);
                }
            }
            Input::WsPong { conn } => {
                if let Some(key) = self.sessions.key_of_conn(conn) {
                    self.touch(now, key);
                }
            }
            Input::WsWritten { conn, frames } => match self.sessions.key_of_conn(conn) {
                Some(key) => self.on_ws_written(now, key, frames),
                None => {
                    if let Some((_, _, in_flight)) = self.closing.get_mut(&conn) {
                        *in_flight = in_flight.saturating_sub(frames);
                        self.inherited_written(conn, frames);
                    }
                }
            },
            Input::WsClosed { conn, code } => self.on_ws_closed(now, conn, code),
            Input::Shutdown => self.shutdown(now),
            Input::Transport(event) => self.count_transport_event(event),
            Input::Persisted { batch } => self.on_persisted(now, batch),
            Input::PersistFailed { batch, error } => self.on_persist_failed(now, batch, &error),
            Input::HistoryLoaded { epoch, channels } => {
                self.on_history_loaded(now, epoch, channels)
            }
            Input::BrokerPublished { batch, positions } => {
                self.on_broker_published(now, batch, positions)
            }
            Input::BrokerPublishFailed { batch, error } => {
                self.on_broker_publish_failed(now, batch, error)
            }
            Input::BrokerEvents { events } => {
                for event in events {
                    self.apply_broker_event(now, event);
                }
            }
            Input::BrokerDirect { audience, frame } => self.on_broker_direct(audience, frame),
            Input::HistoryRead {
                channel,
                head,
                events,
            } => self.on_history_read(now, &channel, head, events),
            Input::BrokerLost { error } => self.on_broker_lost(error),
            Input::Gathered {
                request,
                parts,
                error,
            } => self.on_gathered(now, request, parts, error),
            Input::BrokerSynced {
                node,
                node_tag,
                epoch,
                heads,
            } => self.on_broker_synced(now, node, node_tag, epoch, heads),
            Input::ForwardFailed {
                request,
                mut http,
                error: _,
            } => {
                // Answered here, as if the session were unknown: it died with its node.
                http.forwarded = true;
                self.on_http(now, request, *http)
            }
        }
        if !self.ready_polls.is_empty() {
            self.answer_ready_polls(now);
        }
    }

    /// Decides a WebSocket upgrade (`GET /ws` with upgrade headers) for the caller's new
    /// connection `conn`, at once: `Ok` means complete the handshake (the session's
    /// `connection_established` frame and any backlog are waiting in
    /// [`Engine::poll_output`]); `Err` is the HTTP reply to refuse it with (403 for an origin
    /// or host not allowed, 400 without `Host`, 401 for a missing token, 404 for another
    /// path, 409 for a `conn` already open, 429 over the handshake budget, 503 when full or
    /// shutting down), and nothing else happened. Like [`Engine::handle_input`], timers due
    /// at `now` fire first; drain [`Engine::poll_output`] afterwards either way.
    pub fn open_websocket(
        &mut self,
        now: Time,
        conn: ConnId,
        upgrade: &HttpRequest,
    ) -> Result<(), Reply> {
        let now = self.advance(now);
        if self.timers.first_due(now).is_some() {
            self.fire_due_timers(now);
        }
        let decision = self.on_ws_open(now, conn, upgrade);
        if !self.ready_polls.is_empty() {
            self.answer_ready_polls(now);
        }
        decision
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
        self.timers.first().map(|(at, kind, key)| {
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

    /// Verifies a client token when the server requires one: `Ok(None)` when it does not.
    fn authenticate(&self, now: Time, token: Option<&str>) -> Result<Option<ClientClaims>, Reply> {
        let Some(secret) = &self.config.client_token_secret else {
            return Ok(None);
        };
        let Some(token) = token else {
            return Err(Reply::error(401, "a client token is required"));
        };
        auth::verify_client_token(secret.as_bytes(), token, self.clock.unix_millis(now))
            .map(Some)
            .map_err(|problem| Reply::error(401, &problem.to_string()))
    }

    /// Gives a session its token's grants and arms the expiry.
    fn install_claims(&mut self, key: SessionKey, claims: Option<ClientClaims>) {
        let expires = claims
            .as_ref()
            .map(|c| self.clock.time_at(c.expires_at_unix_millis()));
        if let Some(session) = self.sessions.get_mut(key) {
            session.claims = claims;
        }
        self.set_timer(key, TimerKind::TokenExpiry, expires);
    }

    /// Counts one handshake or upgrade against the remote address's budget. Requests whose
    /// peer is unknown fail closed: they all share one budget, [`UNKNOWN_PEER`], so leaving
    /// the address out never lifts the limit.
    fn spend_handshake_budget(&mut self, now: Time, peer: Option<&str>) -> Result<(), Reply> {
        let key = peer.unwrap_or(UNKNOWN_PEER);
        let limit = self.config.handshake_rate;
        if self.handshake_budgets.take(key, limit, now) {
            return Ok(());
        }
        let from = peer.map_or_else(|| "clients of unknown address".to_string(), str::to_string);
        Err(Reply::error(
            429,
            &format!(
                "too many handshakes from {from}: at most {} per second (bursts of {})",
                limit.per_second, limit.burst
            ),
        ))
    }

    /// Counts one client message against the session's budget.
    fn spend_message_budget(&mut self, now: Time, key: SessionKey) -> Result<(), String> {
        let limit = self.config.client_message_rate;
        let session = self.sessions.get_mut(key).expect("live session");
        if session.message_budget.take(limit, now) {
            return Ok(());
        }
        Err(format!(
            "rate limit: at most {} messages per second (bursts of {}); message dropped",
            limit.per_second, limit.burst
        ))
    }

    fn count_transport_event(&mut self, event: TransportEvent) {
        match event {
            TransportEvent::RequestRefused { status } => {
                *self
                    .counters
                    .http_requests
                    .entry(("unparsed", status))
                    .or_default() += 1;
            }
            TransportEvent::IdleConnectionClosed => self.counters.idle_connections_closed += 1,
            TransportEvent::AcceptFailed => self.counters.accept_errors += 1,
            TransportEvent::ConnectionPanicked => self.counters.connection_panics += 1,
        }
    }

    fn advance(&mut self, now: Time) -> Time {
        self.now = self.now.max(now);
        self.now
    }

    fn timestamp(&self, now: Time) -> String {
        self.clock.timestamp(now)
    }

    fn on_http(&mut self, now: Time, request: RequestId, http: HttpRequest) {
        let routed = http_api::route(&http, &self.config);
        let access = access::check_host(&self.config, http.host.as_deref()).and_then(|()| {
            access::check_origin(&self.config, http.origin.as_deref(), http.host.as_deref())
        });
        let origin = match access {
            Ok(origin) => origin,
            Err(refusal) => return self.reply(request, Some(routed.route), refusal),
        };
        if let Some(origin) = origin {
            self.cors_origins.insert(request, origin.to_string());
        }
        if http.method == "OPTIONS" && origin.is_some() {
            return self.reply(request, Some(routed.route), access::preflight());
        }
        if self.shutting_down {
            let reply = Reply::error(503, "the server is shutting down");
            return self.reply(request, Some(routed.route), reply);
        }
        if let Some(admin_token) = &self.config.admin_token
            && routed.admin
            && !auth::is_admin(admin_token, http.authorization.as_deref())
        {
            let refusal = Reply::error(
                401,
                "this endpoint needs the admin token: send Authorization: Bearer <token>",
            );
            return self.reply(request, Some(routed.route), refusal);
        }
        if let Ok(command) = &routed.command
            && let Some(node) = self.owner_elsewhere(command, http.forwarded)
        {
            // The owner adds its own CORS headers (it gets the Origin header too).
            self.cors_origins.remove(&request);
            let http = Box::new(http);
            return self.outputs.push_back(Output::Forward {
                request,
                node,
                http,
            });
        }
        if let Ok(command) = &routed.command
            && self.node_tag().is_some()
            && !http.forwarded
            && let Some(view) = cluster_views::View::of(command)
        {
            self.cluster.gathers.insert(request, (routed.route, view));
            let http = Box::new(http);
            return self.outputs.push_back(Output::Gather { request, http });
        }
        if matches!(routed.command, Ok(Command::Handshake { .. })) {
            if let Some(refusal) = self.refuse_until_synced() {
                return self.reply(request, Some(routed.route), refusal);
            }
            if let Err(refusal) = self.spend_handshake_budget(now, http.peer.as_deref()) {
                return self.reply(request, Some(routed.route), refusal);
            }
        }
        match routed.command {
            Ok(command) => self.run_command(now, request, Some(routed.route), command),
            Err(reply) => self.reply(request, Some(routed.route), reply),
        }
    }

    fn reply(&mut self, request: RequestId, route: Option<&'static str>, mut reply: Reply) {
        if let Some(origin) = self.cors_origins.remove(&request) {
            access::add_cors_headers(&mut reply, &origin);
        }
        if let Some(route) = route {
            *self
                .counters
                .http_requests
                .entry((route, reply.status))
                .or_default() += 1;
        }
        if !self.commands.is_empty()
            && let Some(kind) = self.commands.remove(&request)
        {
            let result = Box::new(kind.result(reply));
            return self
                .outputs
                .push_back(Output::CommandDone { request, result });
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
                token,
                since,
            } => self.handshake(
                now,
                polling::Handshake {
                    client_type,
                    protocol_version,
                    client_id,
                    client_name,
                    token,
                    since,
                },
            ),
            Command::Poll { client_id, wait } => {
                match self.poll(now, request, route.is_some(), client_id, wait) {
                    Some(reply) => reply,
                    None => return,
                }
            }
            Command::Send { client_id, message } => {
                match self.http_send(now, request, route, client_id, message) {
                    Some(reply) => reply,
                    None => return,
                }
            }
            Command::Disconnect {
                client_id,
                initiator,
            } => self.disconnect(client_id, initiator),
            Command::Broadcast {
                message,
                channel,
                client_type,
            } => {
                let (channel, client_type) = (channel.as_deref(), client_type.as_deref());
                match self.broadcast(now, request, route, message, channel, client_type) {
                    Some(reply) => reply,
                    None => return,
                }
            }
            Command::SendTo { client_id, message } => self.send_to(now, client_id, message),
            Command::Publish { events } => match self.publish_events(now, request, route, events) {
                Some(reply) => reply,
                None => return,
            },
            Command::History {
                channel,
                since,
                limit,
            } => self.read_history(now, &channel, since, limit),
            Command::Cleanup { idle_for } => self.cleanup(now, idle_for),
            Command::ListClients => self.list_clients(now),
            Command::Status => Reply::json(200, self.status_json(now, true).to_string()),
            Command::Stats => Reply::json(200, self.status_json(now, false).to_string()),
            Command::Health => self.health(now),
            Command::Metrics => self.metrics(now),
            Command::Catalogue => {
                let body = json!({"success": true, "events": self.config.catalogue.events()});
                Reply::json(200, body.to_string())
            }
            Command::Asset { asset } => asset.reply(),
        };
        self.reply(request, route, reply);
    }
}

/// A fresh epoch: eight random bytes (from the id source), as 16 hex digits.
fn new_epoch(ids: &mut impl IdSource) -> String {
    ids.next_id_bytes()[..8]
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
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
