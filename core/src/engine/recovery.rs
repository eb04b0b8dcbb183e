//! Recovery: a client that says which position it saw on a channel (`since`, in a `subscribe`
//! or in a resume) gets every event it missed, in offset order, before the channel's live
//! events — or, when history no longer reaches back or the epoch changed, is told
//! `recovered: false` and given nothing, never part of what it missed. Also the history
//! endpoint, and reading queued replays from history as they are delivered.

use super::*;
use crate::history::{History, Since, Unrecoverable};
use crate::queue::{Item, MessageQueue, Replay};
use crate::stats::Counters;

/// The outcome of a recovery request, for the client's reply.
#[derive(Default)]
pub(super) struct Recovery {
    /// Per channel asked for, whether everything missed will be replayed.
    pub(super) recovered: BTreeMap<String, bool>,
    /// What to replay, once the reply is on its way.
    pub(super) replays: Vec<Replay>,
}

impl Engine {
    /// Decides, per channel, whether what the client missed since its position can be
    /// replayed; nothing changes until [`Engine::start_replays`].
    ///
    /// In cluster mode, a position of the channel's epoch ahead of this node's latest means
    /// this node lags behind the one the client came from (the broker's events reach nodes at
    /// slightly different times): nothing is missed, and the events up to that position are
    /// not delivered to the session again when they arrive here.
    pub(super) fn plan_recovery(&mut self, now: Time, key: SessionKey, since: &Since) -> Recovery {
        let mut recovery = Recovery::default();
        for (channel, position) in since {
            let mut outcome = self
                .history
                .missed(channel, position, self.config.recovery_max, now);
            if self.config.clustered && outcome == Err(Unrecoverable::Ahead) {
                let id = self.history.id_or_create(channel);
                if let Some(session) = self.sessions.get_mut(key) {
                    session.catch_up.set(id, position.offset);
                }
                outcome = Ok(None);
            }
            if let Ok(Some((id, first, last))) = outcome {
                recovery.replays.push(Replay {
                    channel: id,
                    next: first,
                    last,
                });
            }
            match outcome {
                Ok(_) => self.counters.recoveries += 1,
                Err(_) => self.counters.recoveries_failed += 1,
            }
            recovery.recovered.insert(channel.clone(), outcome.is_ok());
        }
        recovery
    }

    /// Queues the replays of a recovery after what the session already has queued (its reply
    /// included), taking out the queued events they cover, and starts their delivery.
    pub(super) fn start_replays(&mut self, now: Time, key: SessionKey, replays: Vec<Replay>) {
        if replays.is_empty() {
            return;
        }
        let Some(session) = self.sessions.get_mut(key) else {
            return;
        };
        for replay in replays {
            self.counters.dropped += session.queue.push_replay(replay);
        }
        match session.transport {
            Transport::WebSocket { .. } => self.flush_websocket(now, key),
            Transport::PendingPoll { .. } => self.polls.mark_ready(key, session),
            _ => {}
        }
    }

    /// Where each of `channels` stands, for replies to `key`'s client. In cluster mode a client
    /// that recovered ahead of this node (see [`Engine::plan_recovery`]) is told its own
    /// position, not this node's older one, so it does not take what it already has for a
    /// gap.
    pub(super) fn positions_json(
        &self,
        key: SessionKey,
        channels: impl IntoIterator<Item = String>,
    ) -> Value {
        let catch_up = self.sessions.get(key).map(|s| &s.catch_up);
        let positions: Map<String, Value> = channels
            .into_iter()
            .map(|channel| {
                let mut position = self.history.position(&channel);
                if let Some(catch_up) = catch_up
                    && let Some(id) = self.history.id(&channel)
                    && let Some(ahead) = catch_up.ahead(id)
                {
                    position.offset = position.offset.max(ahead);
                }
                (
                    channel,
                    json!({"offset": position.offset, "epoch": position.epoch}),
                )
            })
            .collect();
        Value::Object(positions)
    }

    /// `GET /api/history/<channel>?since=OFFSET&limit=N`.
    pub(super) fn read_history(
        &mut self,
        now: Time,
        channel: &str,
        since: u64,
        limit: usize,
    ) -> Answered {
        if let Err(problem) = validate_channel_name(channel, self.config.max_channel_name_bytes) {
            return Err(CommandError::InvalidRequest(problem));
        }
        let position = self.history.position(channel);
        let (events, complete) = match self.history.id(channel) {
            Some(id) => self.history.read(id, since, limit, now),
            None => (Vec::new(), true),
        };
        Ok(Outcome::History {
            channel: channel.to_string(),
            epoch: position.epoch,
            offset: position.offset,
            complete: complete || since >= position.offset,
            events,
        })
    }
}

/// The next message of a session's queue, reading a replay from history: `None` when the
/// queue is empty. Events a replay can no longer find (trimmed meanwhile) are counted as
/// dropped and reported like any other drop.
pub(super) fn next_message(
    queue: &mut MessageQueue,
    history: &mut History,
    counters: &mut Counters,
    now: Time,
) -> Option<Arc<str>> {
    loop {
        match queue.pop()? {
            Item::Frame { frame, .. } => return Some(frame),
            Item::Replay(mut replay) => {
                let Some(entry) = history.entry(replay.channel, replay.next, now) else {
                    let lost = replay.remaining();
                    queue.add_unreported_drops(lost);
                    counters.dropped += lost;
                    continue;
                };
                let frame = Arc::clone(&entry.frame);
                if replay.next < replay.last {
                    replay.next += 1;
                    queue.resume_replay(replay);
                }
                counters.replayed += 1;
                return Some(frame);
            }
        }
    }
}
