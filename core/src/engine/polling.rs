//! The HTTP polling fallback: handshake and resume, polls and long polls, and messages
//! sent over `/ws/send`.

use super::lifecycle;
use super::messages::validate_label;
use super::*;
use crate::history::Since;

/// A handshake's fields (those of [`Command::Handshake`]).
pub(super) struct Handshake {
    pub(super) client_type: String,
    pub(super) protocol_version: String,
    pub(super) client_id: Option<String>,
    pub(super) client_name: Option<String>,
    pub(super) token: Option<String>,
    pub(super) since: Since,
}

impl Engine {
    pub(super) fn handshake(&mut self, now: Time, handshake: Handshake) -> Reply {
        let Handshake {
            client_type,
            protocol_version,
            client_id,
            client_name,
            token,
            since,
        } = handshake;
        let (client_id, token, since) = (client_id.as_deref(), token.as_deref(), &since);
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
        let claims = match self.authenticate(now, token) {
            Ok(claims) => claims,
            Err(refusal) => return refusal,
        };
        if let Some(allowed) = claims.as_ref().and_then(|c| c.client_type.as_deref())
            && allowed != client_type
        {
            return Reply::error(
                403,
                &format!("the token allows client_type {allowed:?}, not {client_type:?}"),
            );
        }
        let resumable = client_id
            .and_then(|text| text.parse::<ClientId>().ok())
            .and_then(|id| self.sessions.key_of(&id));
        if let (Some(key), Some(new)) = (resumable, &claims)
            && let Some(old) = self.sessions.get(key).and_then(|s| s.claims.as_ref())
            && old.sub != new.sub
        {
            return Reply::error(403, "that session belongs to another token subject");
        }
        let (key, resumed) = match resumable {
            Some(key) => {
                let reason = "session resumed by a new handshake";
                self.release_transport(now, key, true, close_code::SESSION_TAKEN_OVER, reason);
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
                let welcome = self.connection_established(now, key, None);
                self.deliver(key, welcome, None);
                (key, false)
            }
        };
        self.touch(now, key);
        if self.config.client_token_secret.is_some() {
            self.install_claims(key, claims);
        }
        let recovery = match resumed {
            true => self.plan_recovery(now, key, since),
            false => Default::default(),
        };
        let session = self.sessions.get_mut(key).expect("live session");
        if client_name.is_some() {
            session.client_name = client_name;
        }
        let mut body = json!({
            "success": true,
            "client_id": session.id,
            "protocol_version": PROTOCOL_VERSION,
            "server_time": self.clock.timestamp(now),
            "resumed": resumed,
        });
        if let (false, Some(requested)) = (resumed, client_id) {
            body["reason"] = Value::from(lifecycle::resume_refusal(requested));
        }
        if resumed && !since.is_empty() {
            let subscriptions = session.subscriptions.clone();
            body["recovered"] = json!(recovery.recovered);
            body["positions"] = self.positions_json(key, subscriptions);
        }
        self.start_replays(now, key, recovery.replays);
        let session = self.sessions.get(key).expect("live session");
        body["queued"] = Value::from(session.queue.messages());
        Reply::json(200, body.to_string())
    }

    pub(super) fn server_full(&self) -> Reply {
        Reply::error(
            503,
            &format!(
                "the server holds its limit of {} clients; try again later",
                self.config.max_clients
            ),
        )
    }

    pub(super) fn unknown_client(client_id: ClientId) -> Reply {
        Reply::error(
            404,
            &format!(
                "unknown client_id {client_id}: the session ended or never existed; handshake again"
            ),
        )
    }

    /// Returns the reply, or `None` when the poll waits for messages.
    pub(super) fn poll(
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
    pub(super) fn answer_poll(
        &mut self,
        now: Time,
        key: SessionKey,
        request: RequestId,
        superseded: bool,
    ) {
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
    pub(super) fn take_poll_reply(&mut self, now: Time, key: SessionKey) -> Reply {
        let timestamp = self.timestamp(now);
        let session = self.sessions.get_mut(key).expect("polling session");
        let mut body = String::with_capacity(64 + session.queue.len() * 160);
        body.push_str("{\"success\":true,\"messages\":[");
        let mut count = 0u64;
        while let Some(message) = recovery::next_message(
            &mut session.queue,
            &mut self.history,
            &mut self.counters,
            now,
        ) {
            if count > 0 {
                body.push(',');
            }
            body.push_str(&message);
            count += 1;
        }
        // Read after the queue: a replay that found events trimmed counts them as dropped.
        let dropped = session.queue.take_unreported_drops();
        body.push_str("],\"dropped\":");
        body.push_str(&dropped.to_string());
        body.push_str(",\"timestamp\":\"");
        body.push_str(&timestamp);
        body.push_str("\"}");
        self.counters.delivered += count;
        Reply::json(200, body)
    }

    pub(super) fn answer_ready_polls(&mut self, now: Time) {
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

    /// `/ws/send`: the reply to the client's message, or `None` when it comes later (an
    /// event is answered once delivered).
    pub(super) fn http_send(
        &mut self,
        now: Time,
        request: RequestId,
        route: Option<&'static str>,
        client_id: ClientId,
        message: Value,
    ) -> Option<Reply> {
        let Some(key) = self.sessions.key_of(&client_id) else {
            return Some(Self::unknown_client(client_id));
        };
        self.touch(now, key);
        if let Err(problem) = self.spend_message_budget(now, key) {
            return Some(Reply::error(429, &problem));
        }
        match self.client_message(now, key, message, Via::Http, Some((request, route))) {
            Ok(answer) => {
                let reply = answer.reply.map(|response| {
                    Reply::json(200, format!("{{\"success\":true,\"response\":{response}}}"))
                });
                self.start_replays(now, key, answer.replays);
                reply
            }
            Err(refusal) => Some(Reply::error(refusal.status(), refusal.text())),
        }
    }

    pub(super) fn on_request_aborted(&mut self, now: Time, request: RequestId) {
        self.cors_origins.remove(&request);
        self.commands.remove(&request);
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
}
