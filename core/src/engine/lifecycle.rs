//! Session life cycle: opening, activity and timers, ending, shutdown.

use super::*;

/// Why a session named by a client could not be resumed: the id is malformed, or its session
/// ended (evicted, disconnected, or lost with a server restart).
pub(super) fn resume_refusal(requested: &str) -> String {
    if requested.parse::<ClientId>().is_err() {
        format!(
            "client_id {requested:?} is not a client id this server issued; this is a new session"
        )
    } else {
        format!(
            "no session {requested}: it ended (evicted, disconnected, or lost when the server \
             restarted); this is a new session, subscribe again"
        )
    }
}

pub(super) fn reason_text(reason: CloseReason) -> &'static str {
    match reason {
        CloseReason::Stale => "session expired after inactivity",
        CloseReason::Cleanup => "session removed by cleanup",
        CloseReason::ClientDisconnect => "client disconnected",
        CloseReason::AdminDisconnect => "disconnected by the server operator",
        CloseReason::WebSocketClosed => "WebSocket closed",
        CloseReason::MergedIntoResumed => "merged into a resumed session",
        CloseReason::TokenExpired => "client token expired",
    }
}

impl Engine {
    pub(super) fn open_session(
        &mut self,
        now: Time,
        client_type: Cow<'static, str>,
        kind: TransportKind,
    ) -> SessionKey {
        let id = loop {
            let bytes = self.ids.next_id_bytes();
            let id = match self.node_tag() {
                Some(tag) => ClientId::from_random_bytes_on_node(bytes, tag),
                None => ClientId::from_random_bytes(bytes),
            };
            if self.sessions.key_of(&id).is_none() {
                break id;
            }
        };
        let session = Session::new(
            id,
            client_type.clone(),
            kind,
            self.config.queue_limit,
            self.config.client_message_rate,
            now,
        );
        let key = self.sessions.insert(session);
        self.counters.sessions_opened += 1;
        self.outputs
            .push_back(Output::Session(SessionEvent::Opened {
                client_id: id,
                client_type: client_type.into_owned(),
                transport: kind,
            }));
        key
    }

    /// The welcome of a new session. `refused_resume` is the client id the client asked to
    /// resume when that was not possible: the welcome then says `"resumed": false` and why, so
    /// the client knows its old session, queue and subscriptions are gone.
    pub(super) fn connection_established(
        &self,
        now: Time,
        key: SessionKey,
        refused_resume: Option<&str>,
    ) -> Arc<str> {
        let session = self.sessions.get(key).expect("live session");
        let timestamp = self.timestamp(now);
        let mut welcome = json!({
            "type": "connection_established",
            "client_id": session.id,
            "protocol_version": PROTOCOL_VERSION,
            "server_time": timestamp,
        });
        if let Some(requested) = refused_resume {
            welcome["resumed"] = Value::Bool(false);
            welcome["reason"] = Value::from(resume_refusal(requested));
        }
        welcome["timestamp"] = Value::from(timestamp);
        welcome.to_string().into()
    }

    /// Records client activity: restarts the stale countdown and, on a WebSocket, the ping
    /// countdown.
    pub(super) fn touch(&mut self, now: Time, key: SessionKey) {
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

    pub(super) fn set_timer(&mut self, key: SessionKey, kind: TimerKind, at: Option<Time>) {
        let Some(session) = self.sessions.get_mut(key) else {
            return;
        };
        let slot = match kind {
            TimerKind::StaleEviction => &mut session.timers.stale_at,
            TimerKind::LongPollExpiry => &mut session.timers.poll_expires_at,
            TimerKind::Ping => &mut session.timers.ping_at,
            TimerKind::TokenExpiry => &mut session.timers.token_expires_at,
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

    pub(super) fn fire_due_timers(&mut self, now: Time) {
        while let Some((_, kind, key)) = self.timers.first_due(now) {
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
                TimerKind::TokenExpiry => self.end_session(key, CloseReason::TokenExpired),
            }
        }
    }

    /// Detaches the session's transport, keeping the session: a pending poll is answered
    /// (empty when `superseded`, so the queue waits for the new transport), a WebSocket is
    /// closed with `code` and `reason`.
    pub(super) fn release_transport(
        &mut self,
        now: Time,
        key: SessionKey,
        superseded: bool,
        code: u16,
        reason: &str,
    ) {
        match self.sessions.get(key).map(|s| &s.transport) {
            Some(Transport::PendingPoll { request, .. }) => {
                let request = *request;
                self.answer_poll(now, key, request, superseded);
            }
            Some(Transport::WebSocket { conn, .. }) => {
                let conn = *conn;
                self.close_websocket(key, conn, code, reason, false);
            }
            _ => {}
        }
    }

    /// Closes a session's WebSocket and leaves the session detached. With
    /// `abandon_unwritten`, the runtime drops the frames it has not written yet so the close
    /// frame goes out first.
    pub(super) fn close_websocket(
        &mut self,
        key: SessionKey,
        conn: ConnId,
        code: u16,
        reason: &str,
        abandon_unwritten: bool,
    ) {
        if let Transport::WebSocket { in_flight, .. } = self.sessions.detach(key) {
            self.await_websocket_end(key, conn, in_flight);
        }
        self.set_timer(key, TimerKind::Ping, None);
        self.outputs.push_back(Output::WsClose {
            conn,
            code,
            reason: reason.to_string(),
            abandon_unwritten,
        });
    }

    /// Remembers a WebSocket the engine let go of until the runtime reports its end, with the
    /// frames handed to it that were not reported written yet: those it never writes are lost.
    fn await_websocket_end(&mut self, key: SessionKey, conn: ConnId, in_flight: usize) {
        let owner = self.sessions.get(key).map(|session| (key, session.id));
        self.unwritten.socket_let_go(conn, owner, in_flight);
    }

    /// The runtime reported the end of a WebSocket the engine had closed.
    pub(super) fn on_closed_websocket_ended(&mut self, now: Time, conn: ConnId) {
        if let Some((key, client_id, lost)) = self.unwritten.let_go_socket_ended(conn) {
            self.charge_lost_frames(now, key, client_id, lost);
        }
    }

    /// A WebSocket ended with frames never written: each session that lost some is told (or,
    /// when it has ended, they are logged and counted undelivered).
    pub(super) fn charge_lost_frames(
        &mut self,
        now: Time,
        key: SessionKey,
        client_id: ClientId,
        lost: Lost,
    ) {
        let live = self.sessions.get(key).is_some().then_some(key);
        let mut losers = vec![(client_id, live, lost.own, 0)];
        for (owner, frames) in lost.earlier {
            losers.push((owner, self.sessions.key_of(&owner), frames, 0));
        }
        // A `messages_dropped` notice is not a message: losing one loses the report of the
        // drops it carried, which are owed again.
        for (owner, drops) in lost.notices {
            match losers.iter_mut().find(|(loser, ..)| *loser == owner) {
                Some((_, _, frames, owed)) => {
                    *frames = frames.saturating_sub(1);
                    *owed += drops;
                }
                None => losers.push((owner, self.sessions.key_of(&owner), 0, drops)),
            }
        }
        for (owner, live, frames, drops) in losers {
            match live {
                Some(key) => self.count_lost_frames(now, key, frames, drops),
                None if frames > 0 || drops > 0 => {
                    self.counters.undelivered += frames as u64;
                    self.outputs
                        .push_back(Output::Session(SessionEvent::UnwrittenAfterEnd {
                            client_id: owner,
                            frames,
                            unreported_drops: drops,
                        }));
                }
                None => {}
            }
        }
    }

    /// Frames handed to a WebSocket that ended before writing them are lost: counted as
    /// dropped and, while the session lives, reported to its client (`messages_dropped` or
    /// `dropped`) like any other drop; counted as undelivered when the session has ended.
    /// `unreported` drops (counted when they happened) were in `messages_dropped` notices
    /// among the lost frames: they are reported again.
    pub(super) fn count_lost_frames(
        &mut self,
        now: Time,
        key: SessionKey,
        frames: usize,
        unreported: u64,
    ) {
        if frames == 0 && unreported == 0 {
            return;
        }
        let Some(session) = self.sessions.get_mut(key) else {
            return;
        };
        session.queue.add_unreported_drops(frames as u64);
        session.queue.report_again(unreported);
        self.counters.dropped += frames as u64;
        if session.websocket().is_some() {
            self.flush_websocket(now, key);
        }
    }

    /// Ends a session: its transport is closed (or its poll answered 410), its timers and
    /// subscriptions go, and undelivered messages are counted.
    pub(super) fn end_session(&mut self, key: SessionKey, reason: CloseReason) {
        match self.sessions.detach(key) {
            Transport::PendingPoll { request, http } => {
                self.polls.stop_waiting(request);
                let ended = format!("the session ended ({})", reason_text(reason));
                self.answer(
                    request,
                    http.then_some("/ws/poll"),
                    Err(CommandError::Gone(ended)),
                );
            }
            Transport::WebSocket { conn, in_flight } => {
                self.await_websocket_end(key, conn, in_flight);
                let code = match reason {
                    CloseReason::ClientDisconnect | CloseReason::WebSocketClosed => {
                        close_code::NORMAL
                    }
                    CloseReason::TokenExpired => close_code::TOKEN_EXPIRED,
                    _ => close_code::SESSION_ENDED,
                };
                self.outputs.push_back(Output::WsClose {
                    conn,
                    code,
                    reason: reason_text(reason).to_string(),
                    abandon_unwritten: false,
                });
            }
            Transport::Detached => {}
        }
        for kind in [
            TimerKind::StaleEviction,
            TimerKind::LongPollExpiry,
            TimerKind::Ping,
            TimerKind::TokenExpiry,
        ] {
            self.set_timer(key, kind, None);
        }
        let session = self.sessions.remove(key).expect("ending a live session");
        for channel in session.subscriptions.iter() {
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

    pub(super) fn shutdown(&mut self, now: Time) {
        self.shutting_down = true;
        let attached: Vec<SessionKey> = self
            .sessions
            .iter()
            .filter(|(_, s)| !matches!(s.transport, Transport::Detached))
            .map(|(key, _)| key)
            .collect();
        for key in attached {
            let reason = "server shutting down";
            self.release_transport(now, key, false, close_code::GOING_AWAY, reason);
        }
    }
}
