//! The memory every idle WebSocket keeps: the future of the task the server spawns for its
//! connection. It is checked here because it is easy to double by accident — an extra
//! `.await` in `serve_connection` makes the generated state machine keep room for the
//! WebSocket twice (3.3 KB before the phases were chained with combinators; 568 B after),
//! and so did the panic guard around it when it was an `async fn` (a 1.6 KB task on
//! 2026-12-01). docs/performance.md has the full breakdown. (Unit tests: the task and the hub
//! are not public.)

use crate::ServerConfig;
use crate::connection::serve_connection;
use crate::connection_task;
use crate::hub::Hub;
use smol::net::{TcpListener, TcpStream};

/// The budget for one connection's task future; what the server spawns must stay under it,
/// not only the connection inside it.
const CONNECTION_FUTURE_BUDGET: usize = 1024;

/// An accepted server-side stream (and its client, kept open).
async fn accepted() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let client = TcpStream::connect(listener.local_addr().unwrap())
        .await
        .unwrap();
    let (stream, _) = listener.accept().await.unwrap();
    (stream, client)
}

#[test]
fn a_connection_future_stays_within_its_memory_budget() {
    let hub = Hub::new(livebridge_core::Config::default());
    let limits = ServerConfig::default().limits();
    smol::block_on(async {
        let (stream, _client) = accepted().await;
        let connection = serve_connection(stream, hub, limits);
        let size = std::mem::size_of_val(&connection);
        assert!(
            size <= CONNECTION_FUTURE_BUDGET,
            "serve_connection's future is {size} bytes, over the {CONNECTION_FUTURE_BUDGET}-byte budget"
        );
    });
}

#[test]
fn the_spawned_connection_task_holds_the_connection_once() {
    let hub = Hub::new(livebridge_core::Config::default());
    let limits = ServerConfig::default().limits();
    smol::block_on(async {
        let (stream, _client) = accepted().await;
        let connection =
            std::mem::size_of_val(&serve_connection(stream.clone(), hub.clone(), limits));
        let task = connection_task(stream, hub, limits);
        let size = std::mem::size_of_val(&task);
        assert!(
            size <= CONNECTION_FUTURE_BUDGET,
            "the connection task's future is {size} bytes, over the {CONNECTION_FUTURE_BUDGET}-byte budget"
        );
        // The panic guard and what it needs after a panic (a spare stream, the hub, a flag)
        // may add a few words, never a second copy of the connection.
        assert!(
            size < connection + 128,
            "the connection task's future is {size} bytes around a {connection}-byte connection"
        );
    });
}
