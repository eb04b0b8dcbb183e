//! Client sessions and the table that holds them.
//!
//! A session outlives its transport: between polls, or after its WebSocket dropped, it keeps
//! its id, subscriptions and queue until it goes stale. Sessions live in a slab so that
//! fan-out reaches each recipient in constant time; a generation number keeps a stale key
//! from ever reaching the slot's next occupant.

use crate::auth::ClientClaims;
use crate::channel::Subscriptions;
use crate::history::ChannelId;
use crate::ids::{ClientId, ConnId, RequestId};
use crate::output::TransportKind;
use crate::queue::MessageQueue;
use crate::rate::{RateLimit, TokenBucket};
use crate::time::Time;
use rustc_hash::FxHashMap;
use std::borrow::Cow;

/// A handle to a session in the [`SessionTable`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct SessionKey {
    index: u32,
    generation: u32,
}

#[cfg(test)]
impl SessionKey {
    pub(crate) fn for_tests(index: u32, generation: u32) -> SessionKey {
        SessionKey { index, generation }
    }
}

/// What the session's client is attached through right now.
#[derive(Debug)]
pub(crate) enum Transport {
    /// Nothing: a polling client between polls, or a WebSocket client that dropped.
    Detached,
    /// A long poll is waiting for messages.
    PendingPoll {
        request: RequestId,
        /// Whether the request came over HTTP (for the request counters).
        http: bool,
    },
    /// An open WebSocket.
    WebSocket {
        conn: ConnId,
        /// Frames handed to the writer and not yet reported written.
        in_flight: usize,
    },
}

/// One client session.
///
/// Every connected client keeps one in the table's slab, idle or not, so what is rare stays
/// out of line: a token's claims are boxed (80 bytes inline, for the sessions that have none),
/// and the client type a WebSocket session starts with is a static name, not an allocation.
#[derive(Debug)]
pub(crate) struct Session {
    pub(crate) id: ClientId,
    pub(crate) client_type: Cow<'static, str>,
    pub(crate) client_name: Option<String>,
    pub(crate) subscriptions: Subscriptions,
    pub(crate) queue: MessageQueue,
    pub(crate) connected_at: Time,
    pub(crate) last_activity: Time,
    pub(crate) last_poll: Option<Time>,
    pub(crate) transport: Transport,
    /// The transport the client last used; listed by the management API.
    pub(crate) kind: TransportKind,
    /// Deadlines currently armed for this session, mirrored in the engine's timer set.
    pub(crate) timers: SessionTimers,
    /// Set while the session waits in the engine's list of polls to answer.
    pub(crate) poll_ready: bool,
    /// Messages the client may still send right now.
    pub(crate) message_budget: TokenBucket,
    /// What the client's token grants, when tokens are required.
    pub(crate) claims: Option<Box<ClientClaims>>,
    /// Cluster mode: the channels on which the client is ahead of this node.
    pub(crate) catch_up: CatchUp,
}

#[derive(Debug, Default)]
pub(crate) struct SessionTimers {
    pub(crate) stale_at: Option<Time>,
    pub(crate) poll_expires_at: Option<Time>,
    pub(crate) ping_at: Option<Time>,
    pub(crate) token_expires_at: Option<Time>,
}

impl Session {
    pub(crate) fn new(
        id: ClientId,
        client_type: Cow<'static, str>,
        kind: TransportKind,
        queue_limit: usize,
        message_rate: RateLimit,
        now: Time,
    ) -> Self {
        Session {
            id,
            client_type,
            client_name: None,
            subscriptions: Subscriptions::default(),
            queue: MessageQueue::new(queue_limit),
            connected_at: now,
            last_activity: now,
            last_poll: None,
            transport: Transport::Detached,
            kind,
            timers: SessionTimers::default(),
            poll_ready: false,
            message_budget: TokenBucket::full(message_rate, now),
            claims: None,
            catch_up: CatchUp::default(),
        }
    }

    pub(crate) fn websocket(&self) -> Option<ConnId> {
        match self.transport {
            Transport::WebSocket { conn, .. } => Some(conn),
            _ => None,
        }
    }
}

/// All sessions, with indexes by client id and by WebSocket connection.
#[derive(Debug, Default)]
pub(crate) struct SessionTable {
    slots: Vec<Slot>,
    free: Vec<u32>,
    // Lookups only, never iterated (iteration order reaching output uses the slab).
    by_id: FxHashMap<ClientId, SessionKey>,
    by_conn: FxHashMap<ConnId, SessionKey>,
    len: usize,
}

#[derive(Debug)]
struct Slot {
    generation: u32,
    session: Option<Session>,
}

/// Cluster mode: per channel, the offset up to which a client already has the events (it
/// recovered on this node with a position the node had not reached yet); those are not
/// delivered to it again. Almost always empty, so behind a pointer: one word per session.
#[derive(Debug, Default)]
#[expect(
    clippy::box_collection,
    reason = "one word in every session instead of a Vec's three, for a list almost always absent"
)]
pub(crate) struct CatchUp(Option<Box<Vec<(ChannelId, u64)>>>);

impl CatchUp {
    /// The client has `channel`'s events up to `offset`.
    pub(crate) fn set(&mut self, channel: ChannelId, offset: u64) {
        let list = self.0.get_or_insert_default();
        list.retain(|(c, _)| *c != channel);
        list.push((channel, offset));
    }

    /// Forgets `channel` (its history was reset).
    pub(crate) fn forget(&mut self, channel: ChannelId) {
        if let Some(list) = &mut self.0 {
            list.retain(|(c, _)| *c != channel);
            if list.is_empty() {
                self.0 = None;
            }
        }
    }

    /// How far the client is ahead on `channel`, if it is.
    pub(crate) fn ahead(&self, channel: ChannelId) -> Option<u64> {
        let list = self.0.as_ref()?;
        list.iter().find(|(c, _)| *c == channel).map(|(_, o)| *o)
    }

    /// Whether the event at `offset` of `channel` is one the client already has. The first
    /// event past its position ends the catching up on that channel.
    #[inline]
    pub(crate) fn already_has(&mut self, channel: ChannelId, offset: u64) -> bool {
        // Checked inline: this runs for every delivery, and almost no session catches up.
        self.0.is_some() && self.already_has_slow(channel, offset)
    }

    #[cold]
    fn already_has_slow(&mut self, channel: ChannelId, offset: u64) -> bool {
        let Some(list) = &mut self.0 else {
            return false;
        };
        let Some(place) = list.iter().position(|(c, _)| *c == channel) else {
            return false;
        };
        if offset <= list[place].1 {
            return true;
        }
        list.swap_remove(place);
        if list.is_empty() {
            self.0 = None;
        }
        false
    }
}

#[cfg(all(test, target_pointer_width = "64"))]
mod tests {
    use super::*;

    /// Every open connection keeps a slot, so a field added inline to [`Session`] costs that
    /// much per idle WebSocket (the slab also doubles, so up to twice that in capacity).
    /// Things most sessions lack belong behind a pointer.
    const SLOT_BUDGET: usize = 304;

    #[test]
    fn a_session_slot_stays_within_its_memory_budget() {
        let size = std::mem::size_of::<Slot>();
        assert!(
            size <= SLOT_BUDGET,
            "a session slot is {size} bytes, over the {SLOT_BUDGET}-byte budget"
        );
    }
}

impl SessionTable {
    pub(crate) fn insert(&mut self, session: Session) -> SessionKey {
        let id = session.id;
        let key = match self.free.pop() {
            Some(index) => {
                let slot = &mut self.slots[index as usize];
                slot.generation = slot.generation.wrapping_add(1);
                slot.session = Some(session);
                SessionKey {
                    index,
                    generation: slot.generation,
                }
            }
            None => {
                let index = u32::try_from(self.slots.len()).expect("fewer than 2^32 sessions");
                self.slots.push(Slot {
                    generation: 0,
                    session: Some(session),
                });
                SessionKey {
                    index,
                    generation: 0,
                }
            }
        };
        self.by_id.insert(id, key);
        self.len += 1;
        key
    }

    pub(crate) fn remove(&mut self, key: SessionKey) -> Option<Session> {
        let slot = self.slots.get_mut(key.index as usize)?;
        if slot.generation != key.generation {
            return None;
        }
        let session = slot.session.take()?;
        self.free.push(key.index);
        self.by_id.remove(&session.id);
        if let Some(conn) = session.websocket() {
            self.by_conn.remove(&conn);
        }
        self.len -= 1;
        Some(session)
    }

    pub(crate) fn get(&self, key: SessionKey) -> Option<&Session> {
        let slot = self.slots.get(key.index as usize)?;
        if slot.generation != key.generation {
            return None;
        }
        slot.session.as_ref()
    }

    pub(crate) fn get_mut(&mut self, key: SessionKey) -> Option<&mut Session> {
        let slot = self.slots.get_mut(key.index as usize)?;
        if slot.generation != key.generation {
            return None;
        }
        slot.session.as_mut()
    }

    pub(crate) fn key_of(&self, id: &ClientId) -> Option<SessionKey> {
        self.by_id.get(id).copied()
    }

    pub(crate) fn key_of_conn(&self, conn: ConnId) -> Option<SessionKey> {
        self.by_conn.get(&conn).copied()
    }

    /// Attaches `conn` to the session, replacing whatever transport it had; returns the
    /// previous transport so the caller can close or answer it.
    pub(crate) fn attach_websocket(
        &mut self,
        key: SessionKey,
        conn: ConnId,
        in_flight: usize,
    ) -> Transport {
        let session = self.get_mut(key).expect("attach to a live session");
        let previous = std::mem::replace(
            &mut session.transport,
            Transport::WebSocket { conn, in_flight },
        );
        session.kind = TransportKind::Websocket;
        if let Transport::WebSocket { conn: old, .. } = previous {
            self.by_conn.remove(&old);
        }
        self.by_conn.insert(conn, key);
        previous
    }

    /// Leaves the session without a transport; returns what it had.
    pub(crate) fn detach(&mut self, key: SessionKey) -> Transport {
        let session = self.get_mut(key).expect("detach a live session");
        let previous = std::mem::replace(&mut session.transport, Transport::Detached);
        if let Transport::WebSocket { conn, .. } = previous {
            self.by_conn.remove(&conn);
        }
        previous
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Sessions in slot order, which is deterministic for a given input sequence.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (SessionKey, &Session)> {
        self.slots.iter().enumerate().filter_map(|(index, slot)| {
            slot.session.as_ref().map(|session| {
                (
                    SessionKey {
                        index: index as u32,
                        generation: slot.generation,
                    },
                    session,
                )
            })
        })
    }

    /// Sessions in the order clients connected (for listings).
    pub(crate) fn iter_by_age(&self) -> Vec<&Session> {
        let mut sessions: Vec<&Session> = self.iter().map(|(_, s)| s).collect();
        sessions.sort_by_key(|s| (s.connected_at, s.id));
        sessions
    }
}
