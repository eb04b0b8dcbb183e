//! Frames handed to a WebSocket that nobody has confirmed written yet, where the session
//! alone cannot tell: sockets the engine let go of whose end the runtime has not reported,
//! and sockets a `register` moved to another session while frames of the first were still
//! in flight. When such a socket ends, its unwritten frames are charged to the sessions they
//! were meant for, so every client hears of what it lost.

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
}

/// The frames a socket never wrote, and whom they were for.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Lost {
    /// The frames of the session the socket served last.
    pub(super) own: usize,
    /// The older frames, of the sessions it served before a `register` moved it.
    pub(super) earlier: Vec<(ClientId, usize)>,
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

    /// `frames` of `conn`'s oldest frames were written.
    #[inline]
    pub(super) fn written(&mut self, conn: ConnId, frames: usize) {
        // Checked inline: this runs for every acknowledgement, and the map is almost always
        // empty.
        if !self.inherited.is_empty() {
            self.inherited_written(conn, frames);
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
        Lost {
            own: unwritten.saturating_sub(charged),
            earlier,
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
                earlier: vec![(client(1), 1)]
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
                    earlier: vec![]
                }
            ))
        );
        assert_eq!(frames.let_go_socket_ended(conn), None, "reported once");
        // Nothing in flight: nothing to follow.
        frames.socket_let_go(conn, Some((key, client(1))), 0);
        assert_eq!(frames.let_go_socket_ended(conn), None);
    }
}
