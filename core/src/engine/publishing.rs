//! Publishing: the commands that publish — broadcast, send to one client, catalogue events
//! from the application or from clients — and the path every channel message takes: it gets
//! the channel's next offset (no holes), enters history, and, when history is durable, waits
//! for the store before it is delivered and its publisher acknowledged.
//!
//! Messages to one client or one client type stay outside channels: no offset, no history,
//! delivered at once.

use super::delivery::Audience;
use super::messages::Refusal;
use super::*;
use crate::history::{ChannelId, Entry};
use crate::storage::{BatchId, PersistBatch, StoreError, StoredChannel, StoredEvent};

/// A message for a channel, encoded, before it has its offset.
pub(super) struct ChannelMessage {
    /// Its `type` (for the publisher's answer).
    pub(super) kind: String,
    pub(super) channel: String,
    /// The message as a JSON object, without `channel`, `offset` and `epoch`.
    pub(super) json: String,
    /// The client that published it, which is not sent its own event.
    pub(super) exclude: Option<SessionKey>,
}

/// Who waits for a channel publish, and what they are told once it is done.
pub(super) enum Publisher {
    /// `POST /api/events`, `/ws/notify/*`: one entry per event.
    Events {
        request: RequestId,
        route: Option<&'static str>,
    },
    /// `/ws/broadcast` to a channel.
    Broadcast {
        request: RequestId,
        route: Option<&'static str>,
    },
    /// A client's own event, sent over `/ws/send`.
    ClientOverHttp {
        request: RequestId,
        route: Option<&'static str>,
    },
    /// A client's own event, sent over its WebSocket.
    ClientOverWebSocket { key: SessionKey },
}

/// A channel message with its offset and frame.
pub(super) struct Prepared {
    kind: String,
    channel: ChannelId,
    offset: u64,
    frame: Arc<str>,
    exclude: Option<SessionKey>,
    at: Time,
    unix_millis: u64,
}

/// One published event, for its publisher's answer: type, channel, offset, epoch and the
/// number of local recipients.
pub(super) type Published = (String, Arc<str>, u64, Arc<str>, usize);

/// A publish waiting for the store.
pub(super) struct PendingBatch {
    batch: BatchId,
    stored: bool,
    events: Vec<Prepared>,
    publisher: Publisher,
}

/// What the durable path keeps between a publish and its acknowledgement.
#[derive(Default)]
pub(super) struct Durability {
    pending: VecDeque<PendingBatch>,
    next_batch: u64,
    /// Bumped by every failure, so a store can refuse what was sent after it.
    generation: u64,
    /// The highest offset given so far, per channel (ahead of history while events wait).
    reserved: BTreeMap<ChannelId, u64>,
}

impl Durability {
    /// Publishes waiting for the store.
    pub(super) fn pending(&self) -> usize {
        self.pending.len()
    }
}

impl Engine {
    /// Encodes a message sent by the application or an operator: a catalogue event is
    /// validated and stamped; any other object needs a string `type` and gets a `timestamp`
    /// unless it has one. For a channel, the fields the hub adds to channel messages
    /// (`channel`, `offset`, `epoch`) are its own.
    pub(super) fn encode_message(
        &self,
        now: Time,
        message: Value,
        for_channel: bool,
    ) -> Result<String, String> {
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
            return Ok(event.json);
        }
        if !map.contains_key("timestamp") {
            map.insert("timestamp".to_string(), Value::from(timestamp));
        }
        if for_channel {
            for reserved in ["channel", "offset", "epoch"] {
                map.remove(reserved);
            }
        }
        Ok(Value::Object(map).to_string())
    }

    /// A catalogue event encoded for delivery, owned so the engine can publish it.
    pub(super) fn encode_event(
        &self,
        message: &Map<String, Value>,
        timestamp: &str,
    ) -> Result<Option<ChannelMessage>, FieldError> {
        Ok(self
            .config
            .catalogue
            .encode(message, timestamp)?
            .map(|event| ChannelMessage {
                kind: event.name.to_string(),
                channel: event.channel.to_string(),
                json: event.json,
                exclude: None,
            }))
    }

    /// `/ws/broadcast`: to everyone or one client type at once; to a channel through the
    /// channel path (answered when delivered, and stored first when durable).
    pub(super) fn broadcast(
        &mut self,
        now: Time,
        request: RequestId,
        route: Option<&'static str>,
        message: Value,
        channel: Option<&str>,
        client_type: Option<&str>,
    ) -> Option<Answered> {
        if let Some(channel) = channel
            && let Err(problem) = validate_channel_name(channel, self.config.max_channel_name_bytes)
        {
            return Some(Err(CommandError::InvalidRequest(problem)));
        }
        let kind = message.get("type").cloned().unwrap_or(Value::Null);
        let on_channel = channel.is_some() && client_type.is_none();
        let json = match self.encode_message(now, message, on_channel) {
            Ok(json) => json,
            Err(problem) => return Some(Err(CommandError::InvalidRequest(problem))),
        };
        if let (Some(channel), true) = (channel, on_channel) {
            let message = ChannelMessage {
                kind: kind.as_str().unwrap_or_default().to_string(),
                channel: channel.to_string(),
                json,
                exclude: None,
            };
            self.publish_on_channels(now, vec![message], Publisher::Broadcast { request, route });
            return None;
        }
        // To one client type: outside channels, so no offset and no history.
        if self.config.clustered {
            let audience = crate::broker::DirectAudience {
                channel: channel.map(str::to_string),
                client_type: client_type.map(str::to_string),
            };
            return self.broadcast_through_broker(request, route, kind, audience, json.into());
        }
        let audience = match channel {
            Some(channel) => Audience::Channel {
                channel,
                client_type,
            },
            None => Audience::Everyone { client_type },
        };
        let recipients = self.publish(audience, json.into(), None, None);
        Some(Ok(Outcome::Delivered {
            details: json!({"success": true, "type": kind, "channel": channel,
                            "client_type": client_type, "recipients": recipients}),
        }))
    }

    pub(super) fn send_to(&mut self, now: Time, client_id: ClientId, message: Value) -> Answered {
        let Some(key) = self.sessions.key_of(&client_id) else {
            return Err(Self::unknown_client(client_id));
        };
        let kind = message.get("type").cloned().unwrap_or(Value::Null);
        let json = self
            .encode_message(now, message, false)
            .map_err(CommandError::InvalidRequest)?;
        let recipients = self.publish(Audience::Session(key), json.into(), None, None);
        Ok(Outcome::Delivered {
            details: json!({"success": true, "type": kind, "client_id": client_id,
                            "recipients": recipients}),
        })
    }

    /// `POST /api/events` and `/ws/notify/*`: every event is validated before any is
    /// published; the answer comes once they are delivered.
    pub(super) fn publish_events(
        &mut self,
        now: Time,
        request: RequestId,
        route: Option<&'static str>,
        events: Vec<Value>,
    ) -> Option<Answered> {
        if events.is_empty() {
            return Some(Err(CommandError::InvalidRequest(
                "no events to publish".into(),
            )));
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
                let problem = format!("{prefix}an event must be a JSON object");
                return Some(Err(CommandError::InvalidRequest(problem)));
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
                    return Some(Err(CommandError::InvalidRequest(format!(
                        "{prefix}{problem}"
                    ))));
                }
                Err(problem) => {
                    return Some(Err(CommandError::InvalidRequest(format!(
                        "{prefix}{problem}"
                    ))));
                }
            }
        }
        self.publish_on_channels(now, encoded, Publisher::Events { request, route });
        None
    }

    /// A catalogue event a client sent: published on its channel to everyone but the sender,
    /// which is answered `published` (with the event's offset, which it will not receive).
    pub(super) fn client_event(
        &mut self,
        now: Time,
        key: SessionKey,
        mut event: ChannelMessage,
        publisher: Publisher,
    ) {
        event.exclude = Some(key);
        self.publish_on_channels(now, vec![event], publisher);
    }

    /// The channel path: offsets, history, and delivery — at once, or once stored.
    pub(super) fn publish_on_channels(
        &mut self,
        now: Time,
        messages: Vec<ChannelMessage>,
        publisher: Publisher,
    ) {
        if self.config.clustered {
            return self.publish_through_broker(now, messages, publisher);
        }
        let unix_millis = self.clock.unix_millis(now);
        let durable = self.config.durable;
        let prepared: Vec<Prepared> = messages
            .into_iter()
            .map(|message| {
                let channel = self.history.id_or_create(&message.channel);
                let latest = self.history.latest(channel);
                // Offsets given to events not yet in history (earlier in this batch, or
                // waiting for the store) are taken.
                let offset = match self.durability.reserved.get(&channel) {
                    Some(&reserved) => reserved.max(latest) + 1,
                    None => latest + 1,
                };
                self.durability.reserved.insert(channel, offset);
                let frame = with_position(
                    &message.json,
                    self.history.name(channel),
                    offset,
                    self.history.channel_epoch(channel),
                );
                Prepared {
                    kind: message.kind,
                    channel,
                    offset,
                    frame,
                    exclude: message.exclude,
                    at: now,
                    unix_millis,
                }
            })
            .collect();
        if !durable {
            return self.deliver_published(now, prepared, publisher);
        }
        self.durability.next_batch += 1;
        let batch = BatchId(self.durability.next_batch);
        let mut keep_from: BTreeMap<ChannelId, u64> = BTreeMap::new();
        let events = prepared
            .iter()
            .map(|p| {
                keep_from.insert(p.channel, self.history.keep_from(p.offset));
                StoredEvent {
                    channel: Arc::clone(self.history.name(p.channel)),
                    epoch: Arc::clone(self.history.channel_epoch(p.channel)),
                    offset: p.offset,
                    unix_millis: p.unix_millis,
                    frame: Arc::clone(&p.frame),
                }
            })
            .collect();
        let keep_from = keep_from
            .into_iter()
            .map(|(channel, from)| (Arc::clone(self.history.name(channel)), from))
            .collect();
        self.outputs
            .push_back(Output::Persist(Box::new(PersistBatch {
                batch,
                generation: self.durability.generation,
                epoch: Arc::clone(self.history.epoch()),
                events,
                keep_from,
            })));
        self.durability.pending.push_back(PendingBatch {
            batch,
            stored: false,
            events: prepared,
            publisher,
        });
    }

    /// Puts published channel messages into history, delivers them and answers their
    /// publisher.
    fn deliver_published(&mut self, now: Time, prepared: Vec<Prepared>, publisher: Publisher) {
        let mut results = Vec::with_capacity(prepared.len());
        for p in prepared {
            let entry = Entry {
                offset: p.offset,
                at: p.at,
                frame: Arc::clone(&p.frame),
            };
            self.history.append(p.channel, entry, now);
            let name = Arc::clone(self.history.name(p.channel));
            let audience = Audience::Channel {
                channel: &name,
                client_type: None,
            };
            let recipients =
                self.publish(audience, p.frame, p.exclude, Some((p.channel, p.offset)));
            let epoch = Arc::clone(self.history.channel_epoch(p.channel));
            results.push((p.kind, name, p.offset, epoch, recipients));
        }
        self.answer_publisher(now, publisher, results);
    }

    /// Answers a channel publish: per event its type, channel, offset, epoch and local
    /// recipients.
    pub(super) fn answer_publisher(
        &mut self,
        now: Time,
        publisher: Publisher,
        results: Vec<Published>,
    ) {
        match publisher {
            Publisher::Events { request, route } => {
                let events: Vec<Value> = results
                    .iter()
                    .map(|(kind, channel, offset, _, recipients)| {
                        json!({"type": kind, "channel": &**channel, "offset": offset,
                               "recipients": recipients})
                    })
                    .collect();
                let details = json!({"success": true, "events": events});
                self.answer(request, route, Ok(Outcome::Delivered { details }));
            }
            Publisher::Broadcast { request, route } => {
                let (kind, channel, offset, _, recipients) = &results[0];
                let details = json!({"success": true, "type": kind, "channel": &**channel,
                                     "client_type": null, "offset": offset,
                                     "recipients": recipients});
                self.answer(request, route, Ok(Outcome::Delivered { details }));
            }
            Publisher::ClientOverHttp { request, route } => {
                let (kind, channel, offset, epoch, recipients) = &results[0];
                let response = self.published_json(now, kind, channel, *offset, epoch, *recipients);
                self.answer(request, route, Ok(Outcome::Sent { response }));
            }
            Publisher::ClientOverWebSocket { key } => {
                let (kind, channel, offset, epoch, recipients) = &results[0];
                let published =
                    self.published_json(now, kind, channel, *offset, epoch, *recipients);
                self.deliver(key, published.into(), None);
            }
        }
    }

    fn published_json(
        &self,
        now: Time,
        kind: &str,
        channel: &str,
        offset: u64,
        epoch: &str,
        recipients: usize,
    ) -> String {
        json!({
            "type": "published",
            "event": kind,
            "channel": channel,
            "offset": offset,
            "epoch": epoch,
            "recipients": recipients,
            "timestamp": self.timestamp(now),
        })
        .to_string()
    }

    /// The store holds `batch`: it, and any batch before it that waited only for it, is
    /// delivered and acknowledged.
    pub(super) fn on_persisted(&mut self, now: Time, batch: BatchId) {
        let Some(pending) = self
            .durability
            .pending
            .iter_mut()
            .find(|p| p.batch == batch)
        else {
            return;
        };
        pending.stored = true;
        while self.durability.pending.front().is_some_and(|p| p.stored) {
            let done = self.durability.pending.pop_front().expect("a stored batch");
            self.deliver_published(now, done.events, done.publisher);
        }
    }

    /// The store failed `batch`: it and every batch after it are refused, and their offsets
    /// will be given again, so no offset is ever skipped.
    pub(super) fn on_persist_failed(&mut self, now: Time, batch: BatchId, error: &StoreError) {
        let Some(index) = self
            .durability
            .pending
            .iter()
            .position(|p| p.batch == batch)
        else {
            return;
        };
        self.durability.generation += 1;
        let refused: Vec<PendingBatch> = self.durability.pending.drain(index..).collect();
        self.durability.reserved.clear();
        for kept in &self.durability.pending {
            for event in &kept.events {
                self.durability.reserved.insert(event.channel, event.offset);
            }
        }
        let problem =
            format!("could not store the event ({error}); nothing was published, try again later");
        for failed in refused {
            match failed.publisher {
                Publisher::Events { request, route }
                | Publisher::Broadcast { request, route }
                | Publisher::ClientOverHttp { request, route } => {
                    let refusal = CommandError::from_status(error.status(), problem.clone());
                    self.answer(request, route, Err(refusal));
                }
                Publisher::ClientOverWebSocket { key } => {
                    if self.sessions.get(key).is_some() {
                        self.send_error(now, key, &problem);
                    }
                }
            }
        }
    }

    /// What a store kept, at start-up: channels continue from their stored offsets and keep
    /// their epochs.
    pub(super) fn on_history_loaded(
        &mut self,
        now: Time,
        epoch: Option<String>,
        channels: Vec<StoredChannel>,
    ) {
        if let Some(epoch) = epoch {
            self.history.set_epoch(epoch);
        }
        for channel in channels {
            let entries = channel
                .events
                .into_iter()
                .map(|event| Entry {
                    offset: event.offset,
                    at: self.clock.time_at(event.unix_millis),
                    frame: event.frame,
                })
                .collect();
            self.history
                .restore(&channel.name, &channel.epoch, channel.latest, entries, now);
        }
    }

    /// A client message that is a catalogue event: refused, or published.
    pub(super) fn client_event_message(
        &mut self,
        now: Time,
        key: SessionKey,
        map: &Map<String, Value>,
        via: Via,
        request: Option<(RequestId, Option<&'static str>)>,
    ) -> Result<(), Refusal> {
        let timestamp = self.timestamp(now);
        let other = map.get("type").and_then(Value::as_str).unwrap_or_default();
        match self.encode_event(map, &timestamp) {
            Ok(Some(event)) => {
                let publisher = match (via, request) {
                    (Via::Http, Some((request, route))) => {
                        Publisher::ClientOverHttp { request, route }
                    }
                    _ => Publisher::ClientOverWebSocket { key },
                };
                self.client_event(now, key, event, publisher);
                Ok(())
            }
            Ok(None) => Err(Refusal::Invalid(format!(
                "unknown message type {other:?}: expected ping, register, subscribe, \
                 unsubscribe or an event of the catalogue"
            ))),
            Err(problem) => Err(Refusal::Invalid(problem.to_string())),
        }
    }
}

/// A channel message's frame: the message with `channel`, `offset` and `epoch` added, which
/// clients that know nothing of them ignore.
pub(super) fn with_position(json: &str, channel: &str, offset: u64, epoch: &str) -> Arc<str> {
    let body = json.strip_suffix('}').unwrap_or(json);
    let mut frame = String::with_capacity(json.len() + channel.len() + epoch.len() + 48);
    frame.push_str(body);
    if body.len() > 1 {
        frame.push(',');
    }
    frame.push_str("\"channel\":");
    frame.push_str(&Value::from(channel).to_string());
    frame.push_str(",\"offset\":");
    frame.push_str(&offset.to_string());
    frame.push_str(",\"epoch\":");
    frame.push_str(&Value::from(epoch).to_string());
    frame.push('}');
    frame.into()
}
