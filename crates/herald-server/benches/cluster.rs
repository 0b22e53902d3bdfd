//! Publish-to-deliver latency across two nodes of a cluster: a WebSocket
//! client publishes on node B and waits for the event on a subscriber of
//! node A, one event at a time, over real sockets on loopback and a real
//! `redis-server` (started here, on a free port). The same run against a
//! single node gives the figure to compare with.
//!
//! Run with `cargo bench -p herald-server --bench cluster` (needs
//! `redis-server`: `cargo xtask install`). `HERALD_BENCH_EVENTS` sets the
//! number of events (default 2000). Everything shares the CPU, so the
//! figures are ceilings for the servers alone.

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use herald_server::{Server, ServerHandle};
use herald_test_support::RedisServer;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, connect_async, tungstenite::Message};

type Ws = WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>;

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing and should stay quick.
    let quick = !std::env::args().any(|a| a == "--bench");
    let events =
        std::env::var("HERALD_BENCH_EVENTS").ok().and_then(|v| v.parse().ok()).unwrap_or(if quick { 50 } else { 2000 });
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime starts");
    runtime.block_on(async {
        let single = Server::builder().dev(true).rate_limit(0, 0, 0).bind("127.0.0.1:0").await.expect("a node");
        report("one node", measure(&single, &single, events).await);
        let redis = RedisServer::start().await;
        let node = || async {
            let builder = Server::builder().dev(true).rate_limit(0, 0, 0).redis(redis.url());
            builder.bind("127.0.0.1:0").await.expect("a node joins")
        };
        let (a, b) = (node().await, node().await);
        report("publish on B, deliver on A", measure(&a, &b, events).await);
    });
}

async fn open(server: &ServerHandle, user: &str) -> Ws {
    let (mut ws, _) = connect_async(format!("{}?token={user}", server.ws_url())).await.expect("connect");
    next_text(&mut ws).await; // connected
    ws
}

async fn next_text(ws: &mut Ws) -> String {
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(text))) if !text.contains(r#""type":"ping""#) => return text.to_string(),
            Some(Ok(_)) => {}
            other => panic!("the connection ended: {other:?}"),
        }
    }
}

/// Latency of each of `events` publishes on `publisher_node` to their delivery on `subscriber_node`.
async fn measure(subscriber_node: &ServerHandle, publisher_node: &ServerHandle, events: usize) -> Vec<Duration> {
    let mut subscriber = open(subscriber_node, "reader").await;
    subscriber.send(Message::text(r#"{"type":"subscribe","topics":["bench:1"]}"#)).await.expect("subscribe");
    next_text(&mut subscriber).await; // subscribed
    let mut publisher = open(publisher_node, "writer").await;
    let mut latencies = Vec::with_capacity(events);
    for n in 0..events {
        let publish = format!(
            r#"{{"type":"publish","id":"p-{n}","topic":"bench:1","event":"UPDATED","data":{{"entity_id":"1","payload":{n},"timestamp":"2026-01-01T00:00:00Z"}}}}"#
        );
        let sent = Instant::now();
        publisher.send(Message::text(publish)).await.expect("publish");
        let event = next_text(&mut subscriber).await;
        latencies.push(sent.elapsed());
        assert!(event.contains(r#""seq":"#), "expected an event, got {event}");
        next_text(&mut publisher).await; // ack
    }
    latencies
}

fn report(what: &str, mut latencies: Vec<Duration>) {
    latencies.sort_unstable();
    let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q) as usize];
    println!(
        "cluster: {what}: {} events, p50 {:?}, p99 {:?}, max {:?}",
        latencies.len(),
        at(0.5),
        at(0.99),
        latencies[latencies.len() - 1]
    );
}
