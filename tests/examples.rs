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
    within_for as within,
};
use serde_json::json;
use tokio::sync::mpsc;

const WAIT: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cache_example_drops_an_entry_on_its_event_and_every_entry_on_a_resync() {
    let server = server().await;
    let client = herald_test_support::native::client(&server.ws_url(), "gift-service");
    let mut updates = client.subscribe("gift-list:*").await.unwrap();
    subscribed(&server, &mut updates, "gift-list:0").await;
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

    // A reconnect: the wildcard subscription cannot be recovered, so it resyncs.
    server.disconnect_all(close::ABNORMAL);
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
