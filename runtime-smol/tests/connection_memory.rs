//! The memory every idle WebSocket keeps: the connection's task future. It is checked here
//! because it is easy to double by accident — an extra `.await` in `serve_connection` makes
//! the generated state machine keep room for the WebSocket twice (3.3 KB before the phases
//! were chained with combinators; 568 B after). docs/performance.md has the full breakdown.

use livebridge_smol::ServerConfig;
use livebridge_smol::connection::serve_connection;
use livebridge_smol::hub::Hub;
use smol::net::{TcpListener, TcpStream};

/// The budget for one connection's future; the whole connection must stay under 4 KiB.
const CONNECTION_FUTURE_BUDGET: usize = 1024;

#[test]
fn a_connection_future_stays_within_its_memory_budget() {
    let hub = Hub::new(livebridge_core::Config::default());
    let limits = ServerConfig::default().limits();
    smol::block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let _client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (stream, _) = listener.accept().await.unwrap();
        let connection = serve_connection(stream, hub, limits);
        let size = std::mem::size_of_val(&connection);
        assert!(
            size <= CONNECTION_FUTURE_BUDGET,
            "serve_connection's future is {size} bytes, over the {CONNECTION_FUTURE_BUDGET}-byte budget"
        );
    });
}
