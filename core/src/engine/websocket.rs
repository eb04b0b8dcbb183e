//! The WebSocket transport: open, frames, the write window, resume by `register`, close.

use super::delivery;
use super::messages::{optional_str, validate_label};
use super::*;
use crate::failure::TransportFailure;
use crate::history::{Since, parse_since};

impl Engine {
    pub(super) fn on_ws_open(
        &mut self,
        now: Time,
        conn: ConnId,
        upgrade: &HttpRequest,
    ) -> Result<(), Reply> {
        let (path, _) = http_api::split_target(&upgrade.target);
        // `/ws?client_id=…` resumes that session directly: no fresh session is made, so a
        // client can come back even when the hub holds its limit of clients.
        let requested = query_param(upgrade, "client_id");
        let resume = requested
            .as_deref()
            .and_then(|id| id.parse::<ClientId>().ok())
            .and_then(|id| self.sessions.key_of(&id));
        // `&since=` (JSON) with the resume: what the client saw per channel.
        let since = match query_param(upgrade, "since") {
            None => Ok(Since::new()),
            Some(text) => serde_json::from_str::<Value>(&text)
                .map_err(|e| format!("`since` is not valid JSON: {e}"))
                .and_then(|value| parse_since(Some(&value), None)),
        };
        let refusal =
            if let Err(refusal) = Gate::check_upgrade(&self.config, upgrade, self.shutting_down) {
                Some(refusal)
            } else if let Some(refusal) = self.refuse_until_synced() {
                Some(refusal.to_reply())
            } else if path != http_api::WEBSOCKET_PATH {
                Some(Reply::error(
                    404,
                    &format!("no WebSocket endpoint at {path}; use /ws"),
                ))
            } else if self.sessions.key_of_conn(conn).is_some() {
                Some(Reply::error(409, &format!("{conn} is already open")))
            } else if let Err(problem) = &since {
                Some(Reply::error(400, problem))
            } else if resume.is_none() && self.sessions.len() >= self.config.max_clients {
                Some(self.server_full().to_reply())
            } else {
                self.gate
                    .spend_handshake(&self.config, now, upgrade.peer.as_deref())
                    .err()
            };
        let claims = match refusal {
            Some(reply) => Err(reply),
            None => {
                // A browser cannot set headers on a WebSocket upgrade: the token may come in
                // the query instead.
                let token = query_param(upgrade, "token").or_else(|| {
                    let authorization = upgrade.authorization.as_deref()?;
                    auth::bearer(authorization).map(str::to_string)
                });
                self.authenticate(now, token.as_deref())
                    .and_then(|claims| {
                        let owner = resume.and_then(|target| self.sessions.get(target));
                        let owner = owner.and_then(|s| s.claims.as_deref());
                        auth::check_same_subject(owner, claims.as_ref()).map(|()| claims)
                    })
                    .map_err(|refusal| refusal.to_reply())
            }
        };
        let claims = match claims {
            Ok(claims) => claims,
            Err(reply) => {
                self.count_upgrade(reply.status);
                return Err(reply);
            }
        };
        self.count_upgrade(101);
        if let Some(target) = resume {
            let since = since.unwrap_or_default();
            self.resume_at_open(now, conn, target, claims, &since);
            return Ok(());
        }
        let key = self.open_session(now, Cow::Borrowed("unknown"), TransportKind::Websocket);
        self.sessions.attach_websocket(key, conn, 0);
        self.touch(now, key);
        if let Some(client_type) = claims.as_ref().and_then(|c| c.client_type.clone()) {
            self.sessions.get_mut(key).expect("new session").client_type = client_type.into();
        }
        if claims.is_some() {
            self.install_claims(key, claims);
        }
        let welcome = self.connection_established(now, key, requested.as_deref());
        self.deliver(key, welcome, None);
        Ok(())
    }

    /// Counts an upgrade request with the HTTP requests, under the `/ws` route.
    fn count_upgrade(&mut self, status: u16) {
        *self
            .counters
            .http_requests
            .entry((http_api::WEBSOCKET_PATH, status))
            .or_default() += 1;
    }

    /// Attaches a new WebSocket to a live session named in its URL: the session's previous
    /// transport is released, the client gets `connection_established` with
    /// `"resumed": true`, then a `messages_dropped` notice if it lost any, then its backlog.
    fn resume_at_open(
        &mut self,
        now: Time,
        conn: ConnId,
        target: SessionKey,
        claims: Option<ClientClaims>,
        since: &Since,
    ) {
        let reason = "session resumed on another connection";
        self.release_transport(now, target, true, close_code::SESSION_TAKEN_OVER, reason);
        self.sessions.attach_websocket(target, conn, 0);
        if claims.is_some() {
            self.install_claims(target, claims);
        }
        self.touch(now, target);
        let recovery = self.plan_recovery(now, target, since);
        let session = self.sessions.get(target).expect("resumed session");
        let client_id = session.id;
        let timestamp = self.timestamp(now);
        let mut welcome = json!({
            "type": "connection_established",
            "client_id": client_id,
            "protocol_version": PROTOCOL_VERSION,
            "server_time": timestamp,
            "resumed": true,
            "subscriptions": session.subscriptions,
        });
        if !since.is_empty() {
            welcome["recovered"] = json!(recovery.recovered);
            welcome["positions"] =
                self.positions_json(target, session.subscriptions.iter().map(str::to_string));
        }
        welcome["timestamp"] = Value::from(timestamp);
        self.counters.sessions_resumed += 1;
        self.outputs
            .push_back(Output::Session(SessionEvent::Resumed {
                client_id,
                transport: TransportKind::Websocket,
            }));
        self.emit_frame(target, welcome.to_string().into());
        self.start_replays(now, target, recovery.replays);
        self.flush_websocket(now, target);
    }

    pub(super) fn on_ws_text(&mut self, now: Time, conn: ConnId, text: &str) {
        let Some(key) = self.sessions.key_of_conn(conn) else {
            return;
        };
        self.touch(now, key);
        if let Err(problem) = self.spend_message_budget(now, key) {
            return self.send_error(now, key, &problem);
        }
        if text.len() > self.config.max_frame_bytes {
            // The same answer the WebSocket layer gives when it enforces the limit itself.
            let (code, reason) = TransportFailure::MessageTooBig
                .close_frame()
                .expect("a message too big is answered with a close frame");
            return self.close_websocket(key, conn, code, reason, false);
        }
        if let Err(problem) =
            http_api::check_json_depth(text.as_bytes(), self.config.max_json_depth)
        {
            return self.send_error(now, key, &problem);
        }
        let message: Value = match serde_json::from_str(text) {
            Ok(message) => message,
            Err(err) => return self.send_error(now, key, &format!("invalid JSON: {err}")),
        };
        if let Some(target) = self.resume_target(key, &message) {
            return self.resume_over_websocket(now, key, conn, target, &message);
        }
        match self.client_message(now, key, message, Via::WebSocket, None) {
            Ok(answer) => {
                if let Some(reply) = answer.reply {
                    self.deliver(key, reply.into(), None);
                }
                self.start_replays(now, key, answer.replays);
            }
            Err(refusal) => self.send_error(now, key, refusal.text()),
        }
    }

    /// The live session a WebSocket `register` asks to resume, if any.
    pub(super) fn resume_target(&self, key: SessionKey, message: &Value) -> Option<SessionKey> {
        if message.get("type").and_then(Value::as_str) != Some("register") {
            return None;
        }
        let id: ClientId = message.get("client_id")?.as_str()?.parse().ok()?;
        let target = self.sessions.key_of(&id)?;
        (target != key).then_some(target)
    }

    /// Moves the connection from its fresh session `fresh` to the resumed session `target`:
    /// subscriptions made on the fresh session are kept, the fresh session ends, the target's
    /// previous transport is closed or answered, and its queued messages follow the reply.
    pub(super) fn resume_over_websocket(
        &mut self,
        now: Time,
        fresh: SessionKey,
        conn: ConnId,
        target: SessionKey,
        message: &Value,
    ) {
        let map = message.as_object().expect("register is an object");
        if let Err(problem) = ["client_type", "client_name"]
            .iter()
            .try_for_each(|field| optional_str(map, field).map(drop))
            .and_then(|()| match optional_str(map, "client_type")? {
                Some(client_type) => validate_label("client_type", client_type),
                None => Ok(()),
            })
        {
            return self.send_error(now, fresh, &problem);
        }
        let since = match parse_since(map.get("since"), None) {
            Ok(since) => since,
            Err(problem) => return self.send_error(now, fresh, &problem),
        };
        let fresh_claims = self
            .sessions
            .get(fresh)
            .and_then(|s| s.claims.as_deref().cloned());
        let owner = self.sessions.get(target).and_then(|s| s.claims.as_deref());
        if let Err(refusal) = auth::check_same_subject(owner, fresh_claims.as_ref()) {
            return self.send_error(now, fresh, refusal.message());
        }
        let reason = "session resumed on another connection";
        self.release_transport(now, target, true, close_code::SESSION_TAKEN_OVER, reason);
        // Frames already handed out on this socket are the fresh session's.
        let fresh_id = self.sessions.get(fresh).expect("fresh session").id;
        let in_flight = match self.sessions.get(fresh).map(|s| &s.transport) {
            Some(Transport::WebSocket { in_flight, .. }) => *in_flight,
            _ => 0,
        };
        self.unwritten.inherit(conn, fresh_id, in_flight);
        let carried: Vec<String> = self
            .sessions
            .get(fresh)
            .map(|s| s.subscriptions.iter().map(str::to_string).collect())
            .unwrap_or_default();
        self.sessions.detach(fresh);
        self.end_session(fresh, CloseReason::MergedIntoResumed);
        // Subscriptions made before `register` are kept, within the per-client limit.
        let room = self.config.max_subscriptions;
        let session = self.sessions.get_mut(target).expect("resume target");
        for channel in carried {
            if session.subscriptions.len() >= room {
                break;
            }
            if !session.subscriptions.contains(&channel) {
                let name = self.channels.subscribe(&channel, target);
                session.subscriptions.insert(name);
            }
        }
        self.sessions.attach_websocket(target, conn, in_flight);
        if fresh_claims.is_some() {
            self.install_claims(target, fresh_claims);
        }
        let session = self.sessions.get_mut(target).expect("resume target");
        if let Some(client_type) = map.get("client_type").and_then(Value::as_str) {
            session.client_type = client_type.to_string().into();
        }
        if let Some(client_name) = map.get("client_name").and_then(Value::as_str) {
            session.client_name = Some(client_name.to_string());
        }
        let client_id = session.id;
        self.counters.sessions_resumed += 1;
        self.outputs
            .push_back(Output::Session(SessionEvent::Resumed {
                client_id,
                transport: TransportKind::Websocket,
            }));
        self.touch(now, target);
        // The reply goes out ahead of the backlog so the client knows what follows.
        let recovery = self.plan_recovery(now, target, &since);
        let mut registered = self.registered_json(now, target, true, None);
        if !since.is_empty() {
            let session = self.sessions.get(target).expect("resume target");
            registered["recovered"] = json!(recovery.recovered);
            registered["positions"] =
                self.positions_json(target, session.subscriptions.iter().map(str::to_string));
        }
        self.emit_frame(target, registered.to_string().into());
        self.start_replays(now, target, recovery.replays);
        self.flush_websocket(now, target);
    }

    pub(super) fn on_ws_written(&mut self, now: Time, key: SessionKey, frames: usize) {
        if let Some(Session {
            transport: Transport::WebSocket { in_flight, conn },
            queue,
            ..
        }) = self.sessions.get_mut(key)
        {
            *in_flight = in_flight.saturating_sub(frames);
            let (conn, idle) = (*conn, queue.is_empty() && queue.unreported_drops() == 0);
            self.unwritten.written(conn, frames);
            // The common case, an acknowledgement with nothing waiting behind the window, is
            // done here; it is as frequent as deliveries.
            if idle {
                return;
            }
        }
        self.flush_websocket(now, key);
    }

    /// Moves queued messages into the write window, preceded by a `messages_dropped` notice
    /// when some were lost.
    pub(super) fn flush_websocket(&mut self, now: Time, key: SessionKey) {
        let window = delivery::write_window(&self.config);
        loop {
            let Some(session) = self.sessions.get_mut(key) else {
                return;
            };
            let Transport::WebSocket { in_flight, conn } = session.transport else {
                return;
            };
            if in_flight >= window {
                return;
            }
            let frame: Arc<str> = if session.queue.unreported_drops() > 0 {
                let dropped = session.queue.take_unreported_drops();
                // The queue forgets these drops now; if the notice dies unwritten, the socket's
                // end owes them to the client again.
                self.unwritten
                    .notice_handed_out(conn, session.id, in_flight, dropped);
                json!({"type": "messages_dropped", "dropped": dropped,
                       "timestamp": self.clock.timestamp(now)})
                .to_string()
                .into()
            } else {
                let next = recovery::next_message(
                    &mut session.queue,
                    &mut self.history,
                    &mut self.counters,
                    now,
                );
                match next {
                    Some(frame) => frame,
                    // A replay that found nothing left to send may have dropped some.
                    None if session.queue.unreported_drops() > 0 => continue,
                    None => return,
                }
            };
            self.emit_frame(key, frame);
        }
    }

    /// Hands one frame to the WebSocket writer.
    pub(super) fn emit_frame(&mut self, key: SessionKey, frame: Arc<str>) {
        let session = self.sessions.get_mut(key).expect("live session");
        if let Transport::WebSocket { conn, in_flight } = &mut session.transport {
            let written = (&mut self.counters, &mut self.outputs);
            delivery::hand_to_writer(*conn, in_flight, frame, written);
        }
    }

    pub(super) fn on_ws_closed(&mut self, now: Time, conn: ConnId, code: Option<u16>) {
        let Some(key) = self.sessions.key_of_conn(conn) else {
            return self.on_closed_websocket_ended(now, conn);
        };
        if let Transport::WebSocket { in_flight, .. } = self.sessions.detach(key) {
            // Whatever the socket had not written when it died never reached the client.
            let client_id = self.sessions.get(key).expect("live session").id;
            let lost = self.unwritten.lost(conn, in_flight);
            self.charge_lost_frames(now, key, client_id, lost);
        }
        self.set_timer(key, TimerKind::Ping, None);
        if code == Some(close_code::NORMAL) {
            return self.end_session(key, CloseReason::WebSocketClosed);
        }
        self.touch(now, key);
        let client_id = self.sessions.get(key).expect("live session").id;
        self.outputs
            .push_back(Output::Session(SessionEvent::Detached { client_id }));
    }

    pub(super) fn send_error(&mut self, now: Time, key: SessionKey, problem: &str) {
        let frame = json!({"type": "error", "error": problem, "timestamp": self.timestamp(now)});
        self.deliver(key, frame.to_string().into(), None);
    }
}

/// A query parameter of the upgrade request.
fn query_param(upgrade: &HttpRequest, name: &str) -> Option<String> {
    let (_, query) = http_api::split_target(&upgrade.target);
    form_urlencoded::parse(query.as_bytes())
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.into_owned())
}
