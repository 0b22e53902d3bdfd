//! The native client against the real server through a fault proxy: every
//! fault heals, and sequence numbers prove nothing was lost or duplicated.

use std::time::{Duration, Instant};

use futures::StreamExt;
use herald::{DisconnectReason, ResyncReason, Status, TokenReason, Update};
use herald_server::{Epoch, Server};
use herald_test_support::{
    native::{client, connected, events, reconnecting, server, status, subscribed},
    proxy::FaultProxy,
    within_for as within,
};
use serde_json::json;

const SECONDS_10: Duration = Duration::from_secs(10);

async fn publish(server: &herald_server::ServerHandle, topic: &str, n: u32) -> u64 {
    server.publish(topic, "UPDATED", &n.to_string(), &json!({ "n": n })).await.expect("a valid event").seq
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_cut_every_subscription_is_restored_and_the_outage_is_replayed_exactly_once() {
    let server = server().await;
    let proxy = FaultProxy::start(server.local_addr()).await;
    let client = client(&proxy.ws_url(), "u1");
    let mut a = client.subscribe("gift-list:1").await.unwrap();
    let mut b = client.subscribe("gift-list:2").await.unwrap();
    let a0 = subscribed(&server, &mut a, "gift-list:1").await;
    let b0 = subscribed(&server, &mut b, "gift-list:2").await;
    for n in 0..5 {
        publish(&server, "gift-list:1", n).await;
        publish(&server, "gift-list:2", n).await;
    }
    assert_eq!(events(&mut a, 5).await.0, (a0 + 1..=a0 + 5).collect::<Vec<_>>());

    for round in 0..3 {
        proxy.cut();
        status(&client, "the cut to be noticed", reconnecting).await;
        // Published while the client is away: only recovery can deliver these.
        for n in 0..4 {
            publish(&server, "gift-list:1", 100 + round * 10 + n).await;
            publish(&server, "gift-list:2", 100 + round * 10 + n).await;
        }
        status(&client, "the reconnect", connected).await;
    }
    let (seqs, resyncs) = events(&mut a, 12).await;
    assert_eq!(seqs, (a0 + 6..=a0 + 17).collect::<Vec<_>>(), "every event once, in order");
    assert!(resyncs.is_empty(), "history covered the outage: {resyncs:?}");
    let (seqs, resyncs) = events(&mut b, 17).await;
    assert_eq!(seqs, (b0 + 1..=b0 + 17).collect::<Vec<_>>());
    assert!(resyncs.is_empty());
    client.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_half_open_connection_is_detected_within_the_heartbeat_timeout() {
    let server = server().await;
    let proxy = FaultProxy::start(server.local_addr()).await;
    let client = herald::Client::builder(proxy.ws_url())
        .token("u1")
        .heartbeat(Duration::from_millis(300), Duration::from_millis(300))
        .connect()
        .unwrap();
    let mut sub = client.subscribe("doc:1").await.unwrap();
    let first = subscribed(&server, &mut sub, "doc:1").await;

    proxy.blackhole();
    let blackholed = Instant::now();
    for n in 0..3 {
        publish(&server, "doc:1", n).await;
    }
    status(&client, "the dead connection to be noticed", reconnecting).await;
    let noticed = blackholed.elapsed();
    // Interval + timeout is 600 ms; allow scheduling slack, but far below any TCP timeout.
    assert!(noticed < Duration::from_millis(1500), "took {noticed:?}");
    let (seqs, _) = events(&mut sub, 3).await;
    assert_eq!(seqs, vec![first + 1, first + 2, first + 3], "recovered after the half-open connection");
    client.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beyond_the_history_a_resync_is_emitted_and_live_events_continue() {
    let server = Server::builder().dev(true).history(3, Duration::from_secs(60)).bind("127.0.0.1:0").await.unwrap();
    let proxy = FaultProxy::start(server.local_addr()).await;
    let client = client(&proxy.ws_url(), "u1");
    let mut sub = client.subscribe("gift-list:1").await.unwrap();
    subscribed(&server, &mut sub, "gift-list:1").await;

    proxy.refuse(true);
    proxy.cut();
    status(&client, "the cut", reconnecting).await;
    for n in 0..10 {
        publish(&server, "gift-list:1", n).await;
    }
    proxy.refuse(false);
    let resync = within(SECONDS_10, "a resync", async {
        loop {
            if let Some(Update::Resync { topic, reason }) = sub.next().await {
                return (topic, reason);
            }
        }
    })
    .await;
    assert_eq!(resync.0.as_str(), "gift-list:1");
    assert_eq!(resync.1, ResyncReason::NotRecovered);
    let live = publish(&server, "gift-list:1", 99).await;
    let (seqs, _) = events(&mut sub, 1).await;
    assert_eq!(seqs, vec![live]);
    client.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishes_made_offline_are_delivered_exactly_once_after_reconnect() {
    let server = server().await;
    let proxy = FaultProxy::start(server.local_addr()).await;
    let watcher = client(&server.ws_url(), "watcher");
    let mut watched = watcher.subscribe("orders:7").await.unwrap();
    let first = subscribed(&server, &mut watched, "orders:7").await;

    let publisher = client(&proxy.ws_url(), "publisher");
    publisher.connected().await.unwrap();
    proxy.refuse(true);
    proxy.cut();
    status(&publisher, "the publisher to go offline", reconnecting).await;
    let pending: Vec<_> = (0..5)
        .map(|n| {
            let publisher = publisher.clone();
            tokio::spawn(
                async move { publisher.publish("orders:7", "ADDED", format!("o{n}"), &json!({ "n": n })).await },
            )
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    proxy.refuse(false);
    let mut acked = Vec::new();
    for publish in pending {
        acked.push(within(SECONDS_10, "an ack", publish).await.unwrap().unwrap().seq.unwrap());
    }
    acked.sort_unstable();
    assert_eq!(acked, (first + 1..=first + 5).collect::<Vec<_>>());
    let (seqs, _) = events(&mut watched, 5).await;
    assert_eq!(seqs, acked, "each offline publish reached subscribers once, and nothing more arrived");
    publisher.close().await;
    watcher.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthorized_stops_after_one_token_refresh() {
    let server = Server::builder().secret("s3cret").bind("127.0.0.1:0").await.unwrap();
    let asked = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let client = herald::Client::builder(server.ws_url())
        .token_provider({
            let asked = asked.clone();
            move |reason: TokenReason| {
                asked.lock().unwrap().push(reason);
                async { Ok::<_, std::convert::Infallible>("not-a-jwt".to_owned()) }
            }
        })
        .connect()
        .unwrap();
    status(&client, "the client to stop", |s| matches!(s, Status::Disconnected { .. })).await;
    let Status::Disconnected { reason } = client.status().borrow().clone() else { unreachable!() };
    assert!(matches!(reason, DisconnectReason::Unauthorized { .. }), "{reason}");
    assert!(reason.to_string().contains("check the token"), "{reason}");
    assert_eq!(*asked.lock().unwrap(), [TokenReason::Connect, TokenReason::Unauthorized]);
    let error = client.subscribe("a:1").await.unwrap_err();
    assert!(matches!(error, herald::Error::Stopped(DisconnectReason::Unauthorized { .. })), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_restart_reconnects_at_once_and_recovers_with_the_same_epoch() {
    let mut server = server().await;
    let client = client(&server.ws_url(), "u1");
    let mut sub = client.subscribe("gift-list:1").await.unwrap();
    let first = subscribed(&server, &mut sub, "gift-list:1").await;
    let statuses = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut watch = client.status();
    let recorder = tokio::spawn({
        let statuses = statuses.clone();
        async move {
            while watch.changed().await.is_ok() {
                statuses.lock().unwrap().push(watch.borrow().clone());
            }
        }
    });
    server.restart(Epoch::Same).await.unwrap();
    publish(&server, "gift-list:1", 1).await;
    status(&client, "the reconnect", connected).await;
    let (seqs, resyncs) = events(&mut sub, 1).await;
    assert_eq!(seqs, vec![first + 1]);
    assert!(resyncs.is_empty(), "same epoch, history kept: {resyncs:?}");
    // 1001 with a hint inside the 300 ms spread window: no exponential backoff.
    let first_wait = statuses.lock().unwrap().iter().find_map(|s| match s {
        Status::Reconnecting { attempt: 1, next_in } => Some(*next_in),
        _ => None,
    });
    assert!(first_wait.is_some_and(|wait| wait <= Duration::from_millis(300)), "{first_wait:?}");
    recorder.abort();
    client.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_vanishes_without_a_close_frame_and_comes_back_loses_and_duplicates_nothing() {
    let mut server = server().await;
    let proxy = FaultProxy::start(server.local_addr()).await;
    let client = client(&proxy.ws_url(), "u1");
    let topics = ["gift-list:1", "gift-list:2", "user:7"];
    let mut subs = Vec::new();
    let mut firsts = Vec::new();
    for topic in topics {
        let mut sub = client.subscribe(topic).await.unwrap();
        firsts.push(subscribed(&server, &mut sub, topic).await);
        subs.push(sub);
    }
    for topic in topics {
        publish(&server, topic, 1).await;
    }

    // The crash: every connection ends without a close frame and the port stops answering.
    proxy.refuse(true);
    proxy.cut();
    status(&client, "the crash to be noticed", reconnecting).await;
    server.pause().await;
    // What backends publish meanwhile reaches the restarted server's history (same epoch).
    for n in 2..=4 {
        for topic in topics {
            publish(&server, topic, n).await;
        }
    }
    server.resume(Epoch::Same).await.unwrap();
    proxy.refuse(false);
    status(&client, "the reconnect", connected).await;
    for topic in topics {
        publish(&server, topic, 5).await;
    }

    assert!(proxy.server_closes().is_empty(), "the client got no close frame: {:?}", proxy.server_closes());
    for ((sub, first), topic) in subs.iter_mut().zip(firsts).zip(topics) {
        let (seqs, resyncs) = events(sub, 5).await;
        assert_eq!(seqs, (first + 1..=first + 5).collect::<Vec<_>>(), "{topic}: every event once, in order");
        assert!(resyncs.is_empty(), "{topic}: the history covered the outage: {resyncs:?}");
    }
    // The contrast: a graceful restart does send a close frame, and the proxy sees it.
    server.restart(Epoch::Same).await.unwrap();
    within(SECONDS_10, "the proxy to see the server's close", async {
        while proxy.server_closes().is_empty() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert_eq!(proxy.server_closes(), [1001]);
    client.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_that_lost_the_history_resyncs() {
    let mut server = server().await;
    let client = client(&server.ws_url(), "u1");
    let mut sub = client.subscribe("gift-list:1").await.unwrap();
    subscribed(&server, &mut sub, "gift-list:1").await;
    server.restart(Epoch::New).await.unwrap();
    let resync = within(SECONDS_10, "a resync", async {
        loop {
            if let Some(Update::Resync { reason, .. }) = sub.next().await {
                return reason;
            }
        }
    })
    .await;
    assert_eq!(resync, ResyncReason::NotRecovered);
    // The new epoch numbers from 1 again; the client must not drop it as a duplicate.
    let seq = publish(&server, "gift-list:1", 1).await;
    assert_eq!(events(&mut sub, 1).await.0, vec![seq]);
    client.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backoff_delays_with_jitter_stay_within_their_bounds() {
    let server = server().await;
    let proxy = FaultProxy::start(server.local_addr()).await;
    proxy.refuse(true);
    let mut backoff = herald::BackoffConfig::default();
    backoff.initial = Duration::from_millis(100);
    backoff.max = Duration::from_millis(400);
    let mut watch = {
        let client = herald::Client::builder(proxy.ws_url()).token("u1").backoff(backoff).connect().unwrap();
        let watch = client.status();
        std::mem::forget(client);
        watch
    };
    let mut waits = Vec::new();
    within(SECONDS_10, "six failed attempts", async {
        while waits.len() < 6 {
            watch.changed().await.unwrap();
            if let Status::Reconnecting { next_in, .. } = *watch.borrow() {
                waits.push(next_in);
            }
        }
    })
    .await;
    let mut base = 100.0f64;
    for wait in waits {
        let ms = wait.as_secs_f64() * 1000.0;
        assert!(ms >= base * 0.5 - 1.0 && ms <= base * 1.5 + 1.0, "{ms} ms for base {base} ms");
        base = (base * 2.0).min(400.0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_link_delivers_everything_in_order_and_one_slower_than_the_heartbeat_is_replaced() {
    let server = server().await;
    let proxy = FaultProxy::start(server.local_addr()).await;
    let client = herald::Client::builder(proxy.ws_url())
        .token("u1")
        .heartbeat(Duration::from_millis(400), Duration::from_millis(400))
        .connect()
        .unwrap();
    let mut sub = client.subscribe("doc:2").await.unwrap();
    let first = subscribed(&server, &mut sub, "doc:2").await;
    let accepted = proxy.accepted().len();

    // Slow but alive: 100 ms per chunk, well inside the heartbeat.
    proxy.delay(Duration::from_millis(100));
    for n in 0..5 {
        publish(&server, "doc:2", n).await;
    }
    let (seqs, resyncs) = events(&mut sub, 5).await;
    assert_eq!(seqs, (first + 1..=first + 5).collect::<Vec<_>>());
    assert!(resyncs.is_empty());
    assert_eq!(proxy.accepted().len(), accepted, "a slow link is not a dead one");

    // Slower than interval + timeout: the client gives up on it and reconnects.
    proxy.delay(Duration::from_millis(1500));
    status(&client, "the stalled link to be replaced", reconnecting).await;
    for n in 5..8 {
        publish(&server, "doc:2", n).await;
    }
    proxy.delay(Duration::ZERO);
    let (seqs, resyncs) = events(&mut sub, 3).await;
    assert_eq!(seqs, (first + 6..=first + 8).collect::<Vec<_>>(), "recovered, nothing lost or doubled");
    assert!(resyncs.is_empty(), "{resyncs:?}");
    client.close().await;
}
