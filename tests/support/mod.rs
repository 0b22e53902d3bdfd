//! Shared pieces of the end-to-end tests: the fault proxy, a server with
//! test settings, and waiting with a deadline (every test stops by itself).

#![allow(dead_code, reason = "each test file uses a different subset")]

pub(crate) mod proxy;
pub(crate) mod tls;

use std::{future::Future, time::Duration};

use futures::StreamExt;
use herald::{Client, Status, Subscription, Update};
use herald_server::{Server, ServerHandle};

/// Fails the test instead of hanging it.
pub(crate) async fn within<T>(limit: Duration, what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(limit, future).await.unwrap_or_else(|_| panic!("timed out after {limit:?} waiting for {what}"))
}

/// A dev-mode server with short heartbeats and a fast graceful restart.
pub(crate) async fn server() -> ServerHandle {
    Server::builder()
        .dev(true)
        .shutdown_spread(Duration::from_millis(300))
        .bind("127.0.0.1:0")
        .await
        .expect("bind a loopback port")
}

/// A client with quick reconnects, so faults heal within test time.
pub(crate) fn client(url: &str, user: &str) -> Client {
    let mut backoff = herald::BackoffConfig::default();
    backoff.initial = Duration::from_millis(50);
    backoff.max = Duration::from_millis(400);
    Client::builder(url).token(user).backoff(backoff).connect().expect("a valid URL inside a runtime")
}

/// Waits until the status satisfies `predicate`.
pub(crate) async fn status(client: &Client, what: &str, predicate: impl Fn(&Status) -> bool) {
    let mut status = client.status();
    within(Duration::from_secs(10), what, status.wait_for(|s| predicate(s))).await.expect("the client task runs");
}

pub(crate) fn reconnecting(status: &Status) -> bool {
    matches!(status, Status::Reconnecting { .. })
}

pub(crate) fn connected(status: &Status) -> bool {
    matches!(status, Status::Connected { .. })
}

/// How long [`events`] waits for an event beyond those expected: a duplicate
/// would arrive right behind the original.
pub(crate) const QUIET: Duration = Duration::from_millis(300);

/// Reads updates until `count` events arrived, then fails if another event
/// arrives within [`QUIET`]; returns the events' seqs and every resync seen.
pub(crate) async fn events(subscription: &mut Subscription, count: usize) -> (Vec<u64>, Vec<String>) {
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
pub(crate) async fn subscribed(server: &ServerHandle, subscription: &mut Subscription, topic: &str) -> u64 {
    within(Duration::from_secs(10), "the subscription to take effect", async {
        loop {
            let seq =
                server.publish(topic, "PROBE", "probe", &serde_json::json!(null)).await.expect("a valid probe event");
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
