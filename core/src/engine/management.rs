//! Management commands: disconnect, cleanup, client listing, status, stats, health,
//! metrics.

use super::*;
use serde::Serialize;

impl Engine {
    pub(super) fn disconnect(&mut self, client_id: ClientId, initiator: Initiator) -> Answered {
        let Some(key) = self.sessions.key_of(&client_id) else {
            return Err(Self::unknown_client(client_id));
        };
        let reason = match initiator {
            Initiator::Client => CloseReason::ClientDisconnect,
            Initiator::Admin => CloseReason::AdminDisconnect,
        };
        self.end_session(key, reason);
        Ok(Outcome::Disconnected {
            details: json!({"success": true, "client_id": client_id, "disconnected": true}),
        })
    }

    pub(super) fn cleanup(&mut self, now: Time, idle_for: Duration) -> Answered {
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
        Ok(Outcome::Report {
            report: json!({"success": true, "removed": idle.len(), "remaining": self.sessions.len()}),
        })
    }

    pub(super) fn list_clients(&self, now: Time) -> Answered {
        Ok(Outcome::Report {
            report: self.clients_report(now),
        })
    }

    /// Every session, oldest first, as `GET /ws/clients` lists them.
    pub(super) fn clients_report(&self, now: Time) -> Value {
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
                    "queued": s.queue.messages(),
                    "dropped": s.queue.dropped_total(),
                })
            })
            .collect();
        json!({"success": true, "count": clients.len(), "clients": clients})
    }

    /// The status report as a JSON value (commands, and a cluster node's part of the stats).
    pub(super) fn status_json(&self, now: Time, with_config: bool) -> Value {
        serde_json::to_value(self.status_report(now, with_config))
            .expect("a status report is plain data")
    }

    /// The status report (`/ws/status`, and without `config` `/api/websocket/stats`).
    pub(super) fn status_report(&self, now: Time, with_config: bool) -> StatusReport {
        let mut clients_by_type: BTreeMap<String, usize> = BTreeMap::new();
        let mut clients_by_transport: BTreeMap<&'static str, usize> = BTreeMap::new();
        for (_, session) in self.sessions.iter() {
            match clients_by_type.get_mut(&*session.client_type) {
                Some(count) => *count += 1,
                None => {
                    clients_by_type.insert(session.client_type.to_string(), 1);
                }
            }
            *clients_by_transport
                .entry(session.kind.as_str())
                .or_default() += 1;
        }
        StatusReport {
            success: true,
            enabled: true,
            protocol_version: PROTOCOL_VERSION,
            server_time: self.timestamp(now),
            uptime_seconds: now.saturating_since(self.started_at).as_secs_f64(),
            total_clients: self.sessions.len(),
            clients_by_type,
            clients_by_transport,
            channels: self
                .channels
                .counts()
                .map(|(name, count)| (name.to_string(), count))
                .collect(),
            history: self
                .history
                .positions()
                .map(|(name, offset, epoch, retained)| {
                    let position = ChannelPosition {
                        offset,
                        epoch: epoch.to_string(),
                        retained,
                    };
                    (name.to_string(), position)
                })
                .collect(),
            publishes_awaiting_store: self.durability.pending(),
            messages_published: self.counters.published,
            messages_delivered: self.counters.delivered,
            messages_dropped: self.counters.dropped,
            messages_undelivered: self.counters.undelivered,
            evictions: self.counters.evictions,
            config: with_config.then_some(StatusConfig {
                queue_limit: self.config.queue_limit,
                stale_after_seconds: self.config.stale_after.as_secs_f64(),
                long_poll_max_seconds: self.config.long_poll_max.as_secs_f64(),
                ping_interval_seconds: self.config.ping_interval.as_secs_f64(),
                max_clients: self.config.max_clients,
                history_size: self.config.history_size,
                history_ttl_seconds: self.config.history_ttl.as_secs_f64(),
                recovery_max: self.config.recovery_max,
                durable: self.config.durable,
            }),
        }
    }

    pub(super) fn health(&self, now: Time) -> Outcome {
        let mut report = json!({
            "success": true,
            "status": "healthy",
            "service": "livebridge",
            "version": env!("CARGO_PKG_VERSION"),
            "protocol_version": PROTOCOL_VERSION,
            "uptime_seconds": now.saturating_since(self.started_at).as_secs_f64(),
            "clients": self.sessions.len(),
        });
        let mut status = 200;
        if let Some((code, word, broker)) = self.broker_health() {
            status = code;
            report["status"] = Value::from(word);
            report["success"] = Value::from(code == 200);
            report["broker"] = broker;
        }
        Outcome::Health { status, report }
    }

    pub(super) fn metrics(&self, now: Time) -> Outcome {
        let mut sessions: BTreeMap<(&'static str, String), usize> = BTreeMap::new();
        let mut queued = 0;
        for (_, session) in self.sessions.iter() {
            *sessions
                .entry((session.kind.as_str(), session.client_type.to_string()))
                .or_default() += 1;
            queued += session.queue.messages() as usize;
        }
        let gauges = Gauges {
            sessions,
            history_events: self
                .history
                .positions()
                .map(|(_, _, _, retained)| retained)
                .sum(),
            publishes_awaiting_store: self.durability.pending(),
            queued_messages: queued,
            channels: self.channels.counts().count(),
            uptime_seconds: now.saturating_since(self.started_at).as_secs_f64(),
            broker: self.config.clustered.then(|| self.cluster.stats.clone()),
        };
        Outcome::Metrics {
            text: render_prometheus(&self.counters, &gauges),
        }
    }
}

/// The status report, serialised straight to the reply's text: it is what monitoring polls,
/// and building a `serde_json::Value` first (a map insert per field) was most of its cost.
/// Field order is the documented one.
#[derive(Debug, Serialize)]
pub(crate) struct StatusReport {
    success: bool,
    enabled: bool,
    protocol_version: &'static str,
    server_time: String,
    uptime_seconds: f64,
    total_clients: usize,
    clients_by_type: BTreeMap<String, usize>,
    clients_by_transport: BTreeMap<&'static str, usize>,
    channels: BTreeMap<String, usize>,
    history: BTreeMap<String, ChannelPosition>,
    publishes_awaiting_store: usize,
    messages_published: u64,
    messages_delivered: u64,
    messages_dropped: u64,
    messages_undelivered: u64,
    evictions: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    config: Option<StatusConfig>,
}

#[derive(Debug, Serialize)]
struct ChannelPosition {
    offset: u64,
    epoch: String,
    retained: usize,
}

#[derive(Debug, Serialize)]
struct StatusConfig {
    queue_limit: usize,
    stale_after_seconds: f64,
    long_poll_max_seconds: f64,
    ping_interval_seconds: f64,
    max_clients: usize,
    history_size: usize,
    history_ttl_seconds: f64,
    recovery_max: usize,
    durable: bool,
}
