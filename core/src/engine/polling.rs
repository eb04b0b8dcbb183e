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
    pub(super) fn handshake(&mut self, now: Time, handshake: Handshake) -> Answered {
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
            return Err(CommandError::InvalidRequest(format!(
                "unsupported protocol_version {protocol_version:?}; this server speaks {PROTOCOL_VERSION}"
            )));
        }
        validate_label("client_type", &client_type).map_err(CommandError::InvalidRequest)?;
        let claims = self.authenticate(now, token)?;
        if let Some(allowed) = claims.as_ref().and_then(|c| c.client_type.as_deref())
            && allowed != client_type
        {
            return Err(CommandError::Forbidden(format!(
                "the token allows client_type {allowed:?}, not {client_type:?}"
            )));
        }
        let resumable = client_id
            .and_then(|text| text.parse::<ClientId>().ok())
            .and_then(|id| self.sessions.key_of(&id));
        if let Some(key) = resumable {
            let owner = self.sessions.get(key).and_then(|s| s.claims.as_deref());
            auth::check_same_subject(owner, claims.as_ref())?;
        }
        let (key, resumed) = match resumable {
            Some(key) => {
                let reason = "session resumed by a new handshake";
                self.release_transport(now, key, true, close_code::SESSION_TAKEN_OVER, reason);
                let session = self.sessions.get_mut(key).expect("resumable session");
                session.client_type = client_type.into();
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
                    return Err(self.server_full());
                }
                let key = self.open_session(now, client_type.into(), TransportKind::Polling);
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
            let subscriptions: Vec<String> =
                session.subscriptions.iter().map(str::to_string).collect();
            body["recovered"] = json!(recovery.recovered);
            body["positions"] = self.positions_json(key, subscriptions);
        }
        self.start_replays(now, key, recovery.replays);
        let session = self.sessions.get(key).expect("live session");
        let (client_id, queued) = (session.id, session.queue.messages());
        body["queued"] = Value::from(queued);
        Ok(Outcome::Handshake {
            client_id,
            resumed,
            queued: usize::try_from(queued).unwrap_or(usize::MAX),
            details: body,
        })
    }

    pub(super) fn server_full(&self) -> CommandError {
        CommandError::Unavailable(format!(
            "the server holds its limit of {} clients; try again later",
            self.config.max_clients
        ))
    }

    pub(super) fn unknown_client(client_id: ClientId) -> CommandError {
        CommandError::UnknownClient(format!(
            "unknown client_id {client_id}: the session ended or never existed; handshake again"
        ))
    }

    /// Returns the reply, or `None` when the poll waits for messages.
    pub(super) fn poll(
        &mut self,
        now: Time,
        request: RequestId,
        http: bool,
        client_id: ClientId,
        wait: Option<Duration>,
    ) -> Option<Answered> {
        let Some(key) = self.sessions.key_of(&client_id) else {
            return Some(Err(Self::unknown_client(client_id)));
        };
        let session = self.sessions.get(key).expect("indexed session");
        if session.websocket().is_some() {
            return Some(Err(CommandError::Conflict(format!(
                "client {client_id} is connected over WebSocket and cannot poll as well"
            ))));
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
            return Some(Ok(self.take_poll_reply(now, key)));
        }
        session.transport = Transport::PendingPoll { request, http };
        session.last_activity = now;
        self.polls.wait(request, key);
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
        self.polls.stop_waiting(request);
        self.set_timer(key, TimerKind::LongPollExpiry, None);
        self.touch(now, key);
        let outcome = if superseded {
            Outcome::Poll {
                frames: Vec::new(),
                dropped: 0,
                timestamp: self.timestamp(now),
                superseded: true,
            }
        } else {
            self.take_poll_reply(now, key)
        };
        self.answer(request, http.then_some("/ws/poll"), Ok(outcome));
    }

    /// Drains the queue into a poll's answer. Messages are already JSON; they stay text.
    pub(super) fn take_poll_reply(&mut self, now: Time, key: SessionKey) -> Outcome {
        let timestamp = self.timestamp(now);
        let session = self.sessions.get_mut(key).expect("polling session");
        let mut frames = Vec::with_capacity(session.queue.len());
        while let Some(message) = recovery::next_message(
            &mut session.queue,
            &mut self.history,
            &mut self.counters,
            now,
        ) {
            frames.push(message);
        }
        // Read after the queue: a replay that found events trimmed counts them as dropped.
        let dropped = session.queue.take_unreported_drops();
        self.counters.delivered += frames.len() as u64;
        Outcome::Poll {
            frames,
            dropped,
            timestamp,
            superseded: false,
        }
    }

    pub(super) fn answer_ready_polls(&mut self, now: Time) {
        if !self.polls.any_ready() {
            return;
        }
        for key in self.polls.take_ready() {
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
    ) -> Option<Answered> {
        let Some(key) = self.sessions.key_of(&client_id) else {
            return Some(Err(Self::unknown_client(client_id)));
        };
        self.touch(now, key);
        if let Err(problem) = self.spend_message_budget(now, key) {
            return Some(Err(CommandError::RateLimited(problem)));
        }
        match self.client_message(now, key, message, Via::Http, Some((request, route))) {
            Ok(answer) => {
                let answered = answer.reply.map(|response| Ok(Outcome::Sent { response }));
                self.start_replays(now, key, answer.replays);
                answered
            }
            Err(refusal) => Some(Err(refusal.into())),
        }
    }

    pub(super) fn on_request_aborted(&mut self, now: Time, request: RequestId) {
        self.requests.forget(request);
        let Some(key) = self.polls.stop_waiting(request) else {
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
