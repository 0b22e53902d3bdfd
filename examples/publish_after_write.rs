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

use herald::{Ack, Client};
use serde::Serialize;
use tokio::sync::Mutex;

const TOPIC: &str = "gift-list:family-123";

#[derive(Debug, Clone, Serialize)]
pub(crate) struct Gift {
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) bought: bool,
}

/// Stands in for the service's database.
#[derive(Default)]
pub(crate) struct Database {
    pub(crate) gifts: Mutex<HashMap<String, Gift>>,
}

impl Database {
    async fn save(&self, gift: Gift) -> Gift {
        self.gifts.lock().await.insert(gift.id.clone(), gift.clone());
        gift
    }
}

/// Commits `gift`, then announces it with `trace_id`, which ties
/// subscribers' logs to this request.
pub(crate) async fn save_and_announce(
    client: &Client,
    database: &Database,
    gift: Gift,
    trace_id: &str,
) -> (Gift, herald::Result<Ack>) {
    let gift = database.save(gift).await;
    let announced = client.publish_traced(TOPIC, "UPDATED", gift.id.as_str(), &gift, Some(trace_id.to_owned())).await;
    (gift, announced)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("HERALD_URL").unwrap_or_else(|_| "ws://127.0.0.1:8080/ws".into());
    let client = Client::builder(url).token("gift-service").publish_timeout(Duration::from_secs(10)).connect()?;
    let database = Database::default();

    for (n, name) in ["Bicycle", "Kite", "Puzzle"].into_iter().enumerate() {
        let gift = Gift { id: format!("gift-{n}"), name: name.into(), bought: n == 1 };
        match save_and_announce(&client, &database, gift, &format!("req-{n}")).await {
            (gift, Ok(ack)) => println!("saved {} and announced it as seq {:?}", gift.name, ack.seq),
            // The write is committed either way. Subscribers stayed connected, so no
            // resync will tell them: they keep the old version until they refetch for
            // another reason. Where that is not acceptable, write the announcement to an
            // outbox table in the same transaction and publish from there until acked.
            (gift, Err(error)) => eprintln!("saved {} but could not announce it: {error}", gift.name),
        }
    }
    client.close().await;
    Ok(())
}
