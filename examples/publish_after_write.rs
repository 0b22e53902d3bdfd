//! A backend announces a change after it committed it: write first, publish
//! second, so subscribers that refetch on the event read the new state.
//! Publishes made while the connection is down wait in a bounded queue and
//! are retransmitted until acked; the server drops duplicates by id.
//!
//! Run with:
//!   cargo run --release -p herald-cli -- serve --dev
//!   cargo run --release -p herald-cli -- listen --token viewer --topic 'gift-list:*'
//!   cargo run --example publish_after_write

use std::{collections::HashMap, time::Duration};

use herald::Client;
use serde::Serialize;
use tokio::sync::Mutex;

#[derive(Debug, Clone, Serialize)]
struct Gift {
    id: String,
    name: String,
    bought: bool,
}

/// Stands in for the service's database.
#[derive(Default)]
struct Database {
    gifts: Mutex<HashMap<String, Gift>>,
}

impl Database {
    async fn save(&self, gift: Gift) -> Gift {
        self.gifts.lock().await.insert(gift.id.clone(), gift.clone());
        gift
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("HERALD_URL").unwrap_or_else(|_| "ws://127.0.0.1:8080/ws".into());
    let client = Client::builder(url).token("gift-service").publish_timeout(Duration::from_secs(10)).connect()?;
    let database = Database::default();

    for (n, name) in ["Bicycle", "Kite", "Puzzle"].into_iter().enumerate() {
        let gift = database.save(Gift { id: format!("gift-{n}"), name: name.into(), bought: n == 1 }).await;
        // The trace id ties subscribers' logs to this request.
        let trace_id = format!("req-{n}");
        match client.publish_traced("gift-list:family-123", "UPDATED", gift.id.as_str(), &gift, Some(trace_id)).await {
            Ok(ack) => println!("saved {} and announced it as seq {:?}", gift.name, ack.seq),
            // The write is committed either way; a missed announcement is caught by
            // subscribers' resync on reconnect, so log it and move on.
            Err(error) => eprintln!("saved {} but could not announce it: {error}", gift.name),
        }
    }
    client.close().await;
    Ok(())
}
