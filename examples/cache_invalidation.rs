//! A Rust service that caches gift lists and keeps the cache fresh: every
//! event invalidates the entry it touches, and a resync (events may have been
//! missed, e.g. after an outage longer than the server's history) drops
//! every entry of the topic. The cache can be wrong for milliseconds, never
//! silently for good.
//!
//! Run with:
//!   cargo run --release -p herald-cli -- serve --dev
//!   cargo run --example cache_invalidation
//! then, in a third terminal:
//!   cargo run --release -p herald-cli -- publish --token backend --topic gift-list:family-123 --entity-id gift-7

use std::{sync::Arc, time::Duration};

use futures::StreamExt;
use herald::{Client, Subscription, Update};
use moka::{PredicateError, future::Cache};

/// What the service would load from its database.
#[derive(Debug, Clone)]
pub(crate) struct GiftList {
    topic: String,
    loaded_at: std::time::SystemTime,
}

pub(crate) async fn load_from_database(topic: &str) -> GiftList {
    tokio::time::sleep(Duration::from_millis(20)).await;
    GiftList { topic: topic.to_owned(), loaded_at: std::time::SystemTime::now() }
}

/// Gift lists by topic.
pub(crate) type GiftCache = Cache<String, Arc<GiftList>>;

pub(crate) fn new_cache() -> GiftCache {
    // A resync drops entries by a predicate, which moka allows only when asked for up front.
    Cache::builder().max_capacity(10_000).support_invalidation_closures().build()
}

/// Invalidates what `updates` (a `gift-list:*` subscription) says changed,
/// until the subscription ends.
pub(crate) async fn keep_fresh(cache: &GiftCache, mut updates: Subscription) -> Result<(), PredicateError> {
    while let Some(update) = updates.next().await {
        match update {
            Update::Event(event) => {
                cache.invalidate(event.topic.as_str()).await;
                println!("{} {} on {}: cache entry invalidated", event.event, event.data.entity_id, event.topic);
            }
            Update::Resync { topic, reason } => {
                // A wildcard or unrecoverable gap: every list of the resource may be stale.
                let prefix = format!("{}:", topic.resource());
                cache.invalidate_entries_if(move |key, _| key.starts_with(&prefix))?;
                println!("resync {topic} ({reason:?}): every cached {} entry invalidated", topic.resource());
            }
            Update::Live { .. } => println!("live: every change from here on invalidates"),
            _ => {}
        }
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("HERALD_URL").unwrap_or_else(|_| "ws://127.0.0.1:8080/ws".into());
    let cache = new_cache();

    let client =
        Client::builder(url).token("gift-service").on_status(|status| eprintln!("herald: {status}")).connect()?;
    // One wildcard subscription covers every gift list. It resolves once the
    // server confirmed it, so what is loaded below cannot miss a change.
    let updates = client.subscribe("gift-list:*").await?;

    // Warm the cache the way request handlers would (after subscribing: race-free).
    let topic = "gift-list:family-123".to_owned();
    let list = cache.get_with(topic.clone(), async { Arc::new(load_from_database(&topic).await) }).await;
    println!("cached {} (loaded at {:?})", list.topic, list.loaded_at);

    keep_fresh(&cache, updates).await?;
    Ok(())
}
