//! The engine on real time: one `livebridge_core::Engine` behind a mutex, the dispatch of its
//! outputs to waiting HTTP requests and WebSocket writers, and the timer task that calls
//! `handle_timeout` at `poll_timeout`.
//!
//! Every input follows the same steps: under the lock, feed it with the current time, drain
//! `poll_output` into reply slots and connection outboxes, re-arm the timer if the next
//! deadline moved earlier; then, with the lock released, wake the connection tasks that got
//! work, and hand the connections whose tasks are parked idle to the fan-out task, which
//! writes their frames to their sockets directly (see `outbox.rs`) and reports them written
//! to the engine, under the lock once more, for all of them together. No protocol rule lives
//! here.

use crate::broker::{BrokerHandle, ClusterIdentity};
use crate::forward::ForwardJob;
use crate::outbox::{ConnCommand, Handoff, Outbox};
use crate::websocket::{Incoming, WsPeer};
use async_channel::{Receiver, Sender};
use async_tungstenite::tungstenite::Utf8Bytes;
use livebridge_core::{
    ConnId, Engine, HttpRequest, Input, Output, Reply, RequestId, Time, TransportEvent,
};
use livebridge_runtime_support::store::StoreHandle;
use livebridge_runtime_support::{MonotonicClock, OsRandomIds, log_session_event};
use rustc_hash::FxHashMap;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::task::Waker;
use tracing::debug;

struct HubState {
    engine: Engine,
    /// Requests waiting for their reply.
    replies: FxHashMap<RequestId, Sender<Reply>>,
    /// The outboxes of open WebSocket connections.
    conns: FxHashMap<ConnId, Arc<Outbox>>,
    /// Connection tasks to wake once the lock is released.
    to_wake: Vec<Waker>,
    /// Outboxes to write directly once the lock is released.
    to_write: Vec<(ConnId, Arc<Outbox>)>,
    /// The last frame dispatched and its reference-counted bytes: the engine emits one
    /// publish's frames to all recipients in a row, so this turns one `Arc<str>` into one
    /// shared buffer instead of a copy per recipient.
    last_frame: Option<(Arc<str>, Utf8Bytes)>,
    next_request: u64,
    next_conn: u64,
    /// The deadline the timer task sleeps until.
    armed: Option<Time>,
    /// Where channel events go to be stored, when history is durable.
    store: Option<StoreHandle>,
    /// The broker task, in cluster mode.
    broker: Option<BrokerHandle>,
    /// Where requests naming another node's sessions go, in cluster mode.
    forwarder: Option<Sender<ForwardJob>>,
}

/// What the dispatch left to do once the hub lock is released.
struct Handed {
    to_wake: Vec<Waker>,
    to_write: Vec<(ConnId, Arc<Outbox>)>,
}

/// The engine shared by every connection.
pub struct Hub {
    state: Mutex<HubState>,
    clock: MonotonicClock,
    timer_kick: Sender<()>,
    timer_kicked: Receiver<()>,
    /// WebSocket connections accepted and not yet ended (their close handshake included).
    websockets: AtomicUsize,
    /// Cluster mode: the key forwarded requests carry.
    identity: Arc<ClusterIdentity>,
    /// Where the fan-out task runs (without it, direct writes are made inline).
    fan_out: OnceLock<FanOutExecutor>,
    /// Connections whose queued frames the fan-out task is to write.
    fan_out_queue: Mutex<FanOutQueue>,
    /// The hub itself, for the fan-out task.
    me: Weak<Hub>,
}

struct FanOutExecutor {
    executor: Arc<smol::Executor<'static>>,
    /// How many threads run it.
    threads: usize,
}

#[derive(Default)]
struct FanOutQueue {
    pending: Vec<(ConnId, Arc<Outbox>)>,
    /// A fan-out task is running (and will see what is added to `pending`).
    running: bool,
}

/// A fan-out to at least this many connections is split across two executor threads.
const SHARED_FAN_OUT_MIN: usize = 128;

impl Hub {
    /// A hub around a new engine with `config`.
    pub fn new(config: livebridge_core::Config) -> Arc<Hub> {
        let clock = MonotonicClock::start();
        let (anchor, unix_millis) = clock.anchor();
        let engine = Engine::new(config, OsRandomIds, anchor, unix_millis);
        let (timer_kick, timer_kicked) = async_channel::bounded(1);
        Arc::new_cyclic(|me| Hub {
            state: Mutex::new(HubState {
                engine,
                replies: FxHashMap::default(),
                conns: FxHashMap::default(),
                to_wake: Vec::new(),
                to_write: Vec::new(),
                last_frame: None,
                next_request: 0,
                next_conn: 0,
                armed: None,
                store: None,
                broker: None,
                forwarder: None,
            }),
            identity: Arc::new(ClusterIdentity::default()),
            clock,
            timer_kick,
            timer_kicked,
            websockets: AtomicUsize::new(0),
            fan_out: OnceLock::new(),
            fan_out_queue: Mutex::new(FanOutQueue::default()),
            me: me.clone(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, HubState> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Feeds one input and carries out what the engine asks.
    pub fn input(&self, input: Input) {
        self.with_engine(|state, now| state.engine.handle_input(now, input));
    }

    /// Runs `step` on the engine under the lock with the current time, carries out the
    /// outputs, then, with the lock released, writes idle connections' frames directly and
    /// wakes the connections that got other work.
    fn with_engine<R>(&self, step: impl FnOnce(&mut HubState, Time) -> R) -> R {
        let (result, handed) = self.locked_step(step);
        self.carry_out(handed);
        result
    }

    /// Wakes the tasks the dispatch left to wake, and has the direct writes it left made:
    /// by the fan-out task when there is an executor, here otherwise.
    fn carry_out(&self, handed: Handed) {
        for task in handed.to_wake {
            task.wake();
        }
        if handed.to_write.is_empty() {
            return;
        }
        let Some(fan_out) = self.fan_out.get() else {
            self.write_directly(handed.to_write);
            return;
        };
        let mut queue = self.lock_fan_out();
        queue.pending.extend(handed.to_write);
        if !queue.running
            && let Some(hub) = self.me.upgrade()
        {
            queue.running = true;
            fan_out.executor.spawn(hub.run_fan_out()).detach();
        }
    }

    /// The fan-out task: writes the queued connections' frames until none are left.
    ///
    /// Writing on the publisher's own call would send every delivery on its own as soon as it
    /// is published: under load no frames would ever wait to share a `send()`. Here they wait
    /// while the task writes the connections before them (uWebSockets "corks" a socket for an
    /// event-loop turn for the same reason), so one `send()` carries as many frames as
    /// accumulated, and at low rates the wait is one task switch.
    async fn run_fan_out(self: Arc<Self>) {
        loop {
            let mut batch = {
                let mut queue = self.lock_fan_out();
                if queue.pending.is_empty() {
                    queue.running = false;
                    return;
                }
                std::mem::take(&mut queue.pending)
            };
            if batch.len() >= SHARED_FAN_OUT_MIN
                && let Some(fan_out) = self.fan_out.get()
                && fan_out.threads > 1
            {
                // Many connections at once: another executor thread writes half of them, so
                // the last recipient waits half as long.
                let half = batch.split_off(batch.len() / 2);
                let hub = Arc::clone(&self);
                fan_out
                    .executor
                    .spawn(async move { hub.write_directly(half) })
                    .detach();
            }
            self.write_directly(batch);
            futures_lite::future::yield_now().await;
        }
    }

    /// Writes the frames queued in `outboxes` to their sockets and reports those written to
    /// the engine, all in one lock.
    fn write_directly(&self, outboxes: Vec<(ConnId, Arc<Outbox>)>) {
        let mut written = Vec::new();
        for (conn, outbox) in outboxes {
            let direct = outbox.write_queued();
            if direct.written > 0 {
                written.push((conn, direct.written));
            }
            if let Some(task) = direct.wake {
                task.wake();
            }
        }
        if written.is_empty() {
            return;
        }
        // Not through `Input`: as frequent as deliveries, and cheaper this way. It may
        // release more frames (a write window that was full), written the same way.
        let ((), handed) = self.locked_step(|state, now| {
            for (conn, frames) in written {
                state.engine.frames_written(now, conn, frames);
            }
        });
        self.carry_out(handed);
    }

    /// Has the fan-out written by a task on `executor`, `threads` of whose threads share it
    /// (see `run_fan_out`).
    pub fn fan_out_on(&self, executor: Arc<smol::Executor<'static>>, threads: usize) {
        let _ = self.fan_out.set(FanOutExecutor { executor, threads });
    }

    fn lock_fan_out(&self) -> MutexGuard<'_, FanOutQueue> {
        self.fan_out_queue
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// `step` and the dispatch of its outputs, under the lock; returns what is to be done once
    /// the lock is released.
    fn locked_step<R>(&self, step: impl FnOnce(&mut HubState, Time) -> R) -> (R, Handed) {
        let mut state = self.lock();
        let now = self.clock.now();
        let result = step(&mut state, now);
        while let Some(output) = state.engine.poll_output() {
            dispatch(&mut state, output);
        }
        // The frame cache must not keep a published event alive after its dispatch.
        state.last_frame = None;
        let next = state.engine.poll_timeout().map(|(at, _)| at);
        if next.is_some() && (state.armed.is_none() || next < state.armed) {
            state.armed = next;
            let _ = self.timer_kick.try_send(());
        }
        let handed = Handed {
            to_wake: std::mem::take(&mut state.to_wake),
            to_write: std::mem::take(&mut state.to_write),
        };
        (result, handed)
    }

    /// Sends an HTTP request to the engine and waits for its reply. When `peer_gone`
    /// completes first (the client closed the connection during a long poll), the request is
    /// withdrawn and `None` returned.
    pub async fn request(
        &self,
        http: HttpRequest,
        peer_gone: impl Future<Output = ()>,
    ) -> Option<Reply> {
        let (tx, rx) = async_channel::bounded(1);
        let request = self.with_engine(|state, now| {
            state.next_request += 1;
            let request = RequestId(state.next_request);
            state.replies.insert(request, tx);
            state
                .engine
                .handle_input(now, Input::Http { request, http });
            request
        });
        if let Ok(reply) = rx.try_recv() {
            return Some(reply);
        }
        let reply = futures_lite::future::or(async { rx.recv().await.ok() }, async {
            peer_gone.await;
            None
        })
        .await;
        if reply.is_none() {
            let withdrawn = self.lock().replies.remove(&request).is_some();
            if withdrawn {
                debug!(%request, "client went away before its reply");
                self.input(Input::RequestAborted { request });
            }
        }
        reply
    }

    /// Asks the engine to accept a WebSocket. On success returns the connection's id and the
    /// outbox of the commands its task must carry out (starting with `connection_established`).
    pub fn open_websocket(&self, upgrade: HttpRequest) -> Result<(ConnId, Arc<Outbox>), Reply> {
        let outbox = Outbox::new();
        self.with_engine(|state, now| {
            state.next_conn += 1;
            let conn = ConnId(state.next_conn);
            state.conns.insert(conn, Arc::clone(&outbox));
            match state.engine.open_websocket(now, conn, &upgrade) {
                Ok(()) => {
                    self.websockets.fetch_add(1, Ordering::SeqCst);
                    Ok(conn)
                }
                Err(reply) => {
                    state.conns.remove(&conn);
                    Err(reply)
                }
            }
        })
        .map(|conn| (conn, outbox))
    }

    /// Hands channel events to `store` from now on (the engine must be durable).
    pub fn use_store(&self, store: StoreHandle) {
        self.lock().store = Some(store);
    }

    /// Hands broker commands to `broker` and requests naming other nodes' sessions to
    /// `forwarder` from now on (the engine must be clustered).
    pub fn use_broker(&self, broker: BrokerHandle, forwarder: Sender<ForwardJob>) {
        let mut state = self.lock();
        state.broker = Some(broker);
        state.forwarder = Some(forwarder);
    }

    /// Cluster mode: the cluster's key, as the broker task learns it.
    pub fn identity(&self) -> &Arc<ClusterIdentity> {
        &self.identity
    }

    /// The other nodes' parts of a cluster-wide view: the engine merges them and answers
    /// through the same reply slot.
    pub fn gathered(
        &self,
        request: RequestId,
        reply: Sender<Reply>,
        parts: Vec<livebridge_core::NodePart>,
        error: Option<String>,
    ) {
        self.with_engine(|state, now| {
            state.replies.insert(request, reply);
            state.engine.handle_input(
                now,
                Input::Gathered {
                    request,
                    parts,
                    error,
                },
            );
        });
    }

    /// A forwarded request could not reach its node: it goes back to the engine, which
    /// answers it through the same reply slot.
    pub fn forward_failed(
        &self,
        request: RequestId,
        reply: Sender<Reply>,
        http: Box<HttpRequest>,
        error: String,
    ) {
        self.with_engine(|state, now| {
            state.replies.insert(request, reply);
            state.engine.handle_input(
                now,
                Input::ForwardFailed {
                    request,
                    http,
                    error,
                },
            );
        });
    }

    /// Lets go of the store, so its writer stops once it has stored what is queued.
    pub fn take_store(&self) -> Option<StoreHandle> {
        self.lock().store.take()
    }

    /// Stops the engine: WebSockets get a 1001 close, pending polls their answer.
    pub fn shutdown(&self) {
        self.input(Input::Shutdown);
    }

    /// WebSocket connections that have not finished closing (for graceful shutdown).
    pub fn open_connections(&self) -> usize {
        self.websockets.load(Ordering::SeqCst)
    }

    /// Calls `handle_timeout` at each deadline the engine asks for, forever.
    pub async fn run_timers(self: Arc<Self>) {
        loop {
            let deadline = {
                let mut state = self.lock();
                let next = state.engine.poll_timeout().map(|(at, _)| at);
                state.armed = next;
                next
            };
            let kicked = self.timer_kicked.recv();
            match deadline {
                Some(at) => {
                    let timer = async {
                        smol::Timer::at(self.clock.instant(at)).await;
                    };
                    futures_lite::future::or(timer, async {
                        let _ = kicked.await;
                    })
                    .await;
                }
                None => {
                    let _ = kicked.await;
                }
            }
            self.with_engine(|state, now| {
                if state.engine.poll_timeout().is_some_and(|(at, _)| at <= now) {
                    state.engine.handle_timeout(now);
                }
            });
        }
    }
}

fn dispatch(state: &mut HubState, output: Output) {
    match output {
        Output::Reply { request, reply } => {
            if let Some(waiting) = state.replies.remove(&request) {
                let _ = waiting.try_send(reply);
            }
        }
        // The hub feeds HTTP requests only, never Input::Command.
        Output::CommandDone { .. } => {}
        Output::WsFrame { conn, frame } => {
            let text = match &state.last_frame {
                Some((last, bytes)) if Arc::ptr_eq(last, &frame) => bytes.clone(),
                _ => {
                    let bytes = Utf8Bytes::from(&*frame);
                    state.last_frame = Some((frame, bytes.clone()));
                    bytes
                }
            };
            send_to_conn(state, conn, ConnCommand::Text(text))
        }
        Output::WsPing { conn } => send_to_conn(state, conn, ConnCommand::Ping),
        Output::WsClose {
            conn,
            code,
            reason,
            abandon_unwritten,
        } => {
            let close = ConnCommand::Close {
                code,
                reason,
                abandon_unwritten,
            };
            send_to_conn(state, conn, close);
            if let Some(outbox) = state.conns.remove(&conn) {
                state.to_wake.extend(outbox.detach());
            }
        }
        Output::Session(event) => log_session_event(&event),
        Output::Persist(batch) => match &state.store {
            Some(store) => store.store(batch),
            // The engine asks only when it was told history is durable, which is when a
            // store was opened.
            None => tracing::error!("the engine asked to store a batch, but there is no store"),
        },
        Output::Broker(command) => match &state.broker {
            Some(broker) => broker.send(*command),
            // The engine asks only when it was told it is clustered, which is when a broker
            // task was started.
            None => tracing::error!("the engine asked for the broker, but there is none"),
        },
        Output::Forward {
            request,
            node,
            http,
        } => {
            // The client may have gone already: then there is nothing to relay.
            if let (Some(reply), Some(forwarder)) =
                (state.replies.remove(&request), &state.forwarder)
            {
                let _ = forwarder.try_send(ForwardJob {
                    request,
                    node: Some(node),
                    http,
                    reply,
                });
            }
        }
        Output::Gather { request, http } => {
            if let (Some(reply), Some(forwarder)) =
                (state.replies.remove(&request), &state.forwarder)
            {
                let _ = forwarder.try_send(ForwardJob {
                    request,
                    node: None,
                    http,
                    reply,
                });
            }
        }
    }
}

fn send_to_conn(state: &mut HubState, conn: ConnId, command: ConnCommand) {
    if let Some(outbox) = state.conns.get(&conn) {
        match outbox.push(command) {
            Handoff::Nothing => {}
            Handoff::Wake(task) => state.to_wake.push(task),
            Handoff::WriteDirectly => state.to_write.push((conn, Arc::clone(outbox))),
        }
    }
}

impl WsPeer for Hub {
    fn on_message(&self, conn: ConnId, message: Incoming) {
        self.input(message.into_input(conn));
    }

    fn on_written(&self, conn: ConnId, frames: usize) {
        // Not through `Input`: as frequent as deliveries, and cheaper this way.
        self.with_engine(|state, now| state.engine.frames_written(now, conn, frames));
    }

    fn on_closed(&self, conn: ConnId, code: Option<u16>) {
        self.with_engine(|state, now| {
            state.conns.remove(&conn);
            state
                .engine
                .handle_input(now, Input::WsClosed { conn, code });
        });
        self.websockets.fetch_sub(1, Ordering::SeqCst);
    }
}

impl crate::connection::Backend for Hub {
    fn http<'a>(
        &'a self,
        http: HttpRequest,
        peer_gone: crate::connection::BoxFuture<'a, ()>,
    ) -> crate::connection::BoxFuture<'a, Option<Reply>> {
        Box::pin(self.request(http, peer_gone))
    }

    fn open_websocket(&self, upgrade: HttpRequest) -> Result<(ConnId, Arc<Outbox>), Reply> {
        Hub::open_websocket(self, upgrade)
    }

    fn transport_event(&self, event: TransportEvent) {
        self.input(Input::Transport(event));
    }

    fn trusts_forwarded(&self, key: &str) -> bool {
        self.identity.trusts(key)
    }
}
