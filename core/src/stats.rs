//! Counters the engine keeps, and their rendering as Prometheus text.

use std::collections::BTreeMap;
use std::fmt::Write;

/// Totals since start-up.
#[derive(Debug, Default, Clone)]
pub(crate) struct Counters {
    /// Publish operations (one per event or message sent, whatever its recipient count).
    pub(crate) published: u64,
    /// Messages handed to a client: in a poll reply or as a WebSocket frame.
    pub(crate) delivered: u64,
    /// Messages dropped from a full queue.
    pub(crate) dropped: u64,
    /// Messages still queued when their session ended.
    pub(crate) undelivered: u64,
    /// Sessions evicted as stale or by cleanup.
    pub(crate) evictions: u64,
    pub(crate) sessions_opened: u64,
    pub(crate) sessions_resumed: u64,
    /// HTTP requests answered, by route and status (WebSocket upgrades under `/ws`).
    pub(crate) http_requests: BTreeMap<(&'static str, u16), u64>,
    /// Connections closed for sending nothing in time.
    pub(crate) idle_connections_closed: u64,
    /// Failed accepts.
    pub(crate) accept_errors: u64,
    /// Connection tasks that panicked.
    pub(crate) connection_panics: u64,
    /// Channels recovered (everything missed replayed), and refused (`recovered: false`).
    pub(crate) recoveries: u64,
    pub(crate) recoveries_failed: u64,
    /// Events sent again from history by recoveries.
    pub(crate) replayed: u64,
}

/// Gauges read off the session table when metrics are rendered.
pub(crate) struct Gauges {
    /// (transport, client type) → sessions.
    pub(crate) sessions: BTreeMap<(&'static str, String), usize>,
    pub(crate) queued_messages: usize,
    /// Events retained in channel history.
    pub(crate) history_events: usize,
    /// Publishes waiting for the store.
    pub(crate) publishes_awaiting_store: usize,
    pub(crate) channels: usize,
    pub(crate) uptime_seconds: f64,
    /// Cluster mode only.
    pub(crate) broker: Option<crate::engine::BrokerStats>,
}

pub(crate) fn render_prometheus(counters: &Counters, gauges: &Gauges) -> String {
    let mut out = String::with_capacity(2048);
    let _ = writeln!(
        out,
        "# HELP livebridge_sessions Client sessions by transport and client type.\n\
         # TYPE livebridge_sessions gauge"
    );
    for ((transport, client_type), count) in &gauges.sessions {
        let _ = writeln!(
            out,
            "livebridge_sessions{{transport=\"{transport}\",client_type=\"{}\"}} {count}",
            escape_label(client_type)
        );
    }
    let scalar = |out: &mut String, name: &str, kind: &str, help: &str, value: String| {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
        );
    };
    scalar(
        &mut out,
        "livebridge_queued_messages",
        "gauge",
        "Messages waiting in session queues.",
        gauges.queued_messages.to_string(),
    );
    scalar(
        &mut out,
        "livebridge_history_events",
        "gauge",
        "Events retained in channel history (for recovery and /api/history).",
        gauges.history_events.to_string(),
    );
    scalar(
        &mut out,
        "livebridge_publishes_awaiting_store",
        "gauge",
        "Publishes of channel events waiting for the store to hold them (durable history).",
        gauges.publishes_awaiting_store.to_string(),
    );
    scalar(
        &mut out,
        "livebridge_channels",
        "gauge",
        "Channels with at least one subscriber.",
        gauges.channels.to_string(),
    );
    scalar(
        &mut out,
        "livebridge_uptime_seconds",
        "gauge",
        "Seconds since the engine started.",
        format!("{:.3}", gauges.uptime_seconds),
    );
    for (name, help, value) in [
        (
            "livebridge_messages_published_total",
            "Messages and events published (once per publish, whatever the recipient count).",
            counters.published,
        ),
        (
            "livebridge_messages_delivered_total",
            "Messages handed to clients, in poll replies or WebSocket frames.",
            counters.delivered,
        ),
        (
            "livebridge_messages_dropped_total",
            "Messages dropped from full session queues (clients are told the count).",
            counters.dropped,
        ),
        (
            "livebridge_messages_undelivered_total",
            "Messages still queued when their session ended.",
            counters.undelivered,
        ),
        (
            "livebridge_evictions_total",
            "Sessions evicted as stale or by cleanup.",
            counters.evictions,
        ),
        (
            "livebridge_sessions_opened_total",
            "Sessions created.",
            counters.sessions_opened,
        ),
        (
            "livebridge_sessions_resumed_total",
            "Sessions resumed by client_id.",
            counters.sessions_resumed,
        ),
        (
            "livebridge_recoveries_total",
            "Channels a client recovered: everything it missed was replayed.",
            counters.recoveries,
        ),
        (
            "livebridge_recoveries_failed_total",
            "Channels a client could not recover (recovered: false: history too short, epoch changed).",
            counters.recoveries_failed,
        ),
        (
            "livebridge_messages_replayed_total",
            "Events sent again from history by recoveries.",
            counters.replayed,
        ),
        (
            "livebridge_idle_connections_closed_total",
            "Connections closed for sending no request (or not a whole head) in time.",
            counters.idle_connections_closed,
        ),
        (
            "livebridge_accept_errors_total",
            "Connections that could not be accepted (out of file descriptors...).",
            counters.accept_errors,
        ),
        (
            "livebridge_connection_panics_total",
            "Connection tasks that panicked (a bug, contained to one connection).",
            counters.connection_panics,
        ),
    ] {
        scalar(&mut out, name, "counter", help, value.to_string());
    }
    let _ = writeln!(
        out,
        "# HELP livebridge_http_requests_total HTTP requests answered, by route and status.\n\
         # TYPE livebridge_http_requests_total counter"
    );
    for ((route, status), count) in &counters.http_requests {
        let _ = writeln!(
            out,
            "livebridge_http_requests_total{{route=\"{route}\",status=\"{status}\"}} {count}"
        );
    }
    if let Some(broker) = &gauges.broker {
        scalar(
            &mut out,
            "livebridge_broker_up",
            "gauge",
            "1 while the broker (Redis) is connected and subscribed, else 0 (cluster mode).",
            u8::from(broker.up).to_string(),
        );
        for (name, help, value) in [
            (
                "livebridge_broker_disconnects_total",
                "Times the connection to the broker (Redis) was lost.",
                broker.disconnects,
            ),
            (
                "livebridge_broker_publishes_refused_total",
                "Publishes refused with 503 because the broker (Redis) was unreachable or failed.",
                broker.publishes_refused,
            ),
            (
                "livebridge_broker_duplicates_total",
                "Channel events received from the broker again and dropped (already applied).",
                broker.duplicates,
            ),
            (
                "livebridge_broker_gaps_filled_total",
                "Gaps in a channel's events filled by reading the broker's history.",
                broker.gaps_filled,
            ),
            (
                "livebridge_broker_gaps_unfilled_total",
                "Gaps the broker's history no longer covered, reported to subscribers as dropped.",
                broker.gaps_unfilled,
            ),
            (
                "livebridge_broker_epoch_resets_total",
                "Channels whose sequence started over in the broker (history lost there).",
                broker.epoch_resets,
            ),
        ] {
            scalar(&mut out, name, "counter", help, value.to_string());
        }
    }
    out
}

fn escape_label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
