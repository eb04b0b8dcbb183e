//! Long polls held open: which request waits for which session, and which of them have
//! messages to answer with once the current input's work is done. Answering at the end of
//! the input, not at each message, lets a burst of messages leave in one reply.

use crate::ids::RequestId;
use crate::session::{Session, SessionKey};
use std::collections::BTreeMap;

#[derive(Debug, Default)]
pub(super) struct Polls {
    /// Polls held open, by request.
    waiting: BTreeMap<RequestId, SessionKey>,
    /// Sessions whose waiting poll has messages; each at most once (`Session::poll_ready`).
    ready: Vec<SessionKey>,
}

impl Polls {
    /// `request` waits for messages of `key`.
    pub(super) fn wait(&mut self, request: RequestId, key: SessionKey) {
        self.waiting.insert(request, key);
    }

    /// `request` no longer waits (answered or given up): the session it waited for.
    pub(super) fn stop_waiting(&mut self, request: RequestId) -> Option<SessionKey> {
        self.waiting.remove(&request)
    }

    /// A message reached `session` (at `key`) while its poll waits: answer it once this input
    /// is done.
    pub(super) fn mark_ready(&mut self, key: SessionKey, session: &mut Session) {
        if !session.poll_ready {
            session.poll_ready = true;
            self.ready.push(key);
        }
    }

    /// Whether some waiting poll has messages.
    #[inline]
    pub(super) fn any_ready(&self) -> bool {
        !self.ready.is_empty()
    }

    /// The sessions whose waiting polls have messages, in the order they got them. Each
    /// session's `poll_ready` is to be cleared by the caller as it answers.
    pub(super) fn take_ready(&mut self) -> Vec<SessionKey> {
        std::mem::take(&mut self.ready)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::TransportKind;
    use crate::rate::RateLimit;
    use crate::time::Time;

    #[test]
    fn a_session_is_ready_once_however_many_messages_reach_it() {
        let mut polls = Polls::default();
        let id = "00000000-0000-4000-8000-000000000001".parse().unwrap();
        let limit = RateLimit {
            per_second: 1.0,
            burst: 1,
        };
        let mut session = Session::new(
            id,
            "gui".into(),
            TransportKind::Polling,
            8,
            limit,
            Time::ZERO,
        );
        let key = SessionKey::for_tests(3, 0);
        polls.wait(RequestId(9), key);
        assert!(!polls.any_ready());
        polls.mark_ready(key, &mut session);
        polls.mark_ready(key, &mut session);
        assert!(polls.any_ready());
        assert_eq!(polls.take_ready(), [key]);
        assert!(!polls.any_ready());
        assert_eq!(polls.stop_waiting(RequestId(9)), Some(key));
        assert_eq!(polls.stop_waiting(RequestId(9)), None);
    }
}
