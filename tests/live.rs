//! Never stale from the first subscription: `subscribe` resolves on the
//! server's answer, every subscription says when it is live, and a first
//! subscription can start from a position a REST response gave. Against the
//! real server over loopback.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use herald::{Error, Position, PublishOptions, ResyncReason, Update};
use herald_test_support::{
    native::{client, events, server},
    proxy::FaultProxy,
    within_for as within,
};
use serde_json::json;
use tokio::net::TcpListener;

const WAIT: Duration = Duration::from_secs(10);

/// The next update that is not an event.
async fn next_signal(subscription: &mut herald::Subscription) -> Update {
    within(WAIT, "a signal", async {
        loop {
            match subscription.next().await.expect("the subscription stays open") {
                Update::Event(_) => {}
                other => return other,
            }
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_published_right_after_subscribe_returns_is_never_missed() {
    let server = server().await;
    let client = client(&server.ws_url(), "reader");
    // Without waiting for `subscribed`, a publish made at once races the
    // subscribe frame; over many fresh topics, some would be lost.
    for n in 0..50 {
        let topic = format!("race:{n}");
        let mut subscription = client.subscribe(&topic).await.unwrap();
        assert!(subscription.is_confirmed());
        let position = server.publish(&topic, "UPDATED", "1", &json!(n)).await.unwrap();
        let first = within(WAIT, "the first update", subscription.next()).await;
        assert!(matches!(first, Some(Update::Live { .. })), "the first update is Live, got {first:?}");
        let event = within(WAIT, "the event published right after", subscription.next()).await;
        assert!(
            matches!(&event, Some(Update::Event(event)) if event.seq == Some(position.seq)),
            "{topic}: expected seq {}, got {event:?}",
            position.seq
        );
    }
    client.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_knows_its_position_and_a_publish_answers_with_one() {
    let server = server().await;
    let client = client(&server.ws_url(), "writer");
    for n in 1..=3 {
        server.publish("doc:1", "UPDATED", "1", &json!(n)).await.unwrap();
    }
    let current = server.position("doc:1").await.unwrap();
    assert_eq!(current.seq, 3);
    let mut subscription = client.subscribe("doc:1").await.unwrap();
    assert_eq!(subscription.position(), Some(&current));
    assert!(matches!(next_signal(&mut subscription).await, Update::Live { position: Some(p) } if p == current));

    let ack = client.publish("doc:1", "UPDATED", "1", &json!(4)).await.unwrap();
    assert_eq!(ack.position, Some(Position::new(current.epoch.clone(), 4)));
    assert_eq!(server.position("doc:1").await.unwrap(), Position::new(current.epoch, 4));
    // The ack may come before the event: the session's position moves once the event is in.
    let (seqs, _) = events(&mut subscription, 1).await;
    assert_eq!(seqs, [4]);

    // A second reader of a live topic is told so at once, with the topic's position.
    let mut second = client.subscribe("doc:1").await.unwrap();
    assert_eq!(second.position().map(|p| p.seq), Some(4));
    assert!(matches!(next_signal(&mut second).await, Update::Live { position: Some(p) } if p.seq == 4));
    client.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribe_from_a_rest_position_replays_what_changed_since_or_resyncs() {
    let server = server().await;
    server.publish("list:1", "ADDED", "a", &json!("a")).await.unwrap();
    // The backend's pattern: read the position, then the data, return both.
    let loaded_at = server.position("list:1").await.unwrap();
    // Changes land between the REST load and the subscription.
    let b = server.publish("list:1", "ADDED", "b", &json!("b")).await.unwrap();
    let c = server.publish("list:1", "ADDED", "c", &json!("c")).await.unwrap();

    let client = client(&server.ws_url(), "reader");
    let mut subscription = client.subscribe_from("list:1", loaded_at.clone()).await.unwrap();
    let mut replayed = Vec::new();
    let live = within(WAIT, "the replay and Live", async {
        loop {
            match subscription.next().await.unwrap() {
                Update::Event(event) => replayed.push(event.seq.unwrap()),
                Update::Live { position } => return position,
                other => panic!("unexpected {other:?}"),
            }
        }
    })
    .await;
    assert_eq!(replayed, [b.seq, c.seq], "the changes since the load, once each, before Live");
    assert_eq!(live, Some(c));

    // A position from another epoch (the server restarted since the load) cannot be replayed.
    let stale = Position::new("an-old-epoch", loaded_at.seq);
    let mut other = client.subscribe_from("list:1", stale).await.unwrap();
    assert!(
        matches!(next_signal(&mut other).await, Update::Resync { reason: ResyncReason::NotRecovered, .. }),
        "resync, never silence"
    );
    assert!(matches!(next_signal(&mut other).await, Update::Live { .. }));
    client.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_subscriber_behind_the_topic_resyncs_and_one_up_to_date_does_not() {
    let server = server().await;
    let client = client(&server.ws_url(), "reader");
    let early = server.publish("doc:2", "UPDATED", "2", &json!(1)).await.unwrap();
    let _first = client.subscribe("doc:2").await.unwrap();
    let now = server.publish("doc:2", "UPDATED", "2", &json!(2)).await.unwrap();
    // Let the first subscription receive it, so the session's position moves on.
    tokio::time::sleep(Duration::from_millis(200)).await;

    let mut behind = client.subscribe_from("doc:2", early).await.unwrap();
    assert!(matches!(next_signal(&mut behind).await, Update::Resync { .. }), "missed seq 2");
    assert!(matches!(next_signal(&mut behind).await, Update::Live { .. }));

    let mut current = client.subscribe_from("doc:2", now).await.unwrap();
    assert!(matches!(next_signal(&mut current).await, Update::Live { .. }), "nothing missed: straight to Live");
    client.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_cut_the_subscription_is_live_again_and_nothing_is_lost_or_duplicated() {
    let server = server().await;
    let proxy = FaultProxy::start(server.local_addr()).await;
    let client = client(&proxy.ws_url(), "reader");
    let mut subscription = client.subscribe("feed:9").await.unwrap();
    assert!(matches!(next_signal(&mut subscription).await, Update::Live { .. }));
    let mut published = Vec::new();
    for n in 0..3 {
        published.push(server.publish("feed:9", "ADDED", "x", &json!(n)).await.unwrap().seq);
    }
    proxy.cut();
    for n in 3..6 {
        published.push(server.publish("feed:9", "ADDED", "x", &json!(n)).await.unwrap().seq);
    }
    let (seqs, resyncs) = events(&mut subscription, 6).await;
    assert_eq!(seqs, published, "every event once, in order");
    assert!(resyncs.is_empty(), "recovered, no resync: {resyncs:?}");
    assert!(proxy.accepted().len() >= 2, "the connection was cut and reopened");
    client.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conditional_publish_lets_one_of_two_racing_writers_win() {
    let server = server().await;
    let base = server.publish("doc:3", "UPDATED", "3", &json!("v1")).await.unwrap();
    let alice = client(&server.ws_url(), "alice");
    let bob = client(&server.ws_url(), "bob");
    let write = |client: &herald::Client, text: &'static str| {
        let client = client.clone();
        let seq = base.seq;
        async move {
            client.publish_with("doc:3", "UPDATED", "3", &json!(text), PublishOptions::default().if_seq(seq)).await
        }
    };
    let (a, b) = tokio::join!(write(&alice, "alice"), write(&bob, "bob"));
    let (won, lost) = match (a, b) {
        (Ok(won), Err(lost)) | (Err(lost), Ok(won)) => (won, lost),
        other => panic!("exactly one writer wins: {other:?}"),
    };
    assert_eq!(won.seq, Some(base.seq + 1));
    assert!(matches!(lost, Error::Conflict { current } if current == base.seq + 1), "{lost:?}");
    assert!(lost.to_string().contains("rebase"), "{lost}");
    // The loser rebases on what it learnt and wins.
    let retried =
        bob.publish_with("doc:3", "UPDATED", "3", &json!("bob"), PublishOptions::default().if_seq(base.seq + 1)).await;
    assert_eq!(retried.unwrap().seq, Some(base.seq + 2));
    alice.close().await;
    bob.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ephemeral_event_reaches_current_subscribers_only_and_is_never_replayed() {
    let server = server().await;
    let reader = client(&server.ws_url(), "reader");
    let typist = client(&server.ws_url(), "typist");
    let mut subscription = reader.subscribe("room:1").await.unwrap();
    let before = server.position("room:1").await.unwrap();
    // An ephemeral publish is sent only while connected (never queued).
    typist.connected().await.unwrap();
    let ack =
        typist.publish_with("room:1", "TYPING", "typist", &json!(true), PublishOptions::default().ephemeral()).await;
    let ack = ack.unwrap();
    assert_eq!((ack.seq, ack.position), (None, None), "no seq for an ephemeral event");
    let typing = within(WAIT, "the typing event", async {
        loop {
            if let Update::Event(event) = subscription.next().await.unwrap() {
                return event;
            }
        }
    })
    .await;
    assert!(typing.ephemeral && typing.seq.is_none(), "{typing:?}");
    assert_eq!(server.position("room:1").await.unwrap(), before, "the topic's position did not move");

    // A later subscriber from before it gets no replay of it.
    let late = client(&server.ws_url(), "late");
    let mut replay = late.subscribe_from("room:1", before).await.unwrap();
    assert!(matches!(next_signal(&mut replay).await, Update::Live { .. }));
    let quiet = tokio::time::timeout(Duration::from_millis(300), replay.next()).await;
    assert!(quiet.is_err(), "nothing replayed: {quiet:?}");
    for client in [reader, typist, late] {
        client.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_offline_subscribe_waits_for_the_connection() {
    // A port that refuses until the server binds it.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    drop(listener);
    let client = client(&format!("ws://{address}/ws"), "reader");
    let subscribe = client.subscribe("doc:4");
    tokio::pin!(subscribe);
    let early = tokio::time::timeout(Duration::from_millis(500), &mut subscribe).await;
    assert!(early.is_err(), "offline, subscribe waits rather than resolving");

    let server = herald_server::Server::builder().dev(true).bind(address).await.unwrap();
    let subscription = within(WAIT, "the subscription once the server is up", subscribe).await.unwrap();
    assert!(subscription.is_confirmed());
    drop(server);
}

/// A seed-style server: it answers no `subscribed`, sends no `connected`,
/// and broadcasts what it is sent.
async fn plain_broadcast_server() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else { return };
                // Echo an event for every subscribe, as a plain broadcast would relay one.
                while let Some(Ok(message)) = ws.next().await {
                    if message.to_text().is_ok_and(|text| text.contains("\"subscribe\"")) {
                        let event = json!({"topic": "doc:5", "event": "UPDATED", "data": {
                            "entityId": "5", "payload": {}, "timestamp": "2026-12-06T10:00:00Z"}});
                        let _ = ws.send(event.to_string().into()).await;
                    }
                }
            });
        }
    });
    url
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn against_a_server_that_never_confirms_the_subscription_is_unconfirmed_and_never_live() {
    let url = plain_broadcast_server().await;
    let client = herald::Client::builder(url).connect().unwrap();
    let mut subscription = within(WAIT, "an unconfirmed subscription", client.subscribe("doc:5")).await.unwrap();
    assert!(!subscription.is_confirmed());
    assert_eq!(subscription.position(), None);
    let mut seen = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        while let Some(update) = subscription.next().await {
            seen.push(update);
        }
    })
    .await;
    assert!(matches!(seen.first(), Some(Update::Unconfirmed)), "{seen:?}");
    assert!(!seen.iter().any(|u| matches!(u, Update::Live { .. })), "never Live: {seen:?}");
    let conditional =
        client.publish_with("doc:5", "UPDATED", "5", &json!(1), PublishOptions::default().if_seq(1)).await;
    assert!(matches!(conditional, Err(Error::Unsupported { feature: "if_seq" })), "{conditional:?}");
    client.close().await;
}
