//! Delivery: the one path every published message takes to its audience, and how one message
//! reaches one session (its WebSocket's write window, or its bounded queue).

use super::*;
use crate::queue::Origin;

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

impl Engine {
    /// The one place a message reaches its audience: every event, broadcast and targeted
    /// message goes through here, already encoded, and is shared by all recipients. Returns
    /// the number of recipients.
    pub(super) fn publish(
        &mut self,
        audience: Audience<'_>,
        frame: Arc<str>,
        exclude: Option<SessionKey>,
        origin: Origin,
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
            self.deliver(key, Arc::clone(&frame), origin);
        }
        let count = recipients.len();
        self.recipients = recipients;
        count
    }

    /// Puts one message on its way to one session: straight into an open WebSocket's write
    /// window when it has room and nothing is queued ahead, otherwise into the bounded queue
    /// (dropping the oldest when full) where a poll or the window will pick it up.
    pub(super) fn deliver(&mut self, key: SessionKey, frame: Arc<str>, origin: Origin) {
        let window = write_window(&self.config);
        let Some(session) = self.sessions.get_mut(key) else {
            return;
        };
        if let Some((channel, offset)) = origin
            && session.catch_up.already_has(channel, offset)
        {
            return;
        }
        match &mut session.transport {
            Transport::WebSocket { conn, in_flight }
                if *in_flight < window && session.queue.is_empty() =>
            {
                let written = (&mut self.counters, &mut self.outputs);
                hand_to_writer(*conn, in_flight, frame, written);
            }
            transport => {
                let dropped = session.queue.push(frame, origin);
                self.counters.dropped += dropped;
                let overflowed = dropped > 0;
                match transport {
                    Transport::PendingPoll { .. } => self.polls.mark_ready(key, session),
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

/// How many frames a WebSocket may have handed out and not yet written.
pub(super) fn write_window(config: &Config) -> usize {
    config.ws_write_window.max(1)
}

/// The one place a frame enters a WebSocket's write window: counted as delivered, handed to
/// the runtime's writer. The caller has checked that the window has room.
pub(super) fn hand_to_writer(
    conn: ConnId,
    in_flight: &mut usize,
    frame: Arc<str>,
    (counters, outputs): (&mut Counters, &mut VecDeque<Output>),
) {
    *in_flight += 1;
    counters.delivered += 1;
    outputs.push_back(Output::WsFrame { conn, frame });
}
