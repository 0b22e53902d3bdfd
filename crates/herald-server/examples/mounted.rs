//! Herald mounted in an axum app, served by `axum::serve` as a service that
//! embeds it would serve it: what `cargo xtask bench` measures idle
//! connections on beside `herald serve`. Development mode (any token is its
//! user id); like the bench's `herald serve`, no limit on connections per
//! address, since the load comes from a few loopback addresses.
//!
//! ```sh
//! cargo run --release -p herald-server --example mounted -- 127.0.0.1:8080
//! # clients connect to ws://127.0.0.1:8080/realtime/ws
//! ```

use axum::{Router, routing::get};
use herald_server::Herald;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:8080".to_owned());
    let mut builder = Herald::builder().dev(true);
    builder.config_mut().max_connections_per_ip = 0;
    let herald = builder.build().await?;
    let app = Router::new().route("/api/health", get(|| async { "ok" })).nest("/realtime", herald.router());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("herald mounted on ws://{}/realtime/ws", listener.local_addr()?);
    axum::serve(listener, app.into_make_service_with_connect_info::<std::net::SocketAddr>()).await?;
    Ok(())
}
