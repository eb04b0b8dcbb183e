//! The queue from the hub to one WebSocket connection's task: the commands waiting to be
//! written ([`ConnCommand`]) and the waker of the task that writes them. The WebSocket code
//! consumes it; this file does not depend on it.
//!
//! A general-purpose channel (async-channel) costs ~2 KB per connection once used (its block
//! and cache-padded counters) and an event-listener notification per frame. A connection has
//! exactly one consumer and its producers already serialise on the hub lock, so a mutex over a
//! queue and one stored waker is all it needs. `push` hands the waker back instead of waking,
//! so the hub wakes tasks after it has released its lock.
//!
//! The queue keeps its oldest command inline and only the ones behind it in a `VecDeque`: an
//! idle connection is handed one command at a time (its welcome, a reply, an occasional
//! frame), and a `VecDeque` keeps the capacity of its first push — 160 bytes — for the
//! connection's whole life.

use async_tungstenite::tungstenite::Utf8Bytes;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

/// What the writer of one connection is told to do.
#[derive(Debug)]
pub enum ConnCommand {
    /// Send a text frame. `Utf8Bytes` is reference-counted: a frame published to many
    /// connections is shared, not copied, until tungstenite writes it.
    Text(Utf8Bytes),
    /// Send a binary frame (the echo server only).
    Binary(Vec<u8>),
    /// Send a ping.
    Ping,
    /// Send a close frame and end the connection.
    Close {
        /// RFC 6455 code.
        code: u16,
        /// Reason text.
        reason: String,
        /// Drop the frames queued before it instead of writing them (see
        /// `livebridge_core::Output::WsClose`).
        abandon_unwritten: bool,
    },
}

/// Commands for one connection, and who to wake when they arrive.
#[derive(Debug, Default)]
pub struct Outbox {
    state: Mutex<OutboxState>,
}

#[derive(Debug, Default)]
struct OutboxState {
    commands: Commands,
    /// The task that found the outbox empty and waits for a command.
    waiting: Option<Waker>,
    /// The hub forgot this connection: no command will follow the queued ones.
    detached: bool,
    /// A close command was queued (or the outbox detached): the connection is ending.
    ending: bool,
    /// The task that waits, behind a full socket, only for the connection's end.
    end_waiter: Option<Waker>,
}

impl Outbox {
    /// An empty outbox.
    pub fn new() -> Arc<Outbox> {
        Arc::new(Outbox::default())
    }

    fn lock(&self) -> MutexGuard<'_, OutboxState> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Queues `command`. Returns the waker of the waiting task, to be woken once the
    /// caller's own locks are released; `None` when the task is already awake (or gone).
    #[must_use = "the returned waker must be woken, or the command waits for the next one"]
    pub fn push(&self, command: ConnCommand) -> Option<Waker> {
        let mut state = self.lock();
        if state.detached {
            return None;
        }
        let closes = matches!(command, ConnCommand::Close { .. });
        if let ConnCommand::Close {
            abandon_unwritten: true,
            ..
        } = command
        {
            // Never written, never reported written: the engine counts them as dropped.
            state
                .commands
                .retain(|queued| !matches!(queued, ConnCommand::Text(_) | ConnCommand::Binary(_)));
        }
        state.commands.push_back(command);
        let waiting = state.waiting.take();
        if closes {
            state.ending = true;
            return waiting.or_else(|| state.end_waiter.take());
        }
        waiting
    }

    /// Marks the end of the commands: once the queued ones are taken, [`Outbox::poll_next`]
    /// answers `None`. Returns the waker to wake, as [`Outbox::push`] does.
    #[must_use = "the returned waker must be woken, or the task never sees the end"]
    pub fn detach(&self) -> Option<Waker> {
        let mut state = self.lock();
        state.detached = true;
        state.ending = true;
        let waiting = state.waiting.take();
        waiting.or_else(|| state.end_waiter.take())
    }

    /// The next command; `Ready(None)` after [`Outbox::detach`] once the queue is empty.
    pub fn poll_next(&self, cx: &mut Context<'_>) -> Poll<Option<ConnCommand>> {
        let mut state = self.lock();
        if let Some(command) = state.commands.pop_front() {
            return Poll::Ready(Some(command));
        }
        if state.detached {
            return Poll::Ready(None);
        }
        match &mut state.waiting {
            Some(waker) if waker.will_wake(cx.waker()) => {}
            slot => *slot = Some(cx.waker().clone()),
        }
        Poll::Pending
    }

    /// Whether a close command was queued or the outbox detached, even if commands before
    /// it are still waiting; if not, the task is woken when that happens. A connection whose
    /// socket is full takes no commands, so this is how it learns of its end.
    pub fn poll_ending(&self, cx: &mut Context<'_>) -> bool {
        let mut state = self.lock();
        if state.ending {
            return true;
        }
        match &mut state.end_waiter {
            Some(waker) if waker.will_wake(cx.waker()) => {}
            slot => *slot = Some(cx.waker().clone()),
        }
        false
    }

    /// The next command if one is queued, without registering for a wake-up.
    pub fn try_next(&self) -> Option<ConnCommand> {
        self.lock().commands.pop_front()
    }
}

/// Commands in order: the oldest inline, the rest (allocated only when one waits behind
/// another) in a `VecDeque`.
#[derive(Debug, Default)]
struct Commands {
    /// The oldest command; `None` only when `behind` is empty too.
    first: Option<ConnCommand>,
    behind: VecDeque<ConnCommand>,
}

impl Commands {
    fn push_back(&mut self, command: ConnCommand) {
        if self.first.is_none() {
            self.first = Some(command);
        } else {
            self.behind.push_back(command);
        }
    }

    fn pop_front(&mut self) -> Option<ConnCommand> {
        let first = self.first.take()?;
        self.first = self.behind.pop_front();
        Some(first)
    }

    /// Keeps the commands for which `keep` is true, in order.
    fn retain(&mut self, mut keep: impl FnMut(&ConnCommand) -> bool) {
        self.behind.retain(&mut keep);
        if self.first.as_ref().is_some_and(|first| !keep(first)) {
            self.first = self.behind.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::Wake;

    struct CountingWaker(AtomicUsize);

    impl Wake for CountingWaker {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn text(s: &str) -> ConnCommand {
        ConnCommand::Text(s.into())
    }

    #[test]
    fn a_waiting_task_is_handed_back_once_and_commands_keep_their_order() {
        let outbox = Outbox::new();
        let counter = Arc::new(CountingWaker(AtomicUsize::new(0)));
        let waker = Waker::from(Arc::clone(&counter));
        let mut cx = Context::from_waker(&waker);
        assert!(outbox.poll_next(&mut cx).is_pending());
        let woken = outbox.push(text("a"));
        assert!(
            woken.is_some(),
            "the first push after a wait returns the waker"
        );
        assert!(
            outbox.push(text("b")).is_none(),
            "the task is already woken"
        );
        woken.unwrap().wake();
        assert_eq!(counter.0.load(Ordering::SeqCst), 1);
        for expected in ["a", "b"] {
            match outbox.poll_next(&mut cx) {
                Poll::Ready(Some(ConnCommand::Text(t))) => assert_eq!(t.as_str(), expected),
                other => panic!("expected {expected}, got {other:?}"),
            }
        }
        assert!(outbox.poll_next(&mut cx).is_pending());
    }

    #[test]
    fn a_close_that_abandons_unwritten_frames_goes_out_first() {
        let outbox = Outbox::new();
        let _ = outbox.push(text("a"));
        let _ = outbox.push(ConnCommand::Ping);
        let _ = outbox.push(text("b"));
        let _ = outbox.push(ConnCommand::Close {
            code: 1008,
            reason: "slow".to_string(),
            abandon_unwritten: true,
        });
        assert!(matches!(outbox.try_next(), Some(ConnCommand::Ping)));
        assert!(matches!(
            outbox.try_next(),
            Some(ConnCommand::Close { code: 1008, .. })
        ));
        assert!(outbox.try_next().is_none());
    }

    #[test]
    fn commands_keep_their_order_across_the_inline_slot_and_allocate_only_when_queued_behind() {
        let mut commands = Commands::default();
        commands.push_back(text("a"));
        assert_eq!(
            commands.behind.capacity(),
            0,
            "one command at a time allocates nothing"
        );
        assert!(matches!(commands.pop_front(), Some(ConnCommand::Text(t)) if t.as_str() == "a"));
        for s in ["b", "c", "d"] {
            commands.push_back(text(s));
        }
        commands.push_back(ConnCommand::Ping);
        commands.push_back(text("e"));
        commands.retain(
            |c| !matches!(c, ConnCommand::Text(t) if t.as_str() == "b" || t.as_str() == "d"),
        );
        let order: Vec<String> = std::iter::from_fn(|| commands.pop_front())
            .map(|c| match c {
                ConnCommand::Text(t) => t.as_str().to_string(),
                ConnCommand::Ping => "ping".to_string(),
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        assert_eq!(order, ["c", "ping", "e"]);
        assert!(commands.pop_front().is_none());
    }

    #[test]
    fn detach_drains_the_queue_then_ends_and_refuses_later_commands() {
        let outbox = Outbox::new();
        let waker = Waker::from(Arc::new(CountingWaker(AtomicUsize::new(0))));
        let mut cx = Context::from_waker(&waker);
        assert!(outbox.push(text("last")).is_none(), "nobody waits yet");
        assert!(outbox.detach().is_none());
        assert!(outbox.push(text("too late")).is_none());
        assert!(matches!(outbox.poll_next(&mut cx), Poll::Ready(Some(_))));
        assert!(matches!(outbox.poll_next(&mut cx), Poll::Ready(None)));
        assert!(outbox.try_next().is_none());
    }

    #[test]
    fn a_task_waiting_only_for_the_end_is_woken_by_a_close_and_not_by_frames() {
        let outbox = Outbox::new();
        let waker = Waker::from(Arc::new(CountingWaker(AtomicUsize::new(0))));
        let mut cx = Context::from_waker(&waker);
        assert!(!outbox.poll_ending(&mut cx));
        assert!(
            outbox.push(text("frame")).is_none(),
            "frames do not wake it"
        );
        let close = ConnCommand::Close {
            code: 1000,
            reason: String::new(),
            abandon_unwritten: false,
        };
        assert!(outbox.push(close).is_some(), "a close wakes it");
        assert!(
            outbox.poll_ending(&mut cx),
            "and is visible before it is taken"
        );

        let detached = Outbox::new();
        assert!(!detached.poll_ending(&mut cx));
        assert!(detached.detach().is_some(), "detaching wakes it too");
        assert!(detached.poll_ending(&mut cx));
    }
}
