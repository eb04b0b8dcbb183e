//! The queue from the hub to one WebSocket connection's task: the commands waiting to be
//! written ([`ConnCommand`]) and the waker of the task that writes them — and, when the
//! connection's socket is attached, the right to write text frames to it directly, without
//! waking the task. The WebSocket code consumes it; this file does not depend on it.
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
//!
//! **Direct writes ("corking", as uWebSockets calls its version).** Waking a connection's task
//! for each frame costs a cross-thread wake-up, a poll, a copy into tungstenite's buffer and a
//! second trip through the hub lock to report the frame written — most of a delivery's cost
//! besides the `send()` itself, at rates where nothing batches. So while the task is parked
//! with nothing of its own to write ([`Outbox::park_idle`]), the hub's fan-out task writes
//! the queued text frames to the socket itself ([`Outbox::write_queued`]), framed as
//! tungstenite would frame them, all that accumulated in one `send()`. Only a socket that
//! would block, or a command other than a text frame, goes back to the task. The rules that
//! keep the byte stream whole:
//!
//! - direct writes happen only under this outbox's lock and only while the task is parked
//!   idle; the task clears the state under the same lock before it touches the socket
//!   ([`Outbox::begin_turn`]), so the two never write at once, and frames keep their order
//!   because the task parks idle only with its queue empty and tungstenite's buffer flushed;
//! - a frame the socket took only part of is finished before any other byte: its rest waits
//!   here ([`Outbox::poll_write_unsent`]), and the task's socket writes it before anything
//!   tungstenite writes (a pong included), and counts the frame written once it is.

use async_tungstenite::tungstenite::Utf8Bytes;
use async_tungstenite::tungstenite::protocol::frame::FrameHeader;
use async_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use futures_lite::AsyncWrite;
use smol::Async;
use std::collections::VecDeque;
use std::io::{self, Write};
use std::net::TcpStream;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker, ready};

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
    /// The task is parked with nothing of its own to write: text frames may be written to
    /// `socket` directly.
    writer_idle: bool,
    /// The connection's socket, for direct writes (`None`: every command goes to the task).
    socket: Option<Arc<Async<TcpStream>>>,
    /// The rest of a directly written frame the socket took only part of.
    unsent: Option<Box<Unsent>>,
}

/// Bytes of a frame that must reach the socket before any other.
#[derive(Debug)]
struct Unsent {
    bytes: Vec<u8>,
    /// How many of `bytes` are written.
    written: usize,
    /// Frames that end in `bytes`, not yet counted by the task among its unflushed ones
    /// (0 once counted).
    frames: usize,
}

/// What the caller of [`Outbox::push`] must do next.
#[derive(Debug)]
#[must_use = "a waker must be woken, and a direct write must be made, or the command waits"]
pub enum Handoff {
    /// Nothing: the task is awake, or the command is already someone else's to write.
    Nothing,
    /// Wake this task (once the caller's own locks are released).
    Wake(Waker),
    /// Call [`Outbox::write_queued`] (once the caller's own locks are released).
    WriteDirectly,
}

/// What [`Outbox::write_queued`] did.
#[derive(Debug, Default)]
#[must_use = "written frames must be reported, and the waker woken"]
pub struct DirectWrite {
    /// Text frames now wholly in the socket's send buffer.
    pub written: usize,
    /// The task, when it has to take over.
    pub wake: Option<Waker>,
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

    /// Lets whoever queues text frames write them to `socket` directly while the task is
    /// parked idle (see the module comment).
    pub fn attach_socket(&self, socket: Arc<Async<TcpStream>>) {
        self.lock().socket = Some(socket);
    }

    /// Queues `command` and says what the caller must do next: wake the task, or write the
    /// queue directly, in both cases once the caller's own locks are released.
    pub fn push(&self, command: ConnCommand) -> Handoff {
        let mut state = self.lock();
        if state.detached {
            return Handoff::Nothing;
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
        let direct = state.writer_idle && matches!(command, ConnCommand::Text(_));
        let first = state.commands.is_empty();
        state.commands.push_back(command);
        if direct {
            // The push that found the queue empty is the one whose caller writes it out.
            return if first {
                Handoff::WriteDirectly
            } else {
                Handoff::Nothing
            };
        }
        state.writer_idle = false;
        let waiting = state.waiting.take();
        let waiting = if closes {
            state.ending = true;
            waiting.or_else(|| state.end_waiter.take())
        } else {
            waiting
        };
        waiting.map_or(Handoff::Nothing, Handoff::Wake)
    }

    /// Writes the queued text frames to the socket, if the task is still parked idle, all of
    /// them with one `send()`; hands the rest to the task when the socket would block or a
    /// command is not a text frame.
    pub fn write_queued(&self) -> DirectWrite {
        let mut state = self.lock();
        let mut done = DirectWrite::default();
        // Taken out for the loop (the queue is mutated beside it) and put back after.
        if state.writer_idle
            && let Some(socket) = state.socket.take()
        {
            while state.unsent.is_none() {
                let (frames, bytes) = state.commands.leading_text_frames(MAX_DIRECT_WRITE_BYTES);
                if frames == 0 {
                    break;
                }
                let mut batch = FrameBatch::with_room_for(bytes);
                for _ in 0..frames {
                    if let Some(ConnCommand::Text(text)) = state.commands.pop_front() {
                        batch.push(&text);
                    }
                }
                match batch.send(socket.get_ref()) {
                    Ok(sent) if sent == batch.len() => done.written += frames,
                    // The frames not wholly sent (all of them when the socket would block, or
                    // failed: the task learns of that from its own write) go first when the
                    // task writes next.
                    result => {
                        let sent = result.unwrap_or(0);
                        let whole = batch.frames_ending_within(sent);
                        done.written += whole;
                        state.unsent = Some(Box::new(Unsent {
                            bytes: batch.rest(sent),
                            written: 0,
                            frames: frames - whole,
                        }));
                    }
                }
            }
            state.socket = Some(socket);
            if state.commands.is_empty() && state.unsent.is_none() {
                return done;
            }
        }
        // The task takes over: it may have been parked idle when the frames were queued, and
        // then nobody woke it.
        state.writer_idle = false;
        done.wake = state.waiting.take();
        done
    }

    /// The task starts a turn: no direct write may happen until it parks idle again. Returns
    /// how many frames it must now count as its own unflushed ones (a frame the socket took
    /// only part of, whose rest its socket writes first).
    pub fn begin_turn(&self) -> usize {
        let mut state = self.lock();
        state.writer_idle = false;
        state
            .unsent
            .as_mut()
            .map_or(0, |unsent| std::mem::take(&mut unsent.frames))
    }

    /// The task parks with tungstenite's buffer flushed: if nothing is queued or unsent and
    /// the connection is not ending, text frames may be written directly until its next turn.
    pub fn park_idle(&self) {
        let mut state = self.lock();
        state.writer_idle = state.socket.is_some()
            && state.commands.is_empty()
            && state.unsent.is_none()
            && !state.ending;
    }

    /// Writes the rest of a partly written frame, if any, to `socket`: the task's socket calls
    /// it before each of its own writes. `Ready(Ok)` once nothing is left.
    pub fn poll_write_unsent(
        &self,
        cx: &mut Context<'_>,
        socket: &Async<TcpStream>,
    ) -> Poll<io::Result<()>> {
        let mut state = self.lock();
        while let Some(unsent) = &mut state.unsent {
            if unsent.written == unsent.bytes.len() {
                state.unsent = None;
                break;
            }
            let rest = &unsent.bytes[unsent.written..];
            match ready!(Pin::new(&mut &*socket).poll_write(cx, rest)) {
                Ok(0) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Ok(n) => unsent.written += n,
                Err(error) => return Poll::Ready(Err(error)),
            }
        }
        Poll::Ready(Ok(()))
    }

    /// Marks the end of the commands: once the queued ones are taken, [`Outbox::poll_next`]
    /// answers `None`. Returns the waker to wake, as [`Outbox::push`] does.
    #[must_use = "the returned waker must be woken, or the task never sees the end"]
    pub fn detach(&self) -> Option<Waker> {
        let mut state = self.lock();
        state.detached = true;
        state.ending = true;
        state.writer_idle = false;
        let waiting = state.waiting.take();
        waiting.or_else(|| state.end_waiter.take())
    }

    /// The next command; `Ready(None)` after [`Outbox::detach`] once the queue is empty.
    pub fn poll_next(&self, cx: &mut Context<'_>) -> Poll<Option<ConnCommand>> {
        let mut state = self.lock();
        if let Some(command) = state.commands.pop_front() {
            state.writer_idle = false;
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

/// The most bytes one direct write gathers (frames beyond are written by the next one).
const MAX_DIRECT_WRITE_BYTES: usize = 64 * 1024;

/// The longest head of a server's frame: two bytes and a 64-bit length (RFC 6455 §5.2).
const MAX_HEAD_BYTES: usize = 10;

thread_local! {
    /// The buffer this thread's direct writes encode into, kept between writes: a write
    /// allocates nothing and zeroes nothing once the buffer has grown to its batches' size.
    static BATCH_BUFFER: std::cell::Cell<Vec<u8>> = const { std::cell::Cell::new(Vec::new()) };
}

/// Text frames encoded back to back, as a server sends them: unmasked, final.
struct FrameBatch {
    bytes: Vec<u8>,
}

impl FrameBatch {
    /// An empty batch for frames of `bytes` in all, heads counted at their longest.
    fn with_room_for(bytes: usize) -> FrameBatch {
        let mut buffer = BATCH_BUFFER.take();
        buffer.clear();
        buffer.reserve(bytes);
        FrameBatch { bytes: buffer }
    }

    fn push(&mut self, text: &Utf8Bytes) {
        let header = FrameHeader {
            opcode: OpCode::Data(Data::Text),
            ..FrameHeader::default()
        };
        // Into a `Vec`: cannot fail.
        let _ = header.format(text.len() as u64, &mut self.bytes);
        self.bytes.extend_from_slice(text.as_bytes());
    }

    fn len(&self) -> usize {
        self.bytes.len()
    }

    /// One non-blocking `send()` of the whole batch; how many bytes the socket took.
    fn send(&self, socket: &TcpStream) -> io::Result<usize> {
        let mut socket = socket;
        loop {
            match socket.write(&self.bytes) {
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                result => return result,
            }
        }
    }

    /// How many frames lie wholly within the first `sent` bytes (read back from their heads:
    /// this is needed only when the socket took part of a batch).
    fn frames_ending_within(&self, sent: usize) -> usize {
        let mut cursor = io::Cursor::new(&self.bytes[..]);
        let mut frames = 0;
        while let Ok(Some((_, length))) = FrameHeader::parse(&mut cursor) {
            let end = cursor.position() + length;
            if end > sent as u64 {
                break;
            }
            cursor.set_position(end);
            frames += 1;
        }
        frames
    }

    /// The bytes after the first `sent`.
    fn rest(&self, sent: usize) -> Vec<u8> {
        self.bytes[sent..].to_vec()
    }
}

impl Drop for FrameBatch {
    /// Gives the buffer back to the thread, unless an unusually large batch grew it.
    fn drop(&mut self) {
        if self.bytes.capacity() <= 2 * MAX_DIRECT_WRITE_BYTES {
            BATCH_BUFFER.set(std::mem::take(&mut self.bytes));
        }
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

    fn is_empty(&self) -> bool {
        self.first.is_none()
    }

    /// How many text frames lead the queue, counting while they fit in `max_bytes` (at least
    /// one, if the first command is a text frame).
    /// Also returns their size with heads counted at their longest.
    fn leading_text_frames(&self, max_bytes: usize) -> (usize, usize) {
        let mut bytes = 0;
        let mut count = 0;
        for command in self.first.iter().chain(self.behind.iter()) {
            let ConnCommand::Text(text) = command else {
                break;
            };
            let size = text.len() + MAX_HEAD_BYTES;
            if count > 0 && bytes + size > max_bytes {
                break;
            }
            bytes += size;
            count += 1;
        }
        (count, bytes)
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

    /// The waker a push hands back; these outboxes have no socket, so nothing is written
    /// directly.
    fn woken(handoff: Handoff) -> Option<Waker> {
        match handoff {
            Handoff::Nothing => None,
            Handoff::Wake(waker) => Some(waker),
            Handoff::WriteDirectly => panic!("no socket is attached"),
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
        let first = woken(outbox.push(text("a")));
        assert!(
            first.is_some(),
            "the first push after a wait returns the waker"
        );
        assert!(
            woken(outbox.push(text("b"))).is_none(),
            "the task is already woken"
        );
        first.unwrap().wake();
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
        assert!(
            woken(outbox.push(text("last"))).is_none(),
            "nobody waits yet"
        );
        assert!(outbox.detach().is_none());
        assert!(woken(outbox.push(text("too late"))).is_none());
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
            woken(outbox.push(text("frame"))).is_none(),
            "frames do not wake it"
        );
        let close = ConnCommand::Close {
            code: 1000,
            reason: String::new(),
            abandon_unwritten: false,
        };
        assert!(woken(outbox.push(close)).is_some(), "a close wakes it");
        assert!(
            outbox.poll_ending(&mut cx),
            "and is visible before it is taken"
        );

        let detached = Outbox::new();
        assert!(!detached.poll_ending(&mut cx));
        assert!(detached.detach().is_some(), "detaching wakes it too");
        assert!(detached.poll_ending(&mut cx));
    }

    /// A connected pair: the server side as the outbox holds it, and the client side.
    fn socket_pair() -> (Arc<Async<TcpStream>>, TcpStream) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        // A read that waits for frames that never come fails instead of hanging.
        client
            .set_read_timeout(Some(std::time::Duration::from_secs(30)))
            .unwrap();
        let (server, _) = listener.accept().unwrap();
        (Arc::new(Async::new(server).unwrap()), client)
    }

    #[test]
    fn text_frames_for_a_parked_task_are_written_directly_and_anything_else_wakes_it() {
        let (socket, mut client) = socket_pair();
        let outbox = Outbox::new();
        outbox.attach_socket(socket);
        let counter = Arc::new(CountingWaker(AtomicUsize::new(0)));
        let waker = Waker::from(Arc::clone(&counter));
        let mut cx = Context::from_waker(&waker);

        // Before the task parks idle, frames go to the task.
        assert!(outbox.poll_next(&mut cx).is_pending());
        assert!(matches!(outbox.push(text("queued")), Handoff::Wake(_)));
        assert!(matches!(outbox.poll_next(&mut cx), Poll::Ready(Some(_))));
        assert!(outbox.poll_next(&mut cx).is_pending());
        outbox.park_idle();

        // Parked: the first push's caller writes the queue, the second only joins it.
        assert!(matches!(outbox.push(text("one")), Handoff::WriteDirectly));
        assert!(matches!(outbox.push(text("two")), Handoff::Nothing));
        let direct = outbox.write_queued();
        assert_eq!((direct.written, direct.wake.is_some()), (2, false));
        let mut frames = [0u8; 10];
        std::io::Read::read_exact(&mut client, &mut frames).unwrap();
        assert_eq!(
            &frames, b"\x81\x03one\x81\x03two",
            "two unmasked final text frames"
        );

        // A ping is the task's to write: it is woken, and direct writes stop until it parks.
        assert!(matches!(outbox.push(ConnCommand::Ping), Handoff::Wake(_)));
        assert!(matches!(outbox.push(text("three")), Handoff::Nothing));
        let direct = outbox.write_queued();
        assert_eq!((direct.written, direct.wake.is_some()), (0, false));
        assert_eq!(outbox.begin_turn(), 0, "no frame was left half written");
        assert!(matches!(
            outbox.poll_next(&mut cx),
            Poll::Ready(Some(ConnCommand::Ping))
        ));
        assert!(matches!(
            outbox.poll_next(&mut cx),
            Poll::Ready(Some(ConnCommand::Text(_)))
        ));

        // A close, even for a parked task, is the task's.
        assert!(outbox.poll_next(&mut cx).is_pending());
        outbox.park_idle();
        let close = ConnCommand::Close {
            code: 1000,
            reason: String::new(),
            abandon_unwritten: false,
        };
        assert!(matches!(outbox.push(close), Handoff::Wake(_)));
        outbox.park_idle();
        assert!(
            matches!(outbox.push(text("late")), Handoff::Nothing),
            "an ending connection is not written directly"
        );
    }

    #[test]
    fn a_batch_cut_anywhere_says_which_frames_were_sent_whole_and_keeps_the_rest() {
        let texts = ["a".repeat(3), "b".repeat(200), "c".repeat(70_000)];
        let mut batch = FrameBatch::with_room_for(texts.iter().map(|t| t.len() + 10).sum());
        for text in &texts {
            batch.push(&Utf8Bytes::from(text.as_str()));
        }
        // Heads: 2 bytes up to 125, 4 up to 65 535, 10 beyond.
        let ends = [2 + 3, 2 + 3 + 4 + 200, 2 + 3 + 4 + 200 + 10 + 70_000];
        assert_eq!(batch.len(), ends[2]);
        for (cut, whole) in [
            (0, 0),
            (4, 0),
            (5, 1),
            (6, 1),
            (208, 1),
            (209, 2),
            (ends[2] - 1, 2),
        ] {
            assert_eq!(batch.frames_ending_within(cut), whole, "cut at {cut}");
        }
        assert_eq!(batch.frames_ending_within(ends[2]), 3);
        let rest = batch.rest(6);
        assert_eq!(
            &rest[..3],
            b"\x7e\x00\xc8",
            "the rest of the second head: 126, then 200"
        );
        assert_eq!(rest.len(), ends[2] - 6);
    }
}
