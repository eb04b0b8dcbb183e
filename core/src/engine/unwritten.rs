//! Frames handed to a WebSocket that nobody has confirmed written yet, where the session
//! alone cannot tell: sockets the engine let go of whose end the runtime has not reported,
//! and sockets a `register` moved to another session while frames of the first were still
//! in flight. When such a socket ends, its unwritten frames are charged to the sessions they
//! were meant for, so every client hears of what it lost.
//!
//! `messages_dropped` notices in flight are followed too, on any socket: a notice carries the
//! count of messages the client lost, and the queue forgets them when it hands the notice
//! out. A notice that dies unwritten told the client nothing, so its count is owed again.

use crate::ids::{ClientId, ConnId};
use crate::session::SessionKey;
use std::collections::BTreeMap;

#[derive(Debug, Default)]
pub(super) struct UnwrittenFrames {
    /// WebSockets the engine closed whose end the runtime has not reported yet: the session
    /// they served and the frames handed to them not yet reported written.
    closing: BTreeMap<ConnId, (SessionKey, ClientId, usize)>,
    /// For connections a `register` moved to another session with frames unwritten: the
    /// oldest of those frames, by the earlier sessions they were handed out for (rare, so kept
    /// here rather than in every session).
    inherited: BTreeMap<ConnId, Vec<(ClientId, usize)>>,
    /// `messages_dropped` notices handed to a socket and not written yet, oldest first (rare:
    /// only after drops, so kept here rather than in every session).
    notices: BTreeMap<ConnId, Vec<Notice>>,
}

/// A `messages_dropped` notice handed to a socket's writer and not written yet.
#[derive(Debug)]
struct Notice {
    /// The session it was for.
    client: ClientId,
    /// The socket's frames ahead of it, not written yet.
    ahead: usize,
    /// The drops it reports.
    drops: u64,
}

/// The frames a socket never wrote, and whom they were for.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Lost {
    /// The frames of the session the socket served last.
    pub(super) own: usize,
    /// The older frames, of the sessions it served before a `register` moved it.
    pub(super) earlier: Vec<(ClientId, usize)>,
    /// The `messages_dropped` notices among those frames, oldest first: whom each was for and
    /// the drops it reported, which its client never heard of.
    pub(super) notices: Vec<(ClientId, u64)>,
}

impl UnwrittenFrames {
    /// The engine let go of `conn`, which served `owner` (if it still lives) with `in_flight`
    /// frames unconfirmed: they are kept until the runtime reports its end.
    pub(super) fn socket_let_go(
        &mut self,
        conn: ConnId,
        owner: Option<(SessionKey, ClientId)>,
        in_flight: usize,
    ) {
        match owner {
            Some((key, client_id)) if in_flight > 0 => {
                self.closing.insert(conn, (key, client_id, in_flight));
            }
            _ => {
                self.inherited.remove(&conn);
                self.notices.remove(&conn);
            }
        }
    }

    /// `frames` of a socket the engine let go of were written. Returns whether it was one.
    pub(super) fn written_after_let_go(&mut self, conn: ConnId, frames: usize) -> bool {
        let Some((_, _, in_flight)) = self.closing.get_mut(&conn) else {
            return false;
        };
        *in_flight = in_flight.saturating_sub(frames);
        self.written(conn, frames);
        true
    }

    /// The end of a socket the engine let go of: the session it served and what it lost.
    pub(super) fn let_go_socket_ended(
        &mut self,
        conn: ConnId,
    ) -> Option<(SessionKey, ClientId, Lost)> {
        let (key, client_id, unwritten) = self.closing.remove(&conn)?;
        Some((key, client_id, self.lost(conn, unwritten)))
    }

    /// `conn` moves to another session with `in_flight` frames of `earlier` unconfirmed: those
    /// are the oldest of its frames in flight from now on.
    pub(super) fn inherit(&mut self, conn: ConnId, earlier: ClientId, in_flight: usize) {
        let list = self.inherited.entry(conn).or_default();
        let counted: usize = list.iter().map(|(_, n)| n).sum();
        if in_flight > counted {
            list.push((earlier, in_flight - counted));
        }
        if list.is_empty() {
            self.inherited.remove(&conn);
        }
    }

    /// A `messages_dropped` notice reporting `drops` for `client` was handed to `conn`'s
    /// writer behind `ahead` frames not written yet.
    pub(super) fn notice_handed_out(
        &mut self,
        conn: ConnId,
        client: ClientId,
        ahead: usize,
        drops: u64,
    ) {
        self.notices.entry(conn).or_default().push(Notice {
            client,
            ahead,
            drops,
        });
    }

    /// `frames` of `conn`'s oldest frames were written.
    #[inline]
    pub(super) fn written(&mut self, conn: ConnId, frames: usize) {
        // Checked inline: this runs for every acknowledgement, and the maps are almost always
        // empty.
        if !self.inherited.is_empty() {
            self.inherited_written(conn, frames);
        }
        if !self.notices.is_empty() {
            self.notices_written(conn, frames);
        }
    }

    #[cold]
    fn notices_written(&mut self, conn: ConnId, frames: usize) {
        let Some(list) = self.notices.get_mut(&conn) else {
            return;
        };
        // A notice is written once the frames ahead of it and itself are.
        list.retain_mut(|notice| match notice.ahead.checked_sub(frames) {
            Some(ahead) => {
                notice.ahead = ahead;
                true
            }
            None => false,
        });
        if list.is_empty() {
            self.notices.remove(&conn);
        }
    }

    #[cold]
    fn inherited_written(&mut self, conn: ConnId, frames: usize) {
        let Some(list) = self.inherited.get_mut(&conn) else {
            return;
        };
        let mut left = frames;
        while left > 0 && !list.is_empty() {
            let taken = left.min(list[0].1);
            list[0].1 -= taken;
            left -= taken;
            if list[0].1 == 0 {
                list.remove(0);
            }
        }
        if list.is_empty() {
            self.inherited.remove(&conn);
        }
    }

    /// `conn` ended with `unwritten` frames never written: whose they were.
    pub(super) fn lost(&mut self, conn: ConnId, unwritten: usize) -> Lost {
        let earlier = self.inherited.remove(&conn).unwrap_or_default();
        let charged: usize = earlier.iter().map(|(_, n)| n).sum();
        // Every frame not written yet is lost, so every notice still followed is.
        let notices = self
            .notices
            .remove(&conn)
            .unwrap_or_default()
            .into_iter()
            .map(|notice| (notice.client, notice.drops))
            .collect();
        Lost {
            own: unwritten.saturating_sub(charged),
            earlier,
            notices,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(n: u8) -> ClientId {
        format!("00000000-0000-4000-8000-0000000000{n:02}")
            .parse()
            .unwrap()
    }

    #[test]
    fn moved_frames_are_the_oldest_and_are_charged_to_their_session_first() {
        let mut frames = UnwrittenFrames::default();
        let conn = ConnId(7);
        // 3 frames of client 1 in flight when `register` moves the socket to client 2.
        frames.inherit(conn, client(1), 3);
        // 2 written: both were client 1's.
        frames.written(conn, 2);
        // The socket ends with 4 unwritten: 1 of client 1, 3 of client 2.
        assert_eq!(
            frames.lost(conn, 4),
            Lost {
                own: 3,
                earlier: vec![(client(1), 1)],
                notices: vec![],
            }
        );
        assert_eq!(frames.lost(conn, 4).earlier, [], "charged once");
    }

    #[test]
    fn a_let_go_socket_is_followed_until_its_end() {
        let mut frames = UnwrittenFrames::default();
        let conn = ConnId(3);
        let key = SessionKey::for_tests(0, 0);
        frames.socket_let_go(conn, Some((key, client(1))), 5);
        assert!(frames.written_after_let_go(conn, 2));
        assert!(!frames.written_after_let_go(ConnId(4), 2), "not let go");
        assert_eq!(
            frames.let_go_socket_ended(conn),
            Some((
                key,
                client(1),
                Lost {
                    own: 3,
                    earlier: vec![],
                    notices: vec![],
                }
            ))
        );
        assert_eq!(frames.let_go_socket_ended(conn), None, "reported once");
        // Nothing in flight: nothing to follow.
        frames.socket_let_go(conn, Some((key, client(1))), 0);
        assert_eq!(frames.let_go_socket_ended(conn), None);
    }

    #[test]
    fn a_notice_written_is_forgotten_and_one_never_written_is_lost_with_its_drops() {
        let mut frames = UnwrittenFrames::default();
        let conn = ConnId(5);
        // A notice of 4 drops behind 1 frame, then one of 2 drops behind 3 frames.
        frames.notice_handed_out(conn, client(1), 1, 4);
        frames.notice_handed_out(conn, client(1), 3, 2);
        // 2 written: the first frame and the first notice.
        frames.written(conn, 2);
        // The socket ends with 3 unwritten: the second notice among them.
        assert_eq!(
            frames.lost(conn, 3),
            Lost {
                own: 3,
                earlier: vec![],
                notices: vec![(client(1), 2)],
            }
        );
        assert_eq!(frames.lost(conn, 3).notices, [], "charged once");
        // All written: nothing left to follow.
        frames.notice_handed_out(conn, client(2), 0, 7);
        frames.written(conn, 1);
        assert!(frames.notices.is_empty());
    }
}
