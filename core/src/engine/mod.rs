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
use crate::command::{Answered, CommandError, Outcome};
use crate::config::{Config, SlowConsumerPolicy};
use crate::history::History;
use crate::http_api;
use crate::ids::{ClientId, ConnId, IdSource, RequestId};
use crate::input::{Command, HttpRequest, Initiator, Input, TransportEvent};
use crate::output::{
    CloseReason, Output, Reply, SessionEvent, TimeoutReason, TimerKind, TransportKind,
};
use crate::session::{Session, SessionKey, SessionTable, Transport};
use crate::stats::{Counters, Gauges, render_prometheus};
use crate::time::{Time, WallClock};
use crate::timer_queue::TimerQueue;
use serde_json::{Map, Value, json};
use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

pub(crate) use management::StatusReport;

mod broker;
mod cluster_views;
mod delivery;
mod gate;
mod lifecycle;
mod management;
mod messages;
mod polling;
mod polls;
mod publishing;
mod recovery;
mod requests;
mod unwritten;
mod websocket;

pub(crate) use broker::BrokerStats;
use gate::{Gate, Verdict};
use messages::Via;
use polls::Polls;
use requests::Requests;
use unwritten::{Lost, UnwrittenFrames};

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
    /// Long polls held open, and those ready to be answered.
    polls: Polls,
    /// Host, Origin, admin token and handshake budgets.
    gate: Gate,
    /// Requests not answered yet, and the form their answers take.
    requests: Requests,
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
    /// Frames of sockets the engine let go of, or that changed sessions, not yet written.
    unwritten: UnwrittenFrames,
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
            polls: Polls::default(),
            requests: Requests::default(),
            gate: Gate::default(),
            outputs: VecDeque::new(),
            counters: Counters::default(),
            shutting_down: false,
            recipients: Vec::new(),
            unwritten: UnwrittenFrames::default(),
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
                self.requests.command(request);
                self.run_command(now, request, None, command)
            }
            Input::RequestAborted { request } => self.on_request_aborted(now, request),
            Input::WsText { conn, text } => self.on_ws_text(now, conn, &text),
            Input::WsBinary { conn, len } => self.on_ws_binary(now, conn, len),
            Input::WsPong { conn } => {
                if let Some(key) = self.sessions.key_of_conn(conn) {
                    self.touch(now, key);
                }
            }
            Input::WsWritten { conn, frames } => self.on_frames_written(now, conn, frames),
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
        if self.polls.any_ready() {
            self.answer_ready_polls(now);
        }
    }

    fn on_ws_binary(&mut self, now: Time, conn: ConnId, len: usize) {
        if let Some(key) = self.sessions.key_of_conn(conn) {
            self.touch(now, key);
            let problem = self
                .spend_message_budget(now, key)
                .err()
                .unwrap_or_else(|| {
                    format!(
                        "binary messages are not supported ({len} bytes received); send JSON text"
                    )
                });
            self.send_error(now, key, &problem);
        }
    }

    /// The caller wrote `frames` of the frames the engine handed it for `conn`: the same as
    /// [`Input::WsWritten`], for runtimes to call directly. Acknowledgements are as frequent
    /// as deliveries, and going through [`Input`] costs more than the acknowledgement itself
    /// (decoding and dropping the larger enum): about 10 % of the engine's cost per delivery.
    pub fn frames_written(&mut self, now: Time, conn: ConnId, frames: usize) {
        let now = self.advance(now);
        if self.timers.first_due(now).is_some() {
            self.fire_due_timers(now);
        }
        self.on_frames_written(now, conn, frames);
        if self.polls.any_ready() {
            self.answer_ready_polls(now);
        }
    }

    fn on_frames_written(&mut self, now: Time, conn: ConnId, frames: usize) {
        match self.sessions.key_of_conn(conn) {
            Some(key) => self.on_ws_written(now, key, frames),
            None => {
                self.unwritten.written_after_let_go(conn, frames);
            }
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
        if self.polls.any_ready() {
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
    fn authenticate(
        &self,
        now: Time,
        token: Option<&str>,
    ) -> Result<Option<ClientClaims>, CommandError> {
        let Some(secret) = &self.config.client_token_secret else {
            return Ok(None);
        };
        let Some(token) = token else {
            return Err(CommandError::Unauthorized(
                "a client token is required".into(),
            ));
        };
        auth::verify_client_token(secret.as_bytes(), token, self.clock.unix_millis(now))
            .map(Some)
            .map_err(|problem| CommandError::Unauthorized(problem.to_string()))
    }

    /// Gives a session its token's grants and arms the expiry.
    fn install_claims(&mut self, key: SessionKey, claims: Option<ClientClaims>) {
        let expires = claims
            .as_ref()
            .map(|c| self.clock.time_at(c.expires_at_unix_millis()));
        if let Some(session) = self.sessions.get_mut(key) {
            session.claims = claims.map(Box::new);
        }
        self.set_timer(key, TimerKind::TokenExpiry, expires);
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
        let route = Some(routed.route);
        let (origin, verdict) =
            Gate::check_request(&self.config, &http, &routed, self.shutting_down);
        if let Some(origin) = origin {
            self.requests.http_from_origin(request, origin);
        }
        let command = match (verdict, routed.command) {
            (Verdict::Refuse(refusal), _) | (Verdict::Pass, Err(refusal)) => {
                return self.http_reply(request, route, refusal);
            }
            (Verdict::Preflight, _) => {
                return self.http_reply(request, route, access::preflight());
            }
            (Verdict::Pass, Ok(command)) => command,
        };
        if let Some(node) = self.owner_elsewhere(&command, http.forwarded) {
            // The owner adds its own CORS headers (it gets the Origin header too).
            self.requests.forget(request);
            let http = Box::new(http);
            return self.outputs.push_back(Output::Forward {
                request,
                node,
                http,
            });
        }
        if self.node_tag().is_some()
            && !http.forwarded
            && let Some(view) = cluster_views::View::of(&command)
        {
            self.cluster.gathers.insert(request, (routed.route, view));
            let http = Box::new(http);
            return self.outputs.push_back(Output::Gather { request, http });
        }
        if matches!(command, Command::Handshake { .. }) {
            if let Some(refusal) = self.refuse_until_synced() {
                return self.http_reply(request, route, refusal.to_reply());
            }
            let peer = http.peer.as_deref();
            if let Err(refusal) = self.gate.spend_handshake(&self.config, now, peer) {
                return self.http_reply(request, route, refusal);
            }
        }
        self.run_command(now, request, route, command)
    }

    /// Answers a command: typed for an in-process caller, as an HTTP reply otherwise.
    fn answer(&mut self, request: RequestId, route: Option<&'static str>, answered: Answered) {
        let (output, status) = self.requests.answer(request, answered);
        self.send_answer(route, output, status);
    }

    /// Sends the reply to a request that came over HTTP, never to a command (see
    /// [`Engine::answer`]).
    fn http_reply(&mut self, request: RequestId, route: Option<&'static str>, reply: Reply) {
        let (output, status) = self.requests.reply(request, reply);
        self.send_answer(route, output, status);
    }

    fn send_answer(&mut self, route: Option<&'static str>, output: Output, status: Option<u16>) {
        if let (Some(route), Some(status)) = (route, status) {
            *self
                .counters
                .http_requests
                .entry((route, status))
                .or_default() += 1;
        }
        self.outputs.push_back(output);
    }

    fn run_command(
        &mut self,
        now: Time,
        request: RequestId,
        route: Option<&'static str>,
        command: Command,
    ) {
        if self.shutting_down {
            return self.answer(request, route, Err(shutting_down()));
        }
        let answered = match command {
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
                    Some(answered) => answered,
                    None => return,
                }
            }
            Command::Send { client_id, message } => {
                match self.http_send(now, request, route, client_id, message) {
                    Some(answered) => answered,
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
                    Some(answered) => answered,
                    None => return,
                }
            }
            Command::SendTo { client_id, message } => self.send_to(now, client_id, message),
            Command::Publish { events } => match self.publish_events(now, request, route, events) {
                Some(answered) => answered,
                None => return,
            },
            Command::History {
                channel,
                since,
                limit,
            } => self.read_history(now, &channel, since, limit),
            Command::Cleanup { idle_for } => self.cleanup(now, idle_for),
            Command::ListClients => self.list_clients(now),
            Command::Status => Ok(Outcome::Status(Box::new(self.status_report(now, true)))),
            Command::Stats => Ok(Outcome::Status(Box::new(self.status_report(now, false)))),
            Command::Health => Ok(self.health(now)),
            Command::Metrics => Ok(self.metrics(now)),
            Command::Catalogue => Ok(Outcome::Report {
                report: json!({"success": true, "events": self.config.catalogue.events()}),
            }),
            Command::Asset { asset } => Ok(Outcome::Asset(asset)),
        };
        self.answer(request, route, answered);
    }
}

/// The refusal of everything while the server stops.
fn shutting_down() -> CommandError {
    CommandError::Unavailable("the server is shutting down".into())
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
        client_type: session.client_type.to_string(),
        client_name: session.client_name.clone(),
        attached: match session.transport {
            Transport::Detached => None,
            Transport::PendingPoll { .. } => Some(TransportKind::Polling),
            Transport::WebSocket { .. } => Some(TransportKind::Websocket),
        },
        subscriptions: session.subscriptions.iter().map(str::to_string).collect(),
        queued: session.queue.len(),
        unreported_drops: session.queue.unreported_drops(),
        connected_at: session.connected_at,
        last_activity: session.last_activity,
    }
}
