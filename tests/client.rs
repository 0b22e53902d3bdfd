//! The client's streams against the real server: bounded, never silent.

use std::time::Duration;

use std::sync::{Arc, Mutex};

use futures::StreamExt;
use herald::{DisconnectReason, ResyncReason, SessionEvent, Status, Update};
use herald_server::{Claims, Server, mint_token};
use herald_test_support::{
    native::{server, subscribed},
    proxy::FaultProxy,
    within_for as within,
};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_that_reads_too_slowly_gets_a_resync_instead_of_unbounded_memory() {
    let server = server().await;
    let client = herald::Client::builder(server.ws_url()).token("slow").channel_capacity(8).connect().unwrap();
    let mut sub = client.subscribe("feed:1").await.unwrap();
    subscribed(&server, &mut sub, "feed:1").await;
    for n in 0..100 {
        server.publish("feed:1", "ADDED", &n.to_string(), &json!(n)).await.unwrap();
    }
    // Let everything arrive while nobody reads.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut events = 0;
    let lagged = within(Duration::from_secs(10), "a lagged resync", async {
        loop {
            match sub.next().await.unwrap() {
                Update::Event(_) => events += 1,
                Update::Resync { topic, reason } => break (topic, reason),
                other => panic!("unexpected {other:?}"),
            }
        }
    })
    .await;
    assert!(events <= 8, "{events} events buffered for a capacity of 8");
    assert_eq!(lagged.0.as_str(), "feed:1");
    assert_eq!(lagged.1, ResyncReason::Lagged);
    // Reading again, the subscriber gets new events.
    let seq = server.publish("feed:1", "ADDED", "late", &json!(null)).await.unwrap().seq;
    let next = within(Duration::from_secs(10), "a live event", async {
        loop {
            if let Update::Event(event) = sub.next().await.unwrap()
                && event.seq == Some(seq)
            {
                return event;
            }
        }
    })
    .await;
    assert_eq!(next.data.entity_id, "late");
    client.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_streams_everything_and_dropping_a_subscription_unsubscribes() {
    let server = server().await;
    let client = herald_test_support::native::client(&server.ws_url(), "u1");
    let mut everything = client.events().await;
    let mut sub = client.subscribe("doc:1").await.unwrap();
    let probe = subscribed(&server, &mut sub, "doc:1").await;
    let seen = within(Duration::from_secs(10), "the probe on events()", async {
        loop {
            if let SessionEvent::Event(event) = everything.next().await.unwrap()
                && event.seq == Some(probe)
            {
                return event;
            }
        }
    })
    .await;
    assert_eq!(seen.topic.as_str(), "doc:1");

    // A second subscription of the same topic keeps it alive when the first drops.
    let mut second = client.subscribe("doc:1").await.unwrap();
    drop(sub);
    let seq = server.publish("doc:1", "UPDATED", "x", &json!(null)).await.unwrap().seq;
    let (seqs, _) = herald_test_support::native::events(&mut second, 1).await;
    assert_eq!(seqs, vec![seq]);
    drop(second);
    within(Duration::from_secs(10), "the server to see the unsubscribe", async {
        while server.metrics().subscriptions > 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    client.close().await;
    // After close, the streams end.
    within(Duration::from_secs(10), "events() to end", async { while everything.next().await.is_some() {} }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_outlives_the_client_handle_and_its_drop_ends_the_connection() {
    let server = server().await;
    let client = herald_test_support::native::client(&server.ws_url(), "u1");
    let mut sub = client.subscribe("doc:9").await.unwrap();
    subscribed(&server, &mut sub, "doc:9").await;
    drop(client);
    let seq = server.publish("doc:9", "UPDATED", "x", &json!(null)).await.unwrap().seq;
    assert_eq!(
        herald_test_support::native::events(&mut sub, 1).await.0,
        vec![seq],
        "still delivering without a handle"
    );
    drop(sub);
    within(Duration::from_secs(10), "the connection to close once nothing can read it", async {
        while server.metrics().connections > 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
}

#[tokio::test]
async fn bad_input_gets_a_clear_error_before_anything_is_sent() {
    let error = herald::Client::builder("http://127.0.0.1:1/ws").connect().unwrap_err();
    assert!(error.to_string().contains("ws:// or wss://"), "{error}");
    let server = server().await;
    let client = herald_test_support::native::client(&server.ws_url(), "u1");
    let error = client.subscribe("gift list:1").await.unwrap_err();
    assert_eq!(error.to_string(), r#"topic "gift list:1": space not allowed at byte 4"#);
    let error = client.publish("a:1", "NOT OK", "1", &json!(null)).await.unwrap_err();
    assert!(error.to_string().contains(r#"event name "NOT OK" has ' ' at byte 3"#), "{error}");
    let error = client.publish("a:*", "ADDED", "1", &json!(null)).await.unwrap_err();
    assert!(error.to_string().contains("wildcard"), "{error}");
    client.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_event_sees_every_event_the_subscription_gets_in_the_same_order() {
    let server = server().await;
    let seen = Arc::new(Mutex::new(Vec::new()));
    let client = herald::Client::builder(server.ws_url())
        .token("u1")
        .on_event({
            let seen = seen.clone();
            move |event| seen.lock().unwrap().push((event.topic.to_string(), event.seq))
        })
        .connect()
        .unwrap();
    let mut sub = client.subscribe("doc:3").await.unwrap();
    let probe = subscribed(&server, &mut sub, "doc:3").await;
    seen.lock().unwrap().retain(|(_, seq)| *seq >= Some(probe));
    for n in 0..3 {
        server.publish("doc:3", "UPDATED", &n.to_string(), &json!(n)).await.unwrap();
    }
    let (seqs, _) = herald_test_support::native::events(&mut sub, 3).await;
    let expected: Vec<_> = std::iter::once(probe).chain(seqs).map(|seq| ("doc:3".to_owned(), Some(seq))).collect();
    assert_eq!(*seen.lock().unwrap(), expected);
    client.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_sends_close_code_1000_on_the_wire_and_stops_for_good() {
    let server = server().await;
    let proxy = FaultProxy::start(server.local_addr()).await;
    let client = herald_test_support::native::client(&proxy.ws_url(), "u1");
    client.connected().await.unwrap();
    client.close().await;
    within(Duration::from_secs(10), "the close frame to pass the proxy", async {
        while proxy.client_closes().is_empty() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert_eq!(proxy.client_closes(), [1000]);
    assert_eq!(*client.status().borrow(), Status::Disconnected { reason: DisconnectReason::Closed });
    assert_eq!(proxy.accepted().len(), 1, "no reconnect after close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_publish_says_so_once_and_every_topic_refused_stops_the_client() {
    let server = Server::builder().secret("s3cret").bind("127.0.0.1:0").await.unwrap();
    let token = mint_token("s3cret", &Claims::new("u1", 3600).topics(["user:u1"])).unwrap();
    let client = herald::Client::builder(server.ws_url()).token(token).connect().unwrap();
    let error = client.publish("user:u1", "UPDATED", "1", &json!(null)).await.unwrap_err();
    assert_eq!(
        error.to_string(),
        "the server rejected the publish (4003): the token does not allow publishing to user:u1"
    );
    assert!(matches!(error, herald::Error::Rejected { .. }));

    let refused = within(Duration::from_secs(10), "the refusal", client.subscribe("admin:1")).await.unwrap_err();
    assert!(
        matches!(&refused, herald::Error::SubscribeRejected { topic, message, .. }
            if topic == "admin:1" && message.contains("admin:1")),
        "{refused:?}"
    );
    assert!(refused.to_string().starts_with("the server refused the subscription to admin:1 (4003)"), "{refused}");
    // The only topic asked for is forbidden: connected, the client would wait for nothing.
    herald_test_support::native::status(&client, "the client to stop", |s| matches!(s, Status::Disconnected { .. }))
        .await;
    let Status::Disconnected { reason } = client.status().borrow().clone() else { unreachable!() };
    assert!(matches!(reason, DisconnectReason::Forbidden { .. }), "{reason}");
    assert!(reason.to_string().contains("the token does not allow"), "{reason}");
}

#[test]
fn connect_outside_a_runtime_says_what_to_do() {
    let error = herald::Client::builder("ws://127.0.0.1:1/ws").connect().unwrap_err();
    assert!(error.to_string().contains("no tokio runtime"), "{error}");
}
