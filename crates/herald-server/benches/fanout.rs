//! Fan-out throughput: events delivered per second to N WebSocket subscribers
//! of one topic, over real sockets on loopback, server in-process.
//!
//! Run with `cargo bench -p herald-server --bench fanout`. Tune with
//! `HERALD_BENCH_SUBSCRIBERS` (default 1000), `HERALD_BENCH_EVENTS` (default
//! 2000) and `HERALD_BENCH_WINDOW` (events in flight, default 64). The
//! subscribers run in the same process and share the CPU with the server, so
//! the figure is a floor for the server alone.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use futures_util::{SinkExt, StreamExt};
use herald_server::Server;
use tokio_tungstenite::{connect_async, tungstenite::Message};

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing and
    // should stay quick.
    let quick = !std::env::args().any(|a| a == "--bench");
    let subscribers = env("HERALD_BENCH_SUBSCRIBERS", if quick { 20 } else { 1000 });
    let events = env("HERALD_BENCH_EVENTS", if quick { 50 } else { 2000 });
    let window = env("HERALD_BENCH_WINDOW", 64);
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime starts");
    runtime.block_on(run(subscribers, events, window));
}

async fn run(subscribers: u64, events: u64, window: u64) {
    let mut builder = Server::builder().dev(true).rate_limit(0, 0, 0);
    builder.config_mut().outbound_queue = 4096;
    // Every subscriber is user `bench` from 127.0.0.1: lift the caps per
    // address and per user.
    builder.config_mut().max_connections_per_ip = 0;
    builder.config_mut().max_connections_per_user = 0;
    let server = builder.bind("127.0.0.1:0").await.expect("the server starts");
    let url = format!("{}?token=bench", server.ws_url());
    let delivered = Arc::new(AtomicU64::new(0));
    let mut readers = Vec::new();
    for _ in 0..subscribers {
        let (mut ws, _) = connect_async(&url).await.expect("connect");
        ws.send(Message::text(r#"{"type":"subscribe","topics":["bench:1"]}"#)).await.expect("subscribe");
        // connected, subscribed
        for _ in 0..2 {
            let _ = ws.next().await;
        }
        let delivered = delivered.clone();
        readers.push(tokio::spawn(async move {
            let mut seen = 0;
            while seen < events {
                match ws.next().await {
                    Some(Ok(Message::Text(text))) if text.as_str().contains("\"seq\"") => {
                        seen += 1;
                        delivered.fetch_add(1, Ordering::Relaxed);
                    }
                    Some(Ok(_)) => {}
                    _ => break,
                }
            }
        }));
    }
    let payload = serde_json::json!({"n": 1, "text": "a small payload like a cache invalidation"});
    let started = Instant::now();
    let mut published = 0;
    while published < events {
        // Keep at most `window` events in flight per subscriber so queues never overflow.
        while published * subscribers > delivered.load(Ordering::Relaxed) + window * subscribers {
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        server.publish("bench:1", "UPDATED", "1", &payload).await.expect("valid event");
        published += 1;
    }
    for reader in readers {
        let _ = reader.await;
    }
    let elapsed = started.elapsed();
    let total = delivered.load(Ordering::Relaxed);
    println!(
        "fanout: {subscribers} subscribers, {events} events, {total} deliveries in {:.3} s = {:.0} deliveries/s (drops {})",
        elapsed.as_secs_f64(),
        total as f64 / elapsed.as_secs_f64(),
        server.metrics().drops,
    );
    server.shutdown().await;
}
