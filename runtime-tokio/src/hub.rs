//! The engine on tokio's clock: one `livebridge_core::Engine` behind a mutex, the dispatch of
//! its outputs to waiting requests and WebSocket outboxes, and the task that calls
//! `handle_timeout` at `poll_timeout`. No protocol rule lives here.

use crate::outbox::{ConnCommand, Outbox};
use livebridge_core::{
    Command, CommandError, CommandResult, ConnId, Engine, HttpRequest, Input, Output, Reply,
    RequestId, Time,
};
use livebridge_runtime_support::store::StoreHandle;
use livebridge_runtime_support::{MonotonicClock, OsRandomIds, log_session_event};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::{Notify, oneshot};
use tracing::debug;

/// Who waits for a request's answer.
enum Waiter {
    Http(oneshot::Sender<Reply>),
    Command(oneshot::Sender<Result<CommandResult, CommandError>>),
}

struct State {
    engine: Engine,
    waiters: HashMap<RequestId, Waiter>,
    conns: HashMap<ConnId, Arc<Outbox>>,
    next_request: u64,
    next_conn: u64,
    armed: Option<Time>,
    /// Where channel events go to be stored, when history is durable.
    store: Option<StoreHandle>,
}

/// The engine shared by every connection of one server.
pub struct Hub {
    state: Mutex<State>,
    clock: MonotonicClock,
    timer_kick: Notify,
}

impl Hub {
    /// A hub around a new engine with `config`.
    pub fn new(config: livebridge_core::Config) -> Arc<Hub> {
        let clock = MonotonicClock::start();
        let (anchor, unix_millis) = clock.anchor();
        Arc::new(Hub {
            state: Mutex::new(State {
                engine: Engine::new(config, OsRandomIds, anchor, unix_millis),
                waiters: HashMap::new(),
                conns: HashMap::new(),
                next_request: 0,
                next_conn: 0,
                armed: None,
                store: None,
            }),
            clock,
            timer_kick: Notify::new(),
        })
    }

    /// Hands channel events to `store` from now on (the engine must be durable).
    pub fn use_store(&self, store: StoreHandle) {
        self.lock().store = Some(store);
    }

    /// Lets go of the store, so its writer stops once it has stored what is queued.
    pub fn take_store(&self) -> Option<StoreHandle> {
        self.lock().store.take()
    }

    fn now(&self) -> Time {
        self.clock.now()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Runs `step` on the engine under the lock, carries out the outputs, and re-arms the
    /// timer when the next deadline moved earlier.
    fn with_engine<R>(&self, step: impl FnOnce(&mut State, Time) -> R) -> R {
        let mut state = self.lock();
        let now = self.now();
        let result = step(&mut state, now);
        while let Some(output) = state.engine.poll_output() {
            dispatch(&mut state, output);
        }
        let next = state.engine.poll_timeout().map(|(at, _)| at);
        if next.is_some() && (state.armed.is_none() || next < state.armed) {
            state.armed = next;
            self.timer_kick.notify_one();
        }
        result
    }

    /// Feeds one input and carries out what the engine asks.
    pub fn input(&self, input: Input) {
        self.with_engine(|state, now| state.engine.handle_input(now, input));
    }

    /// Sends an HTTP request to the engine and waits for its reply. Dropping the returned
    /// future (the client went away during a long poll) withdraws the request.
    pub async fn request(self: &Arc<Self>, http: HttpRequest) -> Reply {
        let (tx, rx) = oneshot::channel();
        let pending = self.submit(Waiter::Http(tx), |request| Input::Http { request, http });
        let reply = rx
            .await
            .unwrap_or_else(|_| Reply::error(503, "the server is shutting down"));
        pending.answered();
        reply
    }

    /// Runs a command as a trusted in-process caller (no HTTP routing, no Origin, Host or
    /// admin checks: see docs/embedding.md) and waits for its typed result.
    pub async fn command(
        self: &Arc<Self>,
        command: Command,
    ) -> Result<CommandResult, CommandError> {
        let (tx, rx) = oneshot::channel();
        let pending = self.submit(Waiter::Command(tx), |request| Input::Command {
            request,
            command,
        });
        let result = rx.await.unwrap_or_else(|_| {
            Err(CommandError::Unavailable(
                "the server is shutting down".to_string(),
            ))
        });
        pending.answered();
        result
    }

    fn submit(
        self: &Arc<Self>,
        waiter: Waiter,
        input: impl FnOnce(RequestId) -> Input,
    ) -> PendingReply {
        let request = self.with_engine(|state, now| {
            state.next_request += 1;
            let request = RequestId(state.next_request);
            state.waiters.insert(request, waiter);
            state.engine.handle_input(now, input(request));
            request
        });
        PendingReply {
            hub: Arc::clone(self),
            request,
            answered: false,
        }
    }

    /// Asks the engine to accept a WebSocket; on success, the connection's id and the outbox
    /// its commands arrive in (starting with `connection_established`).
    pub fn open_websocket(&self, upgrade: HttpRequest) -> Result<(ConnId, Arc<Outbox>), Reply> {
        let outbox = Outbox::new();
        self.with_engine(|state, now| {
            state.next_conn += 1;
            let conn = ConnId(state.next_conn);
            state.engine.open_websocket(now, conn, &upgrade)?;
            // Before the outputs are dispatched: connection_established goes to this outbox.
            state.conns.insert(conn, Arc::clone(&outbox));
            Ok(conn)
        })
        .map(|conn| (conn, outbox))
    }

    /// A WebSocket ended; `code` is the client's close code if it sent one.
    pub fn websocket_closed(&self, conn: ConnId, code: Option<u16>) {
        self.with_engine(|state, now| {
            state.conns.remove(&conn);
            state
                .engine
                .handle_input(now, Input::WsClosed { conn, code });
        });
    }

    /// Stops the engine: WebSockets get a 1001 close, pending polls their answer.
    pub fn shutdown(&self) {
        self.input(Input::Shutdown);
    }

    /// WebSocket connections the engine still has an outbox for.
    pub fn open_websockets(&self) -> usize {
        self.lock().conns.len()
    }

    /// Calls `handle_timeout` at each deadline the engine asks for, until the task is dropped.
    pub async fn run_timers(self: Arc<Self>) {
        loop {
            let deadline = {
                let mut state = self.lock();
                let next = state.engine.poll_timeout().map(|(at, _)| at);
                state.armed = next;
                next
            };
            match deadline {
                Some(at) => {
                    let when = self.clock.instant(at);
                    tokio::select! {
                        () = tokio::time::sleep_until(when.into()) => {}
                        () = self.timer_kick.notified() => {}
                    }
                }
                None => self.timer_kick.notified().await,
            }
            self.with_engine(|state, now| {
                if state.engine.poll_timeout().is_some_and(|(at, _)| at <= now) {
                    state.engine.handle_timeout(now);
                }
            });
        }
    }
}

/// Withdraws a request whose waiter was dropped before the reply came.
struct PendingReply {
    hub: Arc<Hub>,
    request: RequestId,
    answered: bool,
}

impl PendingReply {
    fn answered(mut self) {
        self.answered = true;
    }
}

impl Drop for PendingReply {
    fn drop(&mut self) {
        if self.answered {
            return;
        }
        let withdrawn = self.hub.lock().waiters.remove(&self.request).is_some();
        if withdrawn {
            debug!(request = %self.request, "client went away before its reply");
            self.hub.input(Input::RequestAborted {
                request: self.request,
            });
        }
    }
}

fn dispatch(state: &mut State, output: Output) {
    match output {
        Output::Reply { request, reply } => {
            if let Some(Waiter::Http(waiting)) = state.waiters.remove(&request) {
                let _ = waiting.send(reply);
            }
        }
        Output::CommandDone { request, result } => {
            if let Some(Waiter::Command(waiting)) = state.waiters.remove(&request) {
                let _ = waiting.send(*result);
            }
        }
        Output::WsFrame { conn, frame } => send_to_conn(state, conn, ConnCommand::Text(frame)),
        Output::WsPing { conn } => send_to_conn(state, conn, ConnCommand::Ping),
        Output::WsClose {
            conn,
            code,
            reason,
            abandon_unwritten,
        } => {
            if let Some(outbox) = state.conns.remove(&conn) {
                outbox.close(code, reason, abandon_unwritten);
            }
        }
        Output::Session(event) => log_session_event(&event),
        // This runtime keeps history in memory only: the engine asks to store batches only
        // when it was configured durable, which `ServerConfig` never does.
        Output::Persist(batch) => match &state.store {
            Some(store) => store.store(batch),
            // Cannot happen: the engine is durable only when a store was opened.
            None => {
                tracing::error!(batch = ?batch.batch, "the engine asked to store a batch, but there is no store")
            }
        },
        // Cluster mode (a broker) is runtime-smol's: this runtime never sets `clustered`.
        Output::Broker(command) => {
            tracing::error!(
                ?command,
                "the engine asked for a broker, but this runtime has none"
            )
        }
        Output::Forward { request, .. } | Output::Gather { request, .. } => {
            tracing::error!(%request, "the engine asked to forward a request, but this runtime is never clustered")
        }
    }
}

impl crate::websocket::Peer for Hub {
    fn on_message(&self, conn: ConnId, message: crate::websocket::Incoming) {
        self.input(message.into_input(conn));
    }

    fn on_written(&self, conn: ConnId, frames: usize) {
        // Not through `Input`: as frequent as deliveries, and cheaper this way.
        self.with_engine(|state, now| state.engine.frames_written(now, conn, frames));
    }

    fn on_closed(&self, conn: ConnId, code: Option<u16>) {
        self.websocket_closed(conn, code);
    }
}

fn send_to_conn(state: &mut State, conn: ConnId, command: ConnCommand) {
    if let Some(outbox) = state.conns.get(&conn) {
        outbox.push(command);
    }
}
