//! Mounting ssehub in an existing axum app: the app keeps its own routes, gains `/events`,
//! `/publish` and the rest, and publishes a named `status` event from its own code.
//!
//! Run: `cargo run --example embed -- 127.0.0.1:3000`, then
//! `curl -N 'http://127.0.0.1:3000/events?topic=device'`.

use std::time::Duration;

use ssehub::http::{router, HttpConfig};
use ssehub::{Event, Hub};

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let listen = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:3000".into());
    let hub = Hub::builder().max_clients(1000).build();

    // The app's own routes, with the hub merged in.
    let app = axum::Router::new()
        .route(
            "/hello",
            axum::routing::get(|| async { "hello from the app\n" }),
        )
        .merge(router(hub.clone(), HttpConfig::default()));

    // The device pattern: the app reports its status from code, a few times a second.
    let reporter = hub.clone();
    tokio::spawn(async move {
        for tick in 1u64.. {
            tokio::time::sleep(Duration::from_millis(250)).await;
            let event = Event::new(format!("{{\"tick\":{tick}}}"))
                .with_topic("device")
                .and_then(|e| e.with_name("status"));
            if let Ok(event) = event {
                let _ = reporter.publish_one(event).await;
            }
        }
    });

    let listener = tokio::net::TcpListener::bind(&listen).await?;
    eprintln!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app).await
}
