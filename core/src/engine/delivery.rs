//! Delivery: the one path every published message takes to its audience, and the
//! publishing commands (broadcast, send to a client, catalogue events).

use super::*;

/// Who receives a published message.
#[derive(Clone, Copy, Debug)]
pub(super) enum Audience<'a> {
    /// Every session, optionally only those of one client type.
    Everyone { client_type: Option<&'a str> },
    /// Subscribers of a channel, optionally only those of one client type.
    Channel {
        channel: &'a str,
        client_type: Option<&'a str>,
    },
    /// One session.
    Session(SessionKey),
}

/// A catalogue event ready to publish.
pub(super) struct OwnedEvent {
    pub(super) name: String,
    pub(super) channel: String,
    pub(super) json: String,
}

impl Engine {
    /// Encodes a message sent by the application or an operator: a catalogue event is
    /// validated and stamped; any other object needs a string `type` and gets a `timestamp`
    /// unless it has one.
    pub(super) fn encode_message(&self, now: Time, message: Value) -> Result<Arc<str>, String> {
        let Value::Object(mut map) = message else {
            return Err("`message` must be a JSON object".to_string());
        };
        if !map.get("type").is_some_and(Value::is_string) {
            return Err("`message` needs a string field `type`".to_string());
        }
        let timestamp = self.timestamp(now);
        if let Some(event) = self
            .encode_event(&map, &timestamp)
            .map_err(|e| e.to_string())?
        {
            return Ok(event.json.into());
        }
        if !map.contains_key("timestamp") {
            map.insert("timestamp".to_string(), Value::from(self.timestamp(now)));
        }
        Ok(Value::Object(map).to_string().into())
    }

    pub(super) fn broadcast(
        &mut self,
        now: Time,
        message: Value,
        channel: Option<&str>,
        client_type: Option<&str>,
    ) -> Reply {
        if let Some(channel) = channel
            && let Err(problem) = validate_channel_name(channel, self.config.max_channel_name_bytes)
        {
            return Reply::error(400, &problem);
        }
        let message_type = message.get("type").cloned().unwrap_or(Value::Null);
        let frame = match self.encode_message(now, message) {
            Ok(frame) => frame,
            Err(problem) => return Reply::error(400, &problem),
        };
        let audience = match channel {
            Some(channel) => Audience::Channel {
                channel,
                client_type,
            },
            None => Audience::Everyone { client_type },
        };
        let recipients = self.publish(audience, frame, None);
        Reply::json(
            200,
            json!({"success": true, "type": message_type, "channel": channel,
                   "client_type": client_type, "recipients": recipients})
            .to_string(),
        )
    }

    pub(super) fn send_to(&mut self, now: Time, client_id: ClientId, message: Value) -> Reply {
        let Some(key) = self.sessions.key_of(&client_id) else {
            return Self::unknown_client(client_id);
        };
        let message_type = message.get("type").cloned().unwrap_or(Value::Null);
        let frame = match self.encode_message(now, message) {
            Ok(frame) => frame,
            Err(problem) => return Reply::error(400, &problem),
        };
        let recipients = self.publish(Audience::Session(key), frame, None);
        Reply::json(
            200,
            json!({"success": true, "type": message_type, "client_id": client_id,
                   "recipients": recipients})
            .to_string(),
        )
    }

    pub(super) fn publish_events(&mut self, now: Time, events: Vec<Value>) -> Reply {
        if events.is_empty() {
            return Reply::error(400, "no events to publish");
        }
        let batch = events.len() > 1;
        let timestamp = self.timestamp(now);
        let mut encoded = Vec::with_capacity(events.len());
        for (index, value) in events.into_iter().enumerate() {
            let prefix = if batch {
                format!("events[{index}]: ")
            } else {
                String::new()
            };
            let Value::Object(map) = value else {
                return Reply::error(400, &format!("{prefix}an event must be a JSON object"));
            };
            match self.encode_event(&map, &timestamp) {
                Ok(Some(event)) => encoded.push(event),
                Ok(None) => {
                    let problem = match map.get("type") {
                        Some(Value::String(name)) => {
                            format!("unknown event type {name:?}; see the event catalogue")
                        }
                        _ => "missing field `type`".to_string(),
                    };
                    return Reply::error(400, &format!("{prefix}{problem}"));
                }
                Err(problem) => return Reply::error(400, &format!("{prefix}{problem}")),
            }
        }
        // Every event was valid: publish them all, in order.
        let mut results = Vec::with_capacity(encoded.len());
        for event in encoded {
            let audience = Audience::Channel {
                channel: &event.channel,
                client_type: None,
            };
            let recipients = self.publish(audience, event.json.into(), None);
            results.push(json!({"type": event.name, "channel": event.channel,
                                "recipients": recipients}));
        }
        Reply::json(200, json!({"success": true, "events": results}).to_string())
    }

    /// A catalogue event encoded for delivery, owned so the engine can publish it.
    pub(super) fn encode_event(
        &self,
        message: &Map<String, Value>,
        timestamp: &str,
    ) -> Result<Option<OwnedEvent>, FieldError> {
        Ok(self
            .config
            .catalogue
            .encode(message, timestamp)?
            .map(|event| OwnedEvent {
                name: event.name.to_string(),
                channel: event.channel.to_string(),
                json: event.json,
            }))
    }

    /// The one place a message reaches its audience: every event, broadcast and targeted
    /// message goes through here, already encoded, and is shared by all recipients. Returns
    /// the number of recipients.
    pub(super) fn publish(
        &mut self,
        audience: Audience<'_>,
        frame: Arc<str>,
        exclude: Option<SessionKey>,
    ) -> usize {
        self.counters.published += 1;
        let mut recipients = std::mem::take(&mut self.recipients);
        recipients.clear();
        let type_matches = |session: &Session, client_type: Option<&str>| {
            client_type.is_none_or(|wanted| session.client_type == wanted)
        };
        match audience {
            Audience::Everyone { client_type } => recipients.extend(
                self.sessions
                    .iter()
                    .filter(|(_, s)| type_matches(s, client_type))
                    .map(|(key, _)| key),
            ),
            Audience::Channel {
                channel,
                client_type,
            } => {
                let subscribers = self.channels.subscribers(channel);
                match client_type {
                    None => recipients.extend_from_slice(subscribers),
                    Some(_) => recipients.extend(subscribers.iter().copied().filter(|key| {
                        self.sessions
                            .get(*key)
                            .is_some_and(|s| type_matches(s, client_type))
                    })),
                }
            }
            Audience::Session(key) => recipients.push(key),
        }
        if let Some(excluded) = exclude {
            recipients.retain(|key| *key != excluded);
        }
        for &key in &recipients {
            self.deliver(key, Arc::clone(&frame));
        }
        let count = recipients.len();
        self.recipients = recipients;
        count
    }

    /// Puts one message on its way to one session: straight into an open WebSocket's write
    /// window when it has room and nothing is queued ahead, otherwise into the bounded queue
    /// (dropping the oldest when full) where a poll or the window will pick it up.
    pub(super) fn deliver(&mut self, key: SessionKey, frame: Arc<str>) {
        let window = self.config.ws_write_window.max(1);
        let Some(session) = self.sessions.get_mut(key) else {
            return;
        };
        match &mut session.transport {
            Transport::WebSocket { conn, in_flight }
                if in_flight.frames < window && session.queue.is_empty() =>
            {
                in_flight.frames += 1;
                self.counters.delivered += 1;
                self.outputs
                    .push_back(Output::WsFrame { conn: *conn, frame });
            }
            transport => {
                let overflowed = session.queue.push(frame);
                if overflowed {
                    self.counters.dropped += 1;
                }
                match transport {
                    Transport::PendingPoll { .. } if !session.poll_ready => {
                        session.poll_ready = true;
                        self.ready_polls.push(key);
                    }
                    Transport::WebSocket { conn, .. }
                        if overflowed
                            && self.config.slow_consumer == SlowConsumerPolicy::Disconnect =>
                    {
                        let conn = *conn;
                        let reason = "client too slow: outbound queue overflowed";
                        self.close_websocket(key, conn, close_code::SLOW_CONSUMER, reason, true);
                    }
                    _ => {}
                }
            }
        }
    }
}
