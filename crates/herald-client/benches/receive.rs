//! The native client's receive path next to a bare tokio-tungstenite +
//! serde_json read loop (what a hand-rolled client does), in one run:
//! events per second from a loopback server that writes pre-encoded event
//! frames as fast as the socket takes them.
//!
//! Run with: `cargo bench -p herald-client --bench receive`

use std::{
    hint::black_box,
    time::{Duration, Instant},
};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use futures::{SinkExt, StreamExt};
use herald_client::{Client, Update};
use tokio::{net::TcpListener, sync::oneshot};
use tokio_tungstenite::tungstenite::Message;

/// Events per measured round.
const EVENTS: usize = 20_000;

fn frames() -> Vec<String> {
    (1..=EVENTS)
        .map(|seq| {
            format!(
                r#"{{"topic":"gift-list:family-123","event":"UPDATED","data":{{"entity_id":"gift-{seq}","payload":{{"title":"Blue scarf","bought":true,"price":24.5,"tags":["winter","wool"]}},"user_id":"u-1","tenant_id":"acme","timestamp":"2026-11-25T10:00:00.123Z"}},"trace_id":"4bf92f3577b34da6","seq":{seq}}}"#
            )
        })
        .collect()
}

/// Accepts one connection, waits for the client's first frame (its
/// subscribe) and for `go`, then writes every frame.
async fn serve_one(
    listener: TcpListener,
    frames: Vec<String>,
    subscribed: oneshot::Sender<()>,
    go: oneshot::Receiver<()>,
) {
    let (tcp, _) = listener.accept().await.unwrap();
    let mut ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
    while let Some(Ok(message)) = ws.next().await {
        if message.is_text() {
            break;
        }
    }
    subscribed.send(()).unwrap();
    go.await.unwrap();
    for (n, frame) in frames.into_iter().enumerate() {
        ws.feed(Message::text(frame)).await.unwrap();
        if n % 64 == 63 {
            ws.flush().await.unwrap();
        }
    }
    ws.flush().await.unwrap();
    // Keep the connection open until the client is done reading.
    while ws.next().await.is_some() {}
}

/// One round: set up server and client (not timed), then time `EVENTS` events in.
async fn round(frames: &[String], bare: bool) -> Duration {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/ws", listener.local_addr().unwrap());
    let (subscribed_tx, subscribed_rx) = oneshot::channel();
    let (go_tx, go_rx) = oneshot::channel();
    tokio::spawn(serve_one(listener, frames.to_vec(), subscribed_tx, go_rx));
    if bare {
        let (mut ws, _) = tokio_tungstenite::connect_async(format!("{url}?token=t")).await.unwrap();
        ws.send(Message::text(r#"{"type":"subscribe","topics":["gift-list:family-123"]}"#)).await.unwrap();
        subscribed_rx.await.unwrap();
        let started = Instant::now();
        go_tx.send(()).unwrap();
        let mut received = 0;
        while received < EVENTS {
            if let Some(Ok(Message::Text(text))) = ws.next().await {
                let event: serde_json::Value = serde_json::from_str(&text).unwrap();
                black_box(&event["data"]["entity_id"]);
                received += 1;
            }
        }
        started.elapsed()
    } else {
        let client = Client::builder(url).token("t").channel_capacity(EVENTS).connect().unwrap();
        let mut subscription = client.subscribe("gift-list:family-123").await.unwrap();
        subscribed_rx.await.unwrap();
        let started = Instant::now();
        go_tx.send(()).unwrap();
        let mut received = 0;
        while received < EVENTS {
            if let Some(Update::Event(event)) = subscription.next().await {
                black_box(&event.data.entity_id);
                received += 1;
            }
        }
        let elapsed = started.elapsed();
        client.close().await;
        elapsed
    }
}

fn receive(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let frames = frames();
    let mut group = c.benchmark_group("receive");
    group.throughput(Throughput::Elements(EVENTS as u64)).sample_size(20);
    for (name, bare) in [("tokio-tungstenite + serde_json::Value", true), ("herald-client Subscription", false)] {
        group.bench_function(name, |b| {
            b.iter_custom(|rounds| {
                runtime.block_on(async {
                    let mut total = Duration::ZERO;
                    for _ in 0..rounds {
                        total += round(&frames, bare).await;
                    }
                    total
                })
            })
        });
    }
    group.finish();
}

criterion_group!(benches, receive);
criterion_main!(benches);
