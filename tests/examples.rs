//! Each example's logic against the real server: the examples are compiled
//! into this test as modules, and the test drives the functions their
//! `main`s call.

#[allow(dead_code, reason = "the example's main is its own entry point, not the test's")]
#[path = "../examples/cache_invalidation.rs"]
mod cache_invalidation;
#[allow(dead_code, reason = "the example's main is its own entry point, not the test's")]
#[path = "../examples/notifications_tail.rs"]
mod notifications_tail;
#[allow(dead_code, reason = "the example's main is its own entry point, not the test's")]
#[path = "../examples/publish_after_write.rs"]
mod publish_after_write;

use std::{sync::Arc, time::Duration};

use futures::StreamExt;
use herald::Update;
use herald_protocol::close;
use herald_test_support::{
    native::{server, subscribed},
    proxy::FaultProxy,
    within_for as within,
};
use serde_json::json;
use tokio::sync::mpsc;

const WAIT: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cache_example_misses_no_change_made_right_after_it_subscribed() {
    // The example subscribes, then loads: `subscribe` resolves on the
    // server's answer, so a change published at once still reaches the
    // cache. A network slower than the database load (100 ms each way
    // against 20 ms) makes the race certain: were `subscribe` to resolve
    // when its frame is written, the change would overtake it.
    let server = server().await;
    let proxy = FaultProxy::start(server.local_addr()).await;
    for round in 0..3 {
        let client = herald_test_support::native::client(&proxy.ws_url(), "gift-service");
        client.connected().await.unwrap();
        proxy.delay(Duration::from_millis(100));
        let updates = client.subscribe("gift-list:*").await.unwrap();
        let cache = cache_invalidation::new_cache();
        let topic = format!("gift-list:{round}");
        cache.insert(topic.clone(), Arc::new(cache_invalidation::load_from_database(&topic).await)).await;
        server.publish(&topic, "UPDATED", "gift-7", &json!({"bought": true})).await.unwrap();
        let running = tokio::spawn({
            let cache = cache.clone();
            async move { cache_invalidation::keep_fresh(&cache, updates).await }
        });
        within(WAIT, "the change to invalidate the entry loaded before it", async {
            while cache.get(&topic).await.is_some() {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await;
        proxy.delay(Duration::ZERO);
        client.close().await;
        within(WAIT, "the example to stop", running).await.unwrap().unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cache_example_drops_an_entry_on_its_event_and_every_entry_on_a_resync() {
    let mut server = server().await;
    let client = herald_test_support::native::client(&server.ws_url(), "gift-service");
    let updates = client.subscribe("gift-list:*").await.unwrap();
    let cache = cache_invalidation::new_cache();
    let topics = ["gift-list:1", "gift-list:2", "gift-list:3"];
    for topic in topics {
        cache.insert(topic.to_owned(), Arc::new(cache_invalidation::load_from_database(topic).await)).await;
    }
    let running = tokio::spawn({
        let cache = cache.clone();
        async move { cache_invalidation::keep_fresh(&cache, updates).await }
    });
    let cached = |cache: &cache_invalidation::GiftCache| {
        let cache = cache.clone();
        async move {
            let mut present = Vec::new();
            for topic in topics {
                if cache.get(topic).await.is_some() {
                    present.push(topic);
                }
            }
            present
        }
    };

    server.publish("gift-list:1", "UPDATED", "gift-7", &json!({"bought": true})).await.unwrap();
    within(WAIT, "the event to invalidate its entry", async {
        while cached(&cache).await.contains(&"gift-list:1") {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert_eq!(cached(&cache).await, ["gift-list:2", "gift-list:3"], "only the entry the event touched");

    // A reconnect: the wildcard subscription recovers what it missed, of
    // every topic, and nothing else is dropped.
    server.disconnect_all(close::ABNORMAL);
    server.publish("gift-list:2", "UPDATED", "gift-8", &json!({"bought": true})).await.unwrap();
    within(WAIT, "the missed event to invalidate its entry", async {
        while cached(&cache).await.contains(&"gift-list:2") {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    // Events are handled in order: once a later one is, a resync would have been too.
    cache.insert("gift-list:1".to_owned(), Arc::new(cache_invalidation::load_from_database("gift-list:1").await)).await;
    server.publish("gift-list:1", "UPDATED", "gift-7", &json!({"bought": false})).await.unwrap();
    within(WAIT, "a later event to invalidate its entry", async {
        while cached(&cache).await.contains(&"gift-list:1") {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert_eq!(cached(&cache).await, ["gift-list:3"], "recovered: no resync");

    // A restart that lost the history: nothing can be replayed, so it resyncs.
    server.restart(herald_test_support::Epoch::New).await.unwrap();
    within(WAIT, "the resync to invalidate every entry", async {
        while !cached(&cache).await.is_empty() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    client.close().await;
    within(WAIT, "the example to stop with its subscription", running).await.unwrap().unwrap();
}

/// Lines written by the example, as they are completed.
struct Lines {
    tx: mpsc::UnboundedSender<String>,
    partial: String,
}

impl std::io::Write for Lines {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.partial.push_str(&String::from_utf8_lossy(bytes));
        while let Some(end) = self.partial.find('\n') {
            let line: String = self.partial.drain(..=end).collect();
            let _ = self.tx.send(line.trim_end().to_owned());
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_notifications_example_prints_each_notification_of_its_user() {
    let server = server().await;
    let client = notifications_tail::connect(server.ws_url(), "u-42").unwrap();
    let mut notifications = client.subscribe("notification:u-42").await.unwrap();
    subscribed(&server, &mut notifications, "notification:u-42").await;
    let (tx, mut lines) = mpsc::unbounded_channel();
    let running = tokio::spawn(async move {
        notifications_tail::tail(notifications, Lines { tx, partial: String::new() }).await.map_err(|e| e.to_string())
    });

    server.publish("notification:u-42", "COMMENT_POSTED", "c-1", &json!({"text": "Anna commented"})).await.unwrap();
    server.publish("notification:u-7", "COMMENT_POSTED", "c-2", &json!({"text": "for someone else"})).await.unwrap();
    let line = within(WAIT, "a notification line", lines.recv()).await.unwrap();
    assert!(line.ends_with(" COMMENT_POSTED {\"text\":\"Anna commented\"}"), "{line:?}");
    client.close().await;
    within(WAIT, "the example to stop with its subscription", running).await.unwrap().unwrap();
    assert_eq!(lines.recv().await, None, "one line, for the one notification of u-42");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_publish_example_commits_before_subscribers_hear_of_it() {
    let server = server().await;
    let viewer = herald_test_support::native::client(&server.ws_url(), "viewer");
    let mut gifts = viewer.subscribe("gift-list:family-123").await.unwrap();
    subscribed(&server, &mut gifts, "gift-list:family-123").await;
    let backend = herald_test_support::native::client(&server.ws_url(), "gift-service");
    let database = Arc::new(publish_after_write::Database::default());

    let gift = publish_after_write::Gift { id: "gift-1".into(), name: "Kite".into(), bought: true };
    let announcing = tokio::spawn({
        let (backend, database) = (backend.clone(), database.clone());
        async move { publish_after_write::save_and_announce(&backend, &database, gift, "req-1").await }
    });
    let event = within(WAIT, "the announcement", async {
        loop {
            if let Some(Update::Event(event)) = gifts.next().await {
                return event;
            }
        }
    })
    .await;
    assert!(database.gifts.lock().await.contains_key("gift-1"), "the write is visible to a subscriber that refetches");
    assert_eq!((event.data.entity_id.as_str(), event.trace_id.as_deref()), ("gift-1", Some("req-1")));
    assert_eq!(event.payload_as::<serde_json::Value>().unwrap()["name"], "Kite");
    let (_, ack) = within(WAIT, "the ack", announcing).await.unwrap();
    assert_eq!(ack.unwrap().seq, event.seq);
    backend.close().await;
    viewer.close().await;
}
