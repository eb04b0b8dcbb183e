//! Cluster mode (`Config::clustered`): the engine as one node of several sharing a broker.
//!
//! The broker numbers every channel's events; this file owns what a node does with that:
//! publishing through the broker (and answering the publisher only once the broker did), the
//! one entry point of channel events into the node ([`Engine::apply_broker_event`]: at
//! `latest + 1` only, duplicates dropped, gaps held and read from the broker's history, a gap
//! the broker no longer has reported to subscribers as dropped — never a silent one), the
//! resync when the broker comes back, and the broker's part of health and metrics.
//!
//! The node's channel history is a mirror of the broker's, fed by the same events on every
//! node, so recovery and `/api/history` give the same positions on any node.

use super::delivery::Audience;
use super::publishing::{ChannelMessage, Publisher, with_position};
use super::*;
use crate::broker::{
    BrokerCommand, BrokerError, BrokerEvent, ChannelHead, DirectAudience, OutgoingEvent,
};
use crate::history::{ChannelId, Entry, Position};
use crate::storage::BatchId;

/// Most events one history read asks the broker for; a longer gap takes several reads.
pub(super) const HISTORY_READ_LIMIT: usize = 1_000;

/// The link to the broker, as the runtime reports it.
#[derive(Debug)]
enum Link {
    /// Never synced yet: handshakes and publishes are refused.
    Starting,
    /// Connected and subscribed.
    Up,
    /// Lost; publishes are refused until the next sync.
    Lost(String),
}

/// A publish the broker has not answered yet.
enum Pending {
    Channel {
        publisher: Publisher,
        unix_millis: u64,
        /// Per event: its type (for the answer), channel and body.
        events: Vec<(String, Arc<str>, Arc<str>)>,
    },
    Direct {
        request: RequestId,
        route: Option<&'static str>,
        kind: Value,
        audience: DirectAudience,
    },
}

/// What cluster mode keeps besides the history mirror.
pub(super) struct Cluster {
    link: Link,
    /// This node's name, in the origin of the events it publishes.
    node: Arc<str>,
    /// This node's tag, in the client ids it makes (known from the first sync on).
    tag: Option<u16>,
    /// Whether the first sync's history reads have all been answered.
    ready: bool,
    next_batch: u64,
    pending: BTreeMap<BatchId, Pending>,
    /// Clients that published an event not yet applied here, by (batch, index): they are not
    /// sent their own event.
    excludes: BTreeMap<(BatchId, u32), SessionKey>,
    /// Events past a gap, per channel, waiting for the gap to be read.
    held: BTreeMap<ChannelId, BTreeMap<u64, BrokerEvent>>,
    /// Channels with a history read in flight, and the limit it asked for.
    reading: BTreeMap<ChannelId, usize>,
    /// Cluster-wide views waiting for the other nodes' answers.
    pub(super) gathers: BTreeMap<RequestId, (&'static str, super::cluster_views::View)>,
    pub(super) stats: BrokerStats,
}

/// Cluster-mode counters, for `/metrics`.
#[derive(Clone, Debug, Default)]
pub(crate) struct BrokerStats {
    pub(crate) up: bool,
    pub(crate) disconnects: u64,
    pub(crate) publishes_refused: u64,
    pub(crate) duplicates: u64,
    pub(crate) gaps_filled: u64,
    pub(crate) gaps_unfilled: u64,
    pub(crate) epoch_resets: u64,
}

impl Default for Cluster {
    fn default() -> Self {
        Cluster {
            link: Link::Starting,
            node: "".into(),
            tag: None,
            ready: false,
            next_batch: 0,
            pending: BTreeMap::new(),
            excludes: BTreeMap::new(),
            held: BTreeMap::new(),
            reading: BTreeMap::new(),
            gathers: BTreeMap::new(),
            stats: BrokerStats::default(),
        }
    }
}

impl Engine {
    /// Cluster mode, before the first sync is complete: the refusal for handshakes and
    /// WebSocket upgrades (the node's history mirror is not filled yet, so recovery would
    /// fail for nothing). `None` when the node is ready (or not clustered).
    pub(super) fn refuse_until_synced(&self) -> Option<CommandError> {
        if !self.config.clustered || self.cluster.ready {
            return None;
        }
        let why = match &self.cluster.link {
            Link::Lost(error) => format!(": {error}"),
            _ => String::new(),
        };
        Some(CommandError::Unavailable(format!(
            "not connected to the broker (Redis) yet{why}; try again shortly"
        )))
    }

    fn broker_refusal(&self) -> Option<String> {
        match &self.cluster.link {
            Link::Up => None,
            Link::Starting => Some(
                "not connected to the broker (Redis) yet; nothing was published, try again later"
                    .to_string(),
            ),
            Link::Lost(error) => Some(format!(
                "the broker (Redis) is unreachable: {error}; nothing was published, try again later"
            )),
        }
    }

    /// Cluster mode's channel path: the broker numbers and fans out the events; the
    /// publisher is answered when it did.
    pub(super) fn publish_through_broker(
        &mut self,
        now: Time,
        messages: Vec<ChannelMessage>,
        publisher: Publisher,
    ) {
        if let Some(problem) = self.broker_refusal() {
            self.cluster.stats.publishes_refused += 1;
            return self.refuse_publisher(now, publisher, 503, &problem);
        }
        self.cluster.next_batch += 1;
        let batch = BatchId(self.cluster.next_batch);
        let mut outgoing = Vec::with_capacity(messages.len());
        let mut events = Vec::with_capacity(messages.len());
        for (index, message) in messages.into_iter().enumerate() {
            if let Some(key) = message.exclude {
                let index = u32::try_from(index).unwrap_or(u32::MAX);
                self.cluster.excludes.insert((batch, index), key);
            }
            let channel: Arc<str> = message.channel.into();
            let body: Arc<str> = message.json.into();
            outgoing.push(OutgoingEvent {
                channel: Arc::clone(&channel),
                body: Arc::clone(&body),
            });
            events.push((message.kind, channel, body));
        }
        let unix_millis = self.clock.unix_millis(now);
        self.cluster.pending.insert(
            batch,
            Pending::Channel {
                publisher,
                unix_millis,
                events,
            },
        );
        self.outputs
            .push_back(Output::Broker(Box::new(BrokerCommand::Publish {
                batch,
                unix_millis,
                events: outgoing,
            })));
    }

    /// Cluster mode's path for messages outside channels (to everyone, or one client type):
    /// every node delivers the copy the broker sends back, this one included.
    pub(super) fn broadcast_through_broker(
        &mut self,
        request: RequestId,
        route: Option<&'static str>,
        kind: Value,
        audience: DirectAudience,
        frame: Arc<str>,
    ) -> Option<Answered> {
        if let Some(problem) = self.broker_refusal() {
            self.cluster.stats.publishes_refused += 1;
            return Some(Err(CommandError::Unavailable(problem)));
        }
        self.cluster.next_batch += 1;
        let batch = BatchId(self.cluster.next_batch);
        self.outputs
            .push_back(Output::Broker(Box::new(BrokerCommand::Direct {
                batch,
                audience: audience.clone(),
                frame,
            })));
        self.cluster.pending.insert(
            batch,
            Pending::Direct {
                request,
                route,
                kind,
                audience,
            },
        );
        None
    }

    fn refuse_publisher(&mut self, now: Time, publisher: Publisher, status: u16, problem: &str) {
        match publisher {
            Publisher::Events { request, route }
            | Publisher::Broadcast { request, route }
            | Publisher::ClientOverHttp { request, route } => {
                let refusal = CommandError::from_status(status, problem.to_string());
                self.answer(request, route, Err(refusal));
            }
            Publisher::ClientOverWebSocket { key } => {
                if self.sessions.get(key).is_some() {
                    self.send_error(now, key, problem);
                }
            }
        }
    }

    /// The broker ran a publish: its events enter this node (if their Pub/Sub copies have
    /// not already) and the publisher is answered with the positions the broker gave.
    pub(super) fn on_broker_published(
        &mut self,
        now: Time,
        batch: BatchId,
        positions: Vec<Position>,
    ) {
        let Some(pending) = self.cluster.pending.remove(&batch) else {
            return;
        };
        match pending {
            Pending::Direct {
                request,
                route,
                kind,
                audience,
            } => {
                let recipients = self.count_direct_audience(&audience);
                let details = json!({"success": true, "type": kind, "channel": audience.channel,
                                     "client_type": audience.client_type,
                                     "recipients": recipients});
                self.answer(request, route, Ok(Outcome::Delivered { details }));
            }
            Pending::Channel {
                publisher,
                unix_millis,
                events,
            } => {
                if positions.len() != events.len() {
                    let problem = format!(
                        "the broker answered {} positions for {} events; the events may have \
                         been published",
                        positions.len(),
                        events.len()
                    );
                    self.forget_excludes(batch);
                    return self.refuse_publisher(now, publisher, 503, &problem);
                }
                let mut results = Vec::with_capacity(events.len());
                for (index, ((kind, channel, body), position)) in
                    events.into_iter().zip(positions).enumerate()
                {
                    let epoch: Arc<str> = position.epoch.into();
                    let event = BrokerEvent {
                        channel: Arc::clone(&channel),
                        epoch: Arc::clone(&epoch),
                        offset: position.offset,
                        unix_millis,
                        origin: Some(crate::broker::EventOrigin {
                            node: Arc::clone(&self.cluster.node),
                            batch,
                            index: u32::try_from(index).unwrap_or(u32::MAX),
                        }),
                        body,
                    };
                    let exclude = self
                        .cluster
                        .excludes
                        .get(&(batch, u32::try_from(index).unwrap_or(u32::MAX)))
                        .copied();
                    let recipients = match self.apply_broker_event(now, event) {
                        Some(recipients) => recipients,
                        None => self.count_channel_audience(&channel, exclude),
                    };
                    results.push((kind, channel, position.offset, epoch, recipients));
                }
                self.answer_publisher(now, publisher, results);
            }
        }
    }

    /// The broker did not run a publish: its publisher gets 503.
    pub(super) fn on_broker_publish_failed(
        &mut self,
        now: Time,
        batch: BatchId,
        error: BrokerError,
    ) {
        let Some(pending) = self.cluster.pending.remove(&batch) else {
            return;
        };
        self.forget_excludes(batch);
        self.cluster.stats.publishes_refused += 1;
        let problem = if error.outcome_unknown {
            format!(
                "the broker (Redis) failed while publishing ({}); the event may have been \
                 published: subscribers get it once the node resyncs, but it is not \
                 acknowledged",
                error.message
            )
        } else {
            format!(
                "the broker (Redis) did not publish it: {}; nothing was published, try again \
                 later",
                error.message
            )
        };
        match pending {
            Pending::Channel { publisher, .. } => {
                self.refuse_publisher(now, publisher, 503, &problem)
            }
            Pending::Direct { request, route, .. } => {
                self.answer(request, route, Err(CommandError::Unavailable(problem)))
            }
        }
    }

    fn forget_excludes(&mut self, batch: BatchId) {
        let keys: Vec<_> = self
            .cluster
            .excludes
            .range((batch, 0)..=(batch, u32::MAX))
            .map(|(k, _)| *k)
            .collect();
        for key in keys {
            self.cluster.excludes.remove(&key);
        }
    }

    fn count_channel_audience(&self, channel: &str, exclude: Option<SessionKey>) -> usize {
        self.channels
            .subscribers(channel)
            .iter()
            .filter(|key| Some(**key) != exclude)
            .count()
    }

    fn count_direct_audience(&self, audience: &DirectAudience) -> usize {
        let type_matches = |key: SessionKey| {
            audience.client_type.as_deref().is_none_or(|wanted| {
                self.sessions
                    .get(key)
                    .is_some_and(|s| s.client_type == wanted)
            })
        };
        match &audience.channel {
            Some(channel) => self
                .channels
                .subscribers(channel)
                .iter()
                .filter(|key| type_matches(**key))
                .count(),
            None => self
                .sessions
                .iter()
                .filter(|(key, _)| type_matches(*key))
                .count(),
        }
    }

    /// A message outside channels, from any node (this one's own included).
    pub(super) fn on_broker_direct(&mut self, audience: DirectAudience, frame: Arc<str>) {
        let client_type = audience.client_type.as_deref();
        let target = match audience.channel.as_deref() {
            Some(channel) => Audience::Channel {
                channel,
                client_type,
            },
            None => Audience::Everyone { client_type },
        };
        self.publish(target, frame, None, None);
    }

    /// The one way a channel event enters this node: applied at `latest + 1` (delivered to
    /// the local subscribers and kept in the mirror), dropped when already applied, held when
    /// past a gap (which is then read from the broker). Returns the recipients when it was
    /// delivered now.
    pub(super) fn apply_broker_event(&mut self, now: Time, event: BrokerEvent) -> Option<usize> {
        let id = self.channel_in_epoch(now, &event.channel, &event.epoch);
        let latest = self.history.latest(id);
        if event.offset <= latest {
            self.cluster.stats.duplicates += 1;
            return None;
        }
        if event.offset > latest + 1 {
            self.cluster
                .held
                .entry(id)
                .or_default()
                .insert(event.offset, event);
            self.bound_held(id);
            self.read_gap(id);
            return None;
        }
        let recipients = self.apply_next(now, id, event);
        self.drain_held(now, id);
        Some(recipients)
    }

    /// The channel's log, created if new and reset if the broker has it in another epoch.
    fn channel_in_epoch(&mut self, now: Time, name: &str, epoch: &str) -> ChannelId {
        let id = match self.history.id(name) {
            Some(id) => id,
            None => self.history.id_or_create(name),
        };
        if **self.history.channel_epoch(id) != *epoch {
            self.reset_channel(now, id, epoch);
        }
        id
    }

    /// The broker's sequence for this channel started over (its history was lost): the
    /// mirror starts over too, and every local subscriber is told it missed something, so
    /// that its client recovers and learns `recovered: false` instead of a silent jump.
    fn reset_channel(&mut self, now: Time, id: ChannelId, epoch: &str) {
        // Subscribers hold positions of the old epoch only if it had events.
        let had_events = self.history.latest(id) > 0;
        self.history.reset(id, epoch, 0);
        if let Some(held) = self.cluster.held.get_mut(&id) {
            held.retain(|_, event| *event.epoch == *epoch);
        }
        self.cluster.stats.epoch_resets += 1;
        let name = Arc::clone(self.history.name(id));
        let subscribers: Vec<SessionKey> = self.channels.subscribers(&name).to_vec();
        for key in subscribers {
            if let Some(session) = self.sessions.get_mut(key) {
                session.catch_up.forget(id);
            }
            if had_events {
                self.report_missed(now, key, 1);
            }
        }
    }

    /// Tells a session's client it missed `count` events (a `messages_dropped` frame, or
    /// `dropped` in its next poll), which makes client libraries recover.
    fn report_missed(&mut self, now: Time, key: SessionKey, count: u64) {
        let Some(session) = self.sessions.get_mut(key) else {
            return;
        };
        session.queue.add_unreported_drops(count);
        self.counters.dropped += count;
        match session.transport {
            Transport::WebSocket { .. } => self.flush_websocket(now, key),
            Transport::PendingPoll { .. } => self.polls.mark_ready(key, session),
            _ => {}
        }
    }

    /// Applies the channel's next event: into the mirror, then to the local subscribers.
    fn apply_next(&mut self, now: Time, id: ChannelId, event: BrokerEvent) -> usize {
        let name = Arc::clone(self.history.name(id));
        let frame = with_position(&event.body, &name, event.offset, &event.epoch);
        let at = self.clock.time_at(event.unix_millis).min(now);
        let entry = Entry {
            offset: event.offset,
            at,
            frame: Arc::clone(&frame),
        };
        self.history.append(id, entry, now);
        let exclude = event.origin.and_then(|origin| {
            (origin.node == self.cluster.node)
                .then(|| self.cluster.excludes.remove(&(origin.batch, origin.index)))
                .flatten()
        });
        let audience = Audience::Channel {
            channel: &name,
            client_type: None,
        };
        self.publish(audience, frame, exclude, Some((id, event.offset)))
    }

    /// Applies held events that are now next.
    fn drain_held(&mut self, now: Time, id: ChannelId) {
        loop {
            let latest = self.history.latest(id);
            let Some(held) = self.cluster.held.get_mut(&id) else {
                return;
            };
            let Some(entry) = held.first_entry() else {
                self.cluster.held.remove(&id);
                return;
            };
            let offset = *entry.key();
            if offset <= latest {
                entry.remove();
                self.cluster.stats.duplicates += 1;
            } else if offset == latest + 1 {
                let event = entry.remove();
                self.apply_next(now, id, event);
            } else {
                self.read_gap(id);
                return;
            }
        }
    }

    /// Holds at most `history_size` events past a gap (at least one): the newest are dropped
    /// beyond it, and are read again from the broker once the gap is filled.
    fn bound_held(&mut self, id: ChannelId) {
        let bound = self.config.history_size.max(1);
        if let Some(held) = self.cluster.held.get_mut(&id) {
            while held.len() > bound {
                held.pop_last();
            }
        }
    }

    /// Asks the broker for what the mirror lacks after its latest, unless a read of this
    /// channel is already in flight.
    fn read_gap(&mut self, id: ChannelId) {
        if self.cluster.reading.contains_key(&id) || !matches!(self.cluster.link, Link::Up) {
            return;
        }
        let limit = HISTORY_READ_LIMIT;
        self.cluster.reading.insert(id, limit);
        let channel = Arc::clone(self.history.name(id));
        let after = self.history.latest(id);
        self.outputs
            .push_back(Output::Broker(Box::new(BrokerCommand::ReadHistory {
                channel,
                after,
                limit,
            })));
    }

    /// The answer to a history read: applies what it brought, reports what the broker no
    /// longer has as missed, and reads on while something is still missing.
    pub(super) fn on_history_read(
        &mut self,
        now: Time,
        channel: &str,
        head: ChannelHead,
        events: Vec<BrokerEvent>,
    ) {
        let id = self.channel_in_epoch(now, channel, &head.epoch);
        let limit = self
            .cluster
            .reading
            .remove(&id)
            .unwrap_or(HISTORY_READ_LIMIT);
        let received = events.len();
        let mut filled = false;
        let unfilled_before = self.cluster.stats.gaps_unfilled;
        for event in events {
            if *event.epoch != *head.epoch {
                continue;
            }
            let latest = self.history.latest(id);
            if event.offset <= latest {
                continue;
            }
            if event.offset > latest + 1 {
                self.skip_to(now, id, event.offset - 1);
            }
            self.apply_next(now, id, event);
            filled = true;
        }
        // A short answer means the broker has nothing more up to its head: what is still
        // missing before the head is gone from its history.
        if received < limit && head.latest > self.history.latest(id) {
            self.skip_to(now, id, head.latest);
        }
        if filled && self.cluster.stats.gaps_unfilled == unfilled_before {
            self.cluster.stats.gaps_filled += 1;
        }
        self.drain_held(now, id);
        if received >= limit && head.latest > self.history.latest(id) {
            self.read_gap(id);
        }
        if !self.cluster.ready && self.cluster.reading.is_empty() {
            self.cluster.ready = true;
        }
    }

    /// The events after the mirror's latest up to `latest` are gone from the broker: the
    /// mirror jumps over them and the local subscribers are told how many they missed.
    fn skip_to(&mut self, now: Time, id: ChannelId, latest: u64) {
        let missed = latest.saturating_sub(self.history.latest(id));
        if missed == 0 {
            return;
        }
        self.cluster.stats.gaps_unfilled += 1;
        let epoch = Arc::clone(self.history.channel_epoch(id));
        self.history.reset(id, &epoch, latest);
        let name = Arc::clone(self.history.name(id));
        let subscribers: Vec<SessionKey> = self.channels.subscribers(&name).to_vec();
        for key in subscribers {
            self.report_missed(now, key, missed);
        }
    }

    /// The broker connection is lost: publishes are refused until it is back.
    pub(super) fn on_broker_lost(&mut self, error: String) {
        if matches!(self.cluster.link, Link::Up) {
            self.cluster.stats.disconnects += 1;
        }
        self.cluster.stats.up = false;
        self.cluster.link = Link::Lost(error);
        // Reads in flight are lost with the connection; the next sync reads again.
        self.cluster.reading.clear();
    }

    /// The broker is connected and subscribed: the mirror catches up with every channel's
    /// head (events published meanwhile are read and delivered in order; channels whose
    /// history the broker lost start over, with their subscribers told).
    pub(super) fn on_broker_synced(
        &mut self,
        now: Time,
        node: String,
        node_tag: u16,
        epoch: String,
        heads: Vec<ChannelHead>,
    ) {
        self.cluster.tag = Some(node_tag);
        self.cluster.link = Link::Up;
        self.cluster.stats.up = true;
        self.cluster.node = node.into();
        self.cluster.reading.clear();
        self.history.set_epoch(epoch.clone());
        let mut known: BTreeSet<ChannelId> = BTreeSet::new();
        for head in heads {
            let id = self.channel_in_epoch(now, &head.channel, &head.epoch);
            known.insert(id);
            let behind = head.latest > self.history.latest(id);
            let holding = self.cluster.held.get(&id).is_some_and(|h| !h.is_empty());
            if behind || holding {
                self.read_gap(id);
            }
        }
        // Channels the broker no longer knows lost their history there: they start over in
        // the broker's current epoch, as the broker will number their next event.
        let lost: Vec<ChannelId> = self
            .history
            .positions()
            .filter_map(|(name, latest, channel_epoch, _)| {
                let id = self.history.id(name)?;
                let gone = !known.contains(&id) && (latest > 0 || channel_epoch != epoch);
                gone.then_some(id)
            })
            .collect();
        for id in lost {
            self.reset_channel(now, id, &epoch);
            self.cluster.held.remove(&id);
        }
        if !self.cluster.ready && self.cluster.reading.is_empty() {
            self.cluster.ready = true;
        }
    }

    /// Cluster mode: the tag client ids made here carry.
    pub(super) fn node_tag(&self) -> Option<u16> {
        if self.config.clustered {
            self.cluster.tag
        } else {
            None
        }
    }

    /// Cluster mode: the node holding the session a command names, when it is another one
    /// and the request was not itself forwarded (a forwarded request is answered here, so
    /// requests never go round in circles).
    pub(super) fn owner_elsewhere(&self, command: &Command, forwarded: bool) -> Option<u16> {
        let mine = self.node_tag()?;
        if forwarded {
            return None;
        }
        let named = match command {
            Command::Poll { client_id, .. }
            | Command::Send { client_id, .. }
            | Command::Disconnect { client_id, .. }
            | Command::SendTo { client_id, .. } => *client_id,
            Command::Handshake {
                client_id: Some(id),
                ..
            } => id.parse::<ClientId>().ok()?,
            _ => return None,
        };
        let owner = named.node_tag();
        (owner != mine && self.sessions.key_of(&named).is_none()).then_some(owner)
    }

    /// The broker's part of `/api/system/health`: the status word and the `broker` object.
    pub(super) fn broker_health(&self) -> Option<(u16, &'static str, Value)> {
        if !self.config.clustered {
            return None;
        }
        let (status, word, error) = match (&self.cluster.link, self.cluster.ready) {
            (Link::Up, true) => (200, "healthy", None),
            (Link::Up, false) => (503, "starting", None),
            (Link::Starting, _) => (503, "starting", None),
            (Link::Lost(error), false) => (503, "starting", Some(error.clone())),
            (Link::Lost(error), true) => (200, "degraded", Some(error.clone())),
        };
        let mut broker = json!({
            "connected": matches!(self.cluster.link, Link::Up),
            "ready": self.cluster.ready,
        });
        if let Some(error) = error {
            broker["error"] = Value::from(format!(
                "the broker (Redis) is unreachable: {error}; publishes are refused with 503"
            ));
        }
        Some((status, word, broker))
    }
}
