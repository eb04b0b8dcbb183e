//! livebridge inside an axum application (the integration `docs/embedding.md` shows): the
//! application's own routes, the protocol on every other path, and a typed publish from the
//! same process once a second.
//!
//! ```text
//! cargo run -p livebridge-axum --example embedded
//! curl http://127.0.0.1:5100/health; curl -X POST -d '{"client_type":"gui"}' http://127.0.0.1:5100/ws/handshake
//! ```

use livebridge_axum::{Livebridge, Settings};
use livebridge_core::{Event, Id, JobProgress};
use std::net::SocketAddr;
use std::time::Duration;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let livebridge = Livebridge::new(Settings::default());
    tokio::spawn(livebridge.run_timers());
    // The application's routes first; the protocol router is a fallback on every other path
    // (axum refuses to merge two routers that both have a fallback).
    let app = axum::Router::new()
        .route("/health", axum::routing::get(|| async { "ok" }))
        .merge(livebridge.router());

    let handle = livebridge.handle();
    tokio::spawn(async move {
        for step in 0..=100u32 {
            let progress = JobProgress {
                job_id: Id::Text("j1".into()),
                stage: "analyzing".into(),
                progress: f64::from(step),
                message: None,
            };
            // A refusal is a typed CommandError: its Display says why, http_status() the
            // status HTTP would give.
            if let Err(refused) = handle.publish(Event::JobProgress(progress)).await {
                eprintln!("publish refused: {refused}");
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });

    let listener = tokio::net::TcpListener::bind("127.0.0.1:5100").await?;
    println!("listening on http://{}", listener.local_addr()?);
    // With the connection's address, so the engine's per-address handshake limit applies.
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .await?;
    Ok(())
}
