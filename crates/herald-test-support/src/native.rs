//! Helpers for tests of the native client against the real server.

use std::time::Duration;

use futures_util::StreamExt;
use herald_client::{Client, Status, Subscription, Update};
use herald_server::{Server, ServerHandle};

use crate::within_for as within;

/// A dev-mode server with short heartbeats and a fast graceful restart.
pub async fn server() -> ServerHandle {
    Server::builder()
        .dev(true)
        .shutdown_spread(Duration::from_millis(300))
        .bind("127.0.0.1:0")
        .await
        .expect("bind a loopback port")
}

/// A client with quick reconnects, so faults heal within test time.
pub fn client(url: &str, user: &str) -> Client {
    let mut backoff = herald_client::BackoffConfig::default();
    backoff.initial = Duration::from_millis(50);
    backoff.max = Duration::from_millis(400);
    Client::builder(url).token(user).backoff(backoff).connect().expect("a valid URL inside a runtime")
}

/// Waits until the status satisfies `predicate`.
pub async fn status(client: &Client, what: &str, predicate: impl Fn(&Status) -> bool) {
    let mut status = client.status();
    within(Duration::from_secs(10), what, status.wait_for(|s| predicate(s))).await.expect("the client task runs");
}

pub fn reconnecting(status: &Status) -> bool {
    matches!(status, Status::Reconnecting { .. })
}

pub fn connected(status: &Status) -> bool {
    matches!(status, Status::Connected { .. })
}

/// How long [`events`] waits for an event beyond those expected: a duplicate
/// would arrive right behind the original.
pub const QUIET: Duration = Duration::from_millis(300);

/// Reads updates until `count` events arrived, then fails if another event
/// arrives within [`QUIET`]; returns the events' seqs and every resync seen.
pub async fn events(subscription: &mut Subscription, count: usize) -> (Vec<u64>, Vec<String>) {
    let mut seqs = Vec::new();
    let mut resyncs = Vec::new();
    let mut read = |update: Option<Update>, seqs: &mut Vec<u64>| match update.expect("the subscription stays open") {
        Update::Event(event) => seqs.push(event.seq.expect("Herald's server numbers events")),
        Update::Resync { topic, .. } => resyncs.push(topic.to_string()),
        _ => {}
    };
    within(Duration::from_secs(10), &format!("{count} events"), async {
        while seqs.len() < count {
            read(subscription.next().await, &mut seqs);
        }
    })
    .await;
    let quiet = tokio::time::sleep(QUIET);
    tokio::pin!(quiet);
    let mut extra = Vec::new();
    loop {
        tokio::select! {
            update = subscription.next() => read(update, &mut extra),
            () = &mut quiet => break,
        }
    }
    assert!(extra.is_empty(), "events {extra:?} arrived after the {count} expected {seqs:?}: duplicates or strays");
    (seqs, resyncs)
}

/// Waits for the server to confirm a subscription: an event published now reaches it.
pub async fn subscribed(server: &ServerHandle, subscription: &mut Subscription, topic: &str) -> u64 {
    within(Duration::from_secs(10), "the subscription to take effect", async {
        loop {
            let seq = server
                .publish(topic, "PROBE", "probe", &serde_json::json!(null))
                .await
                .expect("a valid probe event")
                .seq;
            let deadline = tokio::time::sleep(Duration::from_millis(200));
            tokio::pin!(deadline);
            loop {
                tokio::select! {
                    update = subscription.next() => {
                        if let Some(Update::Event(event)) = update && event.seq == Some(seq) {
                            return seq;
                        }
                    }
                    () = &mut deadline => break,
                }
            }
        }
    })
    .await
}
