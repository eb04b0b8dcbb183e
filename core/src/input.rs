//! Everything that can happen to the engine, as values: HTTP requests, typed commands,
//! WebSocket events and shutdown. Inputs serialise, so sessions can be recorded, replayed and
//! fuzzed.

use crate::broker::{BrokerError, BrokerEvent, ChannelHead, DirectAudience, NodePart};
use crate::history::Position;
use crate::ids::{ClientId, ConnId, RequestId};
use crate::storage::{BatchId, StoreError, StoredChannel};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::Duration;

/// One input to [`crate::Engine::handle_input`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "input", rename_all = "snake_case")]
pub enum Input {
    /// An HTTP request to one of the API paths. Answered by exactly one
    /// [`crate::Output::Reply`] with the same `request`, possibly later (long poll), unless
    /// the caller reports [`Input::RequestAborted`] first.
    Http {
        /// The caller's id for this request.
        request: RequestId,
        /// The request.
        http: HttpRequest,
    },
    /// A decoded command, for trusted in-process callers that do not speak HTTP. Answered by
    /// exactly one [`crate::Output::CommandDone`] with a typed result or error, possibly later
    /// (a poll with `wait`). It runs **without** the Origin, Host, admin-token and
    /// per-address checks of [`Input::Http`] (there is no request to check them on): never
    /// build one from untrusted network input.
    Command {
        /// The caller's id for this request.
        request: RequestId,
        /// What to do.
        command: Command,
    },
    /// The client of a pending request went away; the engine will not answer it.
    RequestAborted {
        /// The request.
        request: RequestId,
    },
    /// A text message arrived on a WebSocket.
    WsText {
        /// The connection.
        conn: ConnId,
        /// The message.
        text: String,
    },
    /// A binary message arrived on a WebSocket; the protocol is JSON text only.
    WsBinary {
        /// The connection.
        conn: ConnId,
        /// Its size in bytes.
        len: usize,
    },
    /// A pong (or any control frame) arrived: the client is alive.
    WsPong {
        /// The connection.
        conn: ConnId,
    },
    /// The caller wrote `frames` of the frames the engine handed it for this connection,
    /// which frees as many places in the connection's write window.
    WsWritten {
        /// The connection.
        conn: ConnId,
        /// How many frames were written.
        frames: usize,
    },
    /// A WebSocket closed, by either side or by failure. Report every written frame with
    /// [`Input::WsWritten`] first: frames handed out and never reported written are counted
    /// as lost (dropped, and reported to the client if its session lives on).
    WsClosed {
        /// The connection.
        conn: ConnId,
        /// The close code the client sent, if it sent a close frame. 1000 (normal closure)
        /// ends the session; anything else keeps it resumable until it goes stale.
        code: Option<u16>,
    },
    /// The server is stopping: close every WebSocket with 1001, answer every pending poll,
    /// refuse new requests with 503.
    Shutdown,
    /// Something the runtime's transport layer did on its own, counted in the metrics.
    Transport(TransportEvent),
    /// The store holds the batch durably: its events are delivered and acknowledged now.
    Persisted {
        /// The batch of a [`crate::Output::Persist`].
        batch: BatchId,
    },
    /// The store could not hold the batch: it and every batch after it are refused (their
    /// publishers get 507 or 503), and their offsets are given again.
    PersistFailed {
        /// The batch of a [`crate::Output::Persist`].
        batch: BatchId,
        /// Why.
        error: StoreError,
    },
    /// What a store kept, handed back at start-up before any other input: every channel's
    /// epoch, latest offset and retained events, and the epoch new channels get.
    HistoryLoaded {
        /// The epoch new channels get; `None` keeps the engine's own.
        epoch: Option<String>,
        /// The stored channels.
        channels: Vec<StoredChannel>,
    },
    /// Cluster mode: the broker ran a [`crate::BrokerCommand::Publish`] (its events have
    /// these positions, in order) or a [`crate::BrokerCommand::Direct`] (no positions). Its
    /// publisher is acknowledged now.
    BrokerPublished {
        /// The batch of the command.
        batch: BatchId,
        /// Per event, the position the broker gave it.
        positions: Vec<Position>,
    },
    /// Cluster mode: the broker did not run a publish; its publisher gets 503.
    BrokerPublishFailed {
        /// The batch of the command.
        batch: BatchId,
        /// Why.
        error: BrokerError,
    },
    /// Cluster mode: channel events every node receives from the broker, in arrival order.
    BrokerEvents {
        /// The events.
        events: Vec<BrokerEvent>,
    },
    /// Cluster mode: a message outside channels that some node published
    /// ([`crate::BrokerCommand::Direct`]).
    BrokerDirect {
        /// Who gets it.
        audience: DirectAudience,
        /// The frame.
        frame: std::sync::Arc<str>,
    },
    /// Cluster mode: the answer to a [`crate::BrokerCommand::ReadHistory`].
    HistoryRead {
        /// The channel.
        channel: std::sync::Arc<str>,
        /// Where the channel stands in the broker now.
        head: ChannelHead,
        /// Its retained events after the offset asked for, oldest first (gaps where the
        /// broker no longer has them).
        events: Vec<BrokerEvent>,
    },
    /// Cluster mode: the request of an [`crate::Output::Forward`] could not reach the node
    /// holding the session; the engine answers it here, as if the session were unknown (a
    /// handshake that names it opens a new session).
    ForwardFailed {
        /// The request.
        request: RequestId,
        /// The request as the output handed it over.
        http: Box<HttpRequest>,
        /// Why, for the log.
        error: String,
    },
    /// Cluster mode: the other nodes' answers to an [`crate::Output::Gather`].
    Gathered {
        /// The request.
        request: RequestId,
        /// One part per other live node.
        parts: Vec<NodePart>,
        /// Why the list of live nodes could not be read, if it could not (the view is then
        /// this node's only).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    /// Cluster mode: the connection to the broker is lost. Publishes are refused until
    /// [`Input::BrokerSynced`].
    BrokerLost {
        /// Why, for health and the refusals.
        error: String,
    },
    /// Cluster mode: the broker is (again) connected and subscribed; these are the channels it
    /// knows and where they stand.
    BrokerSynced {
        /// This node's name in the cluster (in the origin of its events).
        node: String,
        /// This node's tag, unique in the cluster: the first two bytes of the client ids it
        /// makes, by which other nodes forward requests naming its sessions.
        #[serde(default)]
        node_tag: u16,
        /// The epoch the broker gives channels without events.
        epoch: String,
        /// Every channel the broker knows.
        heads: Vec<ChannelHead>,
    },
}

/// What a runtime's transport layer did without the engine, for the engine's metrics (so that
/// every runtime's refusals and faults show up the same way).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum TransportEvent {
    /// A request answered by the transport before it reached the engine (a malformed or
    /// oversized head, a head that did not arrive in time): counted in
    /// `livebridge_http_requests_total` under the route `unparsed`.
    RequestRefused {
        /// The status it was answered with.
        status: u16,
    },
    /// A connection sent nothing (or not a whole request head) in time and was closed.
    IdleConnectionClosed,
    /// Accepting a connection failed (out of file descriptors, say).
    AcceptFailed,
    /// A connection's task panicked: a bug, contained to that connection.
    ConnectionPanicked,
}

/// The parts of an HTTP request the protocol looks at.
///
/// `host` and `peer` fail closed when left out: a request without `host` is refused with 400
/// (the Host check against DNS rebinding cannot be skipped by omission), and requests without
/// `peer` all share one handshake budget (as if they came from a single unknown address).
/// Build requests with [`HttpRequest::new`] and the `with_*` methods:
///
/// ```
/// use livebridge_core::HttpRequest;
///
/// let request = HttpRequest::new("POST", "/ws/handshake", r#"{"client_type":"gui"}"#)
///     .with_host("localhost:5100")
///     .with_peer("127.0.0.1");
/// assert_eq!(request.host.as_deref(), Some("localhost:5100"));
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpRequest {
    /// `GET`, `POST`...
    pub method: String,
    /// Path and query, e.g. `/ws/poll?client_id=…&wait=20`.
    pub target: String,
    /// The `Host` header. Required: `None` is refused with 400.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// The `Origin` header (sent by browsers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
    /// The body, or why it was not read.
    #[serde(default)]
    pub body: RequestBody,
    /// The `Authorization` header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization: Option<String>,
    /// The client's address (IP), for per-address limits. `None` counts against one budget
    /// shared by every request without an address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer: Option<String>,
    /// Cluster mode: another node of the cluster forwarded this request here (the runtime
    /// checked the cluster's key), so it is answered here and never forwarded again.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub forwarded: bool,
}

impl HttpRequest {
    /// A request with a complete body and no headers. Give it its `Host` with
    /// [`HttpRequest::with_host`] (without one the engine refuses it with 400) and the
    /// client's address with [`HttpRequest::with_peer`].
    pub fn new(method: &str, target: &str, body: impl Into<Vec<u8>>) -> Self {
        HttpRequest {
            method: method.to_string(),
            target: target.to_string(),
            host: None,
            origin: None,
            body: RequestBody::Complete(body.into()),
            authorization: None,
            peer: None,
            forwarded: false,
        }
    }

    /// The request with this `Host` header (e.g. `localhost:5100`).
    #[must_use]
    pub fn with_host(mut self, host: impl Into<String>) -> Self {
        self.host = Some(host.into());
        self
    }

    /// The request from this client address (an IP, e.g. `127.0.0.1`).
    #[must_use]
    pub fn with_peer(mut self, peer: impl Into<String>) -> Self {
        self.peer = Some(peer.into());
        self
    }

    /// The request with this `Origin` header (browsers send one).
    #[must_use]
    pub fn with_origin(mut self, origin: impl Into<String>) -> Self {
        self.origin = Some(origin.into());
        self
    }

    /// The request with this `Authorization` header (e.g. `Bearer <token>`).
    #[must_use]
    pub fn with_authorization(mut self, authorization: impl Into<String>) -> Self {
        self.authorization = Some(authorization.into());
        self
    }
}

/// A request body as the transport received it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestBody {
    /// The whole body (empty when the request has none).
    Complete(#[serde(with = "body_text")] Vec<u8>),
    /// `Content-Length` announced more than `max_body_bytes`; the body was not read.
    TooLarge {
        /// The announced length.
        declared: u64,
    },
    /// The body was chunked (no `Content-Length`); the API needs a length.
    LengthRequired,
}

impl Default for RequestBody {
    fn default() -> Self {
        RequestBody::Complete(Vec::new())
    }
}

/// Bodies are JSON text in practice; keep them readable in recordings, and exact otherwise.
mod body_text {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Serialize, Deserialize)]
    #[serde(untagged)]
    enum Repr {
        Text(String),
        Bytes(Vec<u8>),
    }

    pub fn serialize<S: Serializer>(body: &[u8], s: S) -> Result<S::Ok, S::Error> {
        match std::str::from_utf8(body) {
            Ok(text) => Repr::Text(text.to_string()).serialize(s),
            Err(_) => Repr::Bytes(body.to_vec()).serialize(s),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        Ok(match Repr::deserialize(d)? {
            Repr::Text(text) => text.into_bytes(),
            Repr::Bytes(bytes) => bytes,
        })
    }
}

/// Who asked for a session to end.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Initiator {
    /// The client itself (`/ws/disconnect`).
    Client,
    /// An operator (`/websocket/disconnect/<id>`).
    Admin,
}

/// What a request asks for, once decoded. [`crate::http_api`] turns HTTP requests into these.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum Command {
    /// Open a session, or resume the one named by `client_id`.
    Handshake {
        /// `lightroom`, `gui`, `web`, `mobile`...
        client_type: String,
        /// The client's protocol version (`1.x`).
        protocol_version: String,
        /// A previous session to resume.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        client_id: Option<String>,
        /// Display name.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        client_name: Option<String>,
        /// A client token, when the server requires one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        token: Option<String>,
        /// On a resume, the positions the client saw, per channel: what it missed after them
        /// is replayed (see [`crate::Position`]).
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        since: BTreeMap<String, Position>,
    },
    /// Take the queued messages; with `wait`, hold the request until one arrives.
    Poll {
        /// The session.
        client_id: ClientId,
        /// Longest time to hold the request open (capped by `long_poll_max`).
        #[serde(
            default,
            skip_serializing_if = "Option::is_none",
            with = "crate::time::opt_millis"
        )]
        wait: Option<Duration>,
    },
    /// A message from a polling client: ping, register, subscribe, unsubscribe or an event.
    Send {
        /// The sender.
        client_id: ClientId,
        /// The message object.
        message: Value,
    },
    /// End a session at once.
    Disconnect {
        /// The session.
        client_id: ClientId,
        /// Who asked.
        initiator: Initiator,
    },
    /// Send a message to every client, or to a channel's subscribers, or to one client type.
    Broadcast {
        /// The message object (with a `type`).
        message: Value,
        /// Only subscribers of this channel.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        channel: Option<String>,
        /// Only clients of this type.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        client_type: Option<String>,
    },
    /// Send a message to one client.
    SendTo {
        /// The recipient.
        client_id: ClientId,
        /// The message object (with a `type`).
        message: Value,
    },
    /// Publish catalogue events, each on its channel; all are validated before any is sent.
    Publish {
        /// Event objects (`{type, ...fields}`).
        events: Vec<Value>,
    },
    /// Evict every session idle for at least `idle_for`.
    Cleanup {
        /// Idle time threshold.
        #[serde(with = "crate::time::millis")]
        idle_for: Duration,
    },
    /// List the sessions.
    ListClients,
    /// Server status (`/ws/status`).
    Status,
    /// Statistics (`/websocket/stats`).
    Stats,
    /// Health check.
    Health,
    /// Prometheus metrics.
    Metrics,
    /// The event catalogue as JSON (`GET /api/catalogue`).
    Catalogue,
    /// A channel's retained events after an offset (`GET /api/history/<channel>`).
    History {
        /// The channel.
        channel: String,
        /// Events after this offset (0: from the oldest retained).
        #[serde(default)]
        since: u64,
        /// At most this many.
        limit: usize,
    },
    /// A file compiled into the hub: the admin page or the browser client.
    Asset {
        /// Which one.
        asset: crate::assets::Asset,
    },
}
