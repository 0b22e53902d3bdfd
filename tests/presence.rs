//! Presence through the native client: who is there, with the metadata
//! each member set, its changes, and the metadata kept across a reconnect.

use std::time::Duration;

use futures::StreamExt;
use herald::{Error, Payload, SubscribeOptions, Subscription, Update};
use herald_test_support::{
    native::{client, server},
    within_for as within,
};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(10);

/// Reads presence updates until `alice` is listed with `meta`.
async fn sees_alice_as(subscription: &mut Subscription, meta: Value) {
    within(WAIT, "alice's metadata", async {
        loop {
            let update = subscription.next().await.expect("the subscription stays open");
            let (names, by_user) = match &update {
                Update::Presence(presence) => (&presence.members, &presence.meta),
                Update::PresenceDiff(diff) => (&diff.joined, &diff.meta),
                _ => continue,
            };
            let listed = by_user.get("alice").map(|meta| meta.parse::<Value>().unwrap());
            if names.iter().any(|name| name == "alice") && listed.as_ref() == Some(&meta) {
                return;
            }
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_see_each_others_metadata_and_its_changes_also_after_a_reconnect() {
    let server = server().await;
    let alice = client(&server.ws_url(), "alice");
    let bob = client(&server.ws_url(), "bob");
    let ann = Payload::from_value(&json!({ "name": "Ann" })).unwrap();
    let _room = alice.subscribe_with("room:1", SubscribeOptions::default().presence_meta(ann)).await.unwrap();
    let mut seen_by_bob = bob.subscribe_with_presence("room:1").await.unwrap();
    sees_alice_as(&mut seen_by_bob, json!({ "name": "Ann" })).await;

    alice.set_presence("room:1", &json!({ "name": "Ann", "colour": "#f80" })).await.unwrap();
    sees_alice_as(&mut seen_by_bob, json!({ "name": "Ann", "colour": "#f80" })).await;

    // Alice's connection drops; she is listed again with her latest metadata.
    server.disconnect_all(1001);
    sees_alice_as(&mut seen_by_bob, json!({ "name": "Ann", "colour": "#f80" })).await;

    let refused = alice.set_presence("room:2", &json!({ "name": "Ann" })).await.unwrap_err();
    assert!(matches!(refused, Error::Presence(_)), "{refused}");
    assert!(refused.to_string().contains("not subscribed with presence"), "{refused}");
    let refused = alice.set_presence("room:1", &"Ann").await.unwrap_err();
    assert!(refused.to_string().contains("meta must be a JSON object"), "{refused}");
}
