//! Management commands: disconnect, cleanup, client listing, status, stats, health,
//! metrics.

use super::*;

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

    pub(super) fn status_json(&self, now: Time, with_config: bool) -> Value {
        let mut by_type: BTreeMap<&str, usize> = BTreeMap::new();
        let mut by_transport: BTreeMap<&str, usize> = BTreeMap::new();
        for (_, session) in self.sessions.iter() {
            *by_type.entry(&*session.client_type).or_default() += 1;
            *by_transport.entry(session.kind.as_str()).or_default() += 1;
        }
        let channels: BTreeMap<&str, usize> = self.channels.counts().collect();
        let history: BTreeMap<&str, Value> = self
            .history
            .positions()
            .map(|(name, offset, epoch, retained)| {
                (
                    name,
                    json!({"offset": offset, "epoch": epoch, "retained": retained}),
                )
            })
            .collect();
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
            "history": history,
            "publishes_awaiting_store": self.durability.pending(),
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
                "history_size": self.config.history_size,
                "history_ttl_seconds": self.config.history_ttl.as_secs_f64(),
                "recovery_max": self.config.recovery_max,
                "durable": self.config.durable,
            });
        }
        status
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
