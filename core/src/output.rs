//! Everything the engine asks its caller to do, as values: HTTP replies, WebSocket frames,
//! pings and closes, and log-worthy session events. Also the reasons of timer deadlines.

use crate::ids::{ClientId, ConnId, RequestId};
use crate::storage::PersistBatch;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::sync::Arc;

/// One output, taken from [`crate::Engine::poll_output`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "output", rename_all = "snake_case")]
pub enum Output {
    /// Answer an HTTP request.
    Reply {
        /// The request being answered.
        request: RequestId,
        /// Status, headers and body.
        reply: Reply,
    },
    /// The typed answer to an [`crate::Input::Command`].
    CommandDone {
        /// The command's request id.
        request: RequestId,
        /// What it produced, or why it was refused. (Boxed: outputs are moved through the
        /// queue and dropped at the size of the largest variant, once per delivery.)
        result: Box<Result<crate::command::CommandResult, crate::command::CommandError>>,
    },
    /// Send a text frame. The same frame text is shared by every recipient of a publish.
    /// Report it with [`crate::Input::WsWritten`] once written.
    WsFrame {
        /// The connection.
        conn: ConnId,
        /// JSON text.
        frame: Arc<str>,
    },
    /// Send a WebSocket ping; the client's pong comes back as [`crate::Input::WsPong`].
    WsPing {
        /// The connection.
        conn: ConnId,
    },
    /// Send a close frame with this code and reason, then drop the connection. Write what
    /// can still be written of the frames handed out before it (within the close timeout)
    /// and report them with [`crate::Input::WsWritten`], then report
    /// [`crate::Input::WsClosed`]: frames never reported written are counted as lost.
    WsClose {
        /// The connection.
        conn: ConnId,
        /// RFC 6455 close code.
        code: u16,
        /// Human-readable reason.
        reason: String,
        /// Drop the frames not yet handed to the socket instead of writing them, so the close
        /// frame goes out as soon as the socket has room (a slow consumer: those frames are
        /// counted and reported to the client as dropped).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        abandon_unwritten: bool,
    },
    /// Something worth a log line happened to a session.
    Session(SessionEvent),
    /// Store these channel events durably, then report [`crate::Input::Persisted`] (or
    /// [`crate::Input::PersistFailed`]); they are delivered and acknowledged only then.
    /// Batches must be stored in the order they come out. A store that fails a batch must
    /// fail the later batches of the same `generation` without writing them, so that no later
    /// offset is stored after one that is missing; a later generation is a new attempt.
    /// (Boxed: it is rare, and every other output is moved and dropped at the size of the
    /// largest.)
    Persist(Box<PersistBatch>),
    /// Cluster mode: ask the broker to publish, or to read a channel's history (boxed as
    /// `Persist` is).
    Broker(Box<crate::broker::BrokerCommand>),
    /// Cluster mode: the request names a session another node holds; send it there (with the
    /// cluster's key, so that node answers it itself) and relay its reply as this request's.
    /// When that node cannot be reached, report [`crate::Input::ForwardFailed`] with the
    /// request: the engine answers it then.
    Forward {
        /// The request.
        request: RequestId,
        /// The tag of the node holding the session.
        node: u16,
        /// The request, to send on.
        http: Box<crate::input::HttpRequest>,
    },
    /// Cluster mode: the request asks for a cluster-wide view (`/ws/clients`,
    /// `/websocket/stats`); send it to every other live node (with the cluster's key, so each
    /// answers for itself) and report their answers with [`crate::Input::Gathered`]; the
    /// engine then merges them with its own.
    Gather {
        /// The request.
        request: RequestId,
        /// The request, to send on.
        http: Box<crate::input::HttpRequest>,
    },
}

/// An HTTP reply.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reply {
    /// HTTP status code.
    pub status: u16,
    /// `Content-Type` of the body.
    pub content_type: ContentType,
    /// Extra headers (`Allow` on 405).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: String,
}

impl Reply {
    /// A JSON reply.
    pub fn json(status: u16, body: String) -> Self {
        Reply {
            status,
            content_type: ContentType::Json,
            headers: Vec::new(),
            body,
        }
    }

    /// `{"success": false, "error": message}` with this status.
    pub fn error(status: u16, message: &str) -> Self {
        let body = serde_json::json!({"success": false, "error": message}).to_string();
        Reply::json(status, body)
    }
}

/// The media type of a reply body.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ContentType {
    /// `application/json`
    Json,
    /// `text/plain; version=0.0.4` (Prometheus exposition format)
    Prometheus,
    /// `text/html` (the admin page)
    Html,
    /// `text/javascript` (the browser client and the admin page's script)
    JavaScript,
    /// `text/css` (the admin page's styles)
    Css,
}

impl ContentType {
    /// The header value.
    pub fn as_str(self) -> &'static str {
        match self {
            ContentType::Json => "application/json",
            ContentType::Prometheus => "text/plain; version=0.0.4; charset=utf-8",
            ContentType::Html => "text/html; charset=utf-8",
            ContentType::JavaScript => "text/javascript; charset=utf-8",
            ContentType::Css => "text/css; charset=utf-8",
        }
    }
}

/// A session event for the log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum SessionEvent {
    /// A new session.
    Opened {
        /// The session.
        client_id: ClientId,
        /// Its client type.
        client_type: String,
        /// `polling` or `websocket`.
        transport: TransportKind,
    },
    /// An existing session was resumed.
    Resumed {
        /// The session.
        client_id: ClientId,
        /// The transport it resumed on.
        transport: TransportKind,
    },
    /// A WebSocket left its session; the session stays resumable.
    Detached {
        /// The session.
        client_id: ClientId,
    },
    /// A session ended.
    Closed {
        /// The session.
        client_id: ClientId,
        /// Why.
        reason: CloseReason,
        /// Queued messages that were never delivered.
        undelivered: usize,
        /// Messages dropped from the full queue that the client was never told about.
        unreported_drops: u64,
    },
    /// The WebSocket of a session that had already ended stopped before writing its last
    /// frames: they never reached the client (also counted as undelivered).
    UnwrittenAfterEnd {
        /// The session.
        client_id: ClientId,
        /// Frames handed to the socket and never written, `messages_dropped` notices aside.
        frames: usize,
        /// Messages dropped that the client was never told about after all: the
        /// `messages_dropped` notices that reported them were among the unwritten frames.
        #[serde(default)]
        unreported_drops: u64,
    },
}

/// Why a session ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CloseReason {
    /// No activity for `stale_after`.
    Stale,
    /// Removed by a cleanup request.
    Cleanup,
    /// The client disconnected.
    ClientDisconnect,
    /// An operator disconnected it.
    AdminDisconnect,
    /// Its WebSocket closed normally (code 1000).
    WebSocketClosed,
    /// A fresh WebSocket session was merged into a resumed one.
    MergedIntoResumed,
    /// Its client token expired.
    TokenExpired,
}

/// The transport a session is using.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TransportKind {
    /// HTTP polling fallback.
    Polling,
    /// Native WebSocket.
    Websocket,
}

impl TransportKind {
    /// The name used in JSON and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            TransportKind::Polling => "polling",
            TransportKind::Websocket => "websocket",
        }
    }
}

/// Why the engine wants [`crate::Engine::handle_timeout`] to be called.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimerKind {
    /// A long poll reaches its wait and is answered empty.
    LongPollExpiry,
    /// A quiet WebSocket is pinged.
    Ping,
    /// A session reaches `stale_after` without activity and is evicted.
    StaleEviction,
    /// A session's client token expires and the session ends.
    TokenExpiry,
}

/// A deadline's reason: which timer, of which session.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimeoutReason {
    /// The timer.
    pub kind: TimerKind,
    /// The session it belongs to.
    pub client_id: ClientId,
}

impl fmt::Display for TimeoutReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            TimerKind::LongPollExpiry => "long-poll expiry",
            TimerKind::Ping => "ping",
            TimerKind::StaleEviction => "stale eviction",
            TimerKind::TokenExpiry => "token expiry",
        };
        write!(f, "{kind} of {}", self.client_id)
    }
}
