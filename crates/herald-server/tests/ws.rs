//! The WebSocket endpoint: auth, fan-out, recovery, publish, presence,
//! heartbeats, limits and shutdown, over real sockets on loopback.

use std::time::Duration;

use herald_protocol::close;
use herald_test_support::*;
use serde_json::json;

async fn jwt_server() -> ServerHandle {
    Server::builder().secret(SECRET).bind("127.0.0.1:0").await.expect("server starts")
}

#[tokio::test]
async fn connected_carries_user_tenant_expiry_and_epoch() {
    let server = jwt_server().await;
    let token = mint_token(SECRET, &Claims::new("u-1", 600).tenant("acme")).unwrap();
    let mut client = Client::connect(&format!("{}?token={token}", server.ws_url())).await;
    let connected = client.recv().await;
    assert_eq!(connected["user_id"], "u-1");
    assert_eq!(connected["tenant_id"], "acme");
    assert_eq!(connected["epoch"], server.epoch());
    let expires_in = connected["expires_in"].as_u64().unwrap();
    assert!((590..=600).contains(&expires_in), "{connected}");
}

#[tokio::test]
async fn first_message_auth_is_accepted() {
    let server = jwt_server().await;
    let mut client = Client::connect(&server.ws_url()).await;
    client.send(&json!({"type":"auth","token":token("u-2")}).to_string()).await;
    assert_eq!(client.recv().await["user_id"], "u-2");
}

#[tokio::test]
async fn missing_auth_closes_4001_after_the_deadline() {
    let mut builder = Server::builder().secret(SECRET);
    builder.config_mut().auth_timeout = Duration::from_millis(200);
    let server = builder.bind("127.0.0.1:0").await.unwrap();
    let mut client = Client::connect(&server.ws_url()).await;
    let (code, reason) = client.closed().await;
    assert_eq!(code, close::UNAUTHORIZED);
    assert!(reason.contains("auth"), "{reason}");
}

#[tokio::test]
async fn bad_token_is_accepted_then_closed_4001_with_a_reason_and_never_logged() {
    let server = jwt_server().await;
    let forged = mint_token("another-secret", &Claims::new("u-1", 600)).unwrap();
    let mut client = Client::connect(&format!("{}?token={forged}", server.ws_url())).await;
    let (code, reason) = client.closed().await;
    assert_eq!(code, close::UNAUTHORIZED);
    assert!(reason.contains("signature") && !reason.contains(&forged), "{reason}");
    assert_eq!(server.metrics().auth_failures, 1);
}

#[tokio::test]
async fn expired_token_closes_4001() {
    let server = jwt_server().await;
    let mut claims = Claims::new("u-1", 0);
    claims.exp -= 60;
    let token = mint_token(SECRET, &claims).unwrap();
    let mut client = Client::connect(&format!("{}?token={token}", server.ws_url())).await;
    let (code, reason) = client.closed().await;
    assert_eq!((code, reason.contains("expired")), (close::UNAUTHORIZED, true), "{reason}");
}

#[tokio::test]
async fn a_token_expiring_without_refresh_closes_4001() {
    let server = jwt_server().await;
    let token = mint_token(SECRET, &Claims::new("u-1", 1)).unwrap();
    let mut client = Client::authed(&server, &token).await;
    let (code, reason) = client.closed().await;
    assert_eq!(code, close::UNAUTHORIZED, "{reason}");
}

#[tokio::test]
async fn refresh_extends_the_session() {
    let server = jwt_server().await;
    // Two seconds: `exp` is whole seconds, so at least one second is left for the refresh.
    let short = mint_token(SECRET, &Claims::new("u-1", 2)).unwrap();
    let mut client = Client::authed(&server, &short).await;
    client.send(&json!({"type":"refresh","token":token("u-1")}).to_string()).await;
    let connected = client.recv().await;
    assert_eq!(connected["type"], "connected");
    assert!(connected["expires_in"].as_u64().unwrap() > 1000, "{connected}");
    // Past the first token's expiry the connection still answers. (Waiting
    // for an absence of a close has no event to await.)
    tokio::time::sleep(Duration::from_millis(2100)).await;
    client.send(r#"{"type":"ping"}"#).await;
    assert_eq!(client.recv().await["type"], "pong");
}

#[tokio::test]
async fn refresh_with_a_bad_token_closes_4001() {
    let server = jwt_server().await;
    let mut client = Client::authed(&server, &token("u-1")).await;
    client.send(r#"{"type":"refresh","token":"garbage"}"#).await;
    assert_eq!(client.closed().await.0, close::UNAUTHORIZED);
}

#[tokio::test]
async fn a_refresh_that_allows_fewer_topics_ends_the_ones_it_no_longer_allows() {
    let server = jwt_server().await;
    let wide = mint_token(SECRET, &Claims::new("u-1", 600).topics(["doc:*", "note:*"])).unwrap();
    let mut client = Client::authed(&server, &wide).await;
    client.subscribe(&["doc:1", "note:1", "note:*"]).await;
    let narrow = mint_token(SECRET, &Claims::new("u-1", 600).topics(["doc:*"])).unwrap();
    client.send(&json!({"type":"refresh","token":narrow}).to_string()).await;
    assert_eq!(client.recv().await["type"], "connected");
    let mut ended = Vec::new();
    for _ in 0..2 {
        let error = client.recv().await;
        assert_eq!(error["code"], 4003, "{error}");
        ended.push(error["topic"].as_str().unwrap().to_owned());
    }
    ended.sort();
    assert_eq!(ended, ["note:*", "note:1"]);
    assert_eq!(server.metrics().subscriptions, 1);
    server.publish("note:1", "UPDATED", "1", &json!({})).await.unwrap();
    let seq = server.publish("doc:1", "UPDATED", "1", &json!({})).await.unwrap().seq;
    let event = client.recv().await;
    assert_eq!((event["topic"].as_str(), event["seq"].as_u64()), (Some("doc:1"), Some(seq)), "nothing of note:1");
}

#[tokio::test]
async fn a_forbidden_topic_gets_error_4003_and_other_subscriptions_work() {
    let server = jwt_server().await;
    let token = mint_token(SECRET, &Claims::new("u-1", 600).topics(["doc:*"])).unwrap();
    let mut client = Client::authed(&server, &token).await;
    client.send(r#"{"type":"subscribe","topics":["admin:1","doc:7"]}"#).await;
    let error = client.recv().await;
    assert_eq!(
        (error["type"].as_str(), error["code"].as_u64(), error["topic"].as_str()),
        (Some("error"), Some(4003), Some("admin:1"))
    );
    let subscribed = client.recv().await;
    assert_eq!(subscribed["topics"], json!(["doc:7"]));
    server.publish("doc:7", "UPDATED", "7", &json!({"n":1})).await.unwrap();
    assert_eq!(client.recv().await["topic"], "doc:7");
}

#[tokio::test]
async fn fan_out_delivers_each_event_once_in_seq_order_including_wildcards() {
    let server = Server::bind("127.0.0.1:0").await.unwrap();
    let mut exact = Client::dev(&server, "u1").await;
    let mut wild = Client::dev(&server, "u2").await;
    let mut both = Client::dev(&server, "u3").await;
    exact.subscribe(&["doc:1"]).await;
    wild.subscribe(&["doc:*"]).await;
    both.send(r#"{"type":"subscribe","topics":["doc:1","doc:*"]}"#).await;
    let subscribed = both.recv().await;
    assert_eq!(subscribed["last_seq"], json!({"doc:1":0,"doc:*":0}), "{subscribed}");
    let queued_before = server.metrics().messages_out;
    for n in 0..3 {
        server.publish("doc:1", "UPDATED", &n.to_string(), &json!(n)).await.unwrap();
    }
    server.publish("doc:2", "ADDED", "x", &json!(null)).await.unwrap();
    for client in [&mut exact, &mut wild, &mut both] {
        for seq in 1..=3 {
            let event = client.recv().await;
            assert_eq!((event["topic"].as_str(), event["seq"].as_u64()), (Some("doc:1"), Some(seq)), "{event}");
        }
    }
    // doc:2 goes to wildcard subscribers only, and once to the one with both.
    assert_eq!(wild.recv().await["topic"], "doc:2");
    assert_eq!(both.recv().await["topic"], "doc:2");
    // Every delivery is counted once: 3 events to 3 subscribers, then 2 for doc:2.
    assert_eq!(server.metrics().messages_out - queued_before, 3 * 3 + 2);
    exact.send(r#"{"type":"ping"}"#).await;
    assert_eq!(exact.recv().await["type"], "pong");
    both.send(r#"{"type":"ping"}"#).await;
    assert_eq!(both.recv().await["type"], "pong");
}

#[tokio::test]
async fn unsubscribe_stops_delivery() {
    let server = Server::bind("127.0.0.1:0").await.unwrap();
    let mut client = Client::dev(&server, "u1").await;
    client.subscribe(&["doc:1", "doc:2"]).await;
    client.send(r#"{"type":"unsubscribe","topics":["doc:1"]}"#).await;
    assert_eq!(client.recv().await, json!({"type":"unsubscribed","topics":["doc:1"]}));
    server.publish("doc:1", "UPDATED", "1", &json!(null)).await.unwrap();
    server.publish("doc:2", "UPDATED", "2", &json!(null)).await.unwrap();
    assert_eq!(client.recv().await["topic"], "doc:2");
    assert_eq!(server.metrics().subscriptions, 1);
}

async fn resubscribe(server: &ServerHandle, user: &str, body: serde_json::Value) -> Client {
    let mut client = Client::dev(server, user).await;
    client.send(&body.to_string()).await;
    client
}

#[tokio::test]
async fn subscribe_with_since_replays_the_gap_then_says_recovered() {
    let server = Server::bind("127.0.0.1:0").await.unwrap();
    for n in 1..=5 {
        server.publish("doc:1", "UPDATED", &n.to_string(), &json!(n)).await.unwrap();
    }
    let body = json!({"type":"subscribe","topics":["doc:1"],"since":{"doc:1":3},"epoch":server.epoch()});
    let mut client = resubscribe(&server, "u1", body).await;
    assert_eq!(client.recv().await["seq"], 4);
    assert_eq!(client.recv().await["seq"], 5);
    let subscribed = client.recv().await;
    assert_eq!(subscribed, json!({"type":"subscribed","topics":["doc:1"],"recovered":true,"last_seq":{"doc:1":5}}));
    server.publish("doc:1", "UPDATED", "6", &json!(6)).await.unwrap();
    assert_eq!(client.recv().await["seq"], 6);
}

#[tokio::test]
async fn a_gap_longer_than_the_history_is_not_recovered() {
    let server = Server::builder().dev(true).history(2, Duration::from_secs(60)).bind("127.0.0.1:0").await.unwrap();
    for n in 1..=5 {
        server.publish("doc:1", "UPDATED", &n.to_string(), &json!(n)).await.unwrap();
    }
    let body = json!({"type":"subscribe","topics":["doc:1"],"since":{"doc:1":1},"epoch":server.epoch()});
    let mut client = resubscribe(&server, "u1", body).await;
    let subscribed = client.recv().await;
    assert_eq!((subscribed["type"].as_str(), subscribed["recovered"].as_bool()), (Some("subscribed"), Some(false)));
    assert_eq!(subscribed["last_seq"]["doc:1"], 5);
}

#[tokio::test]
async fn events_older_than_the_history_age_are_not_replayed() {
    let max_age = Duration::from_secs(1);
    let server = Server::builder().dev(true).history(100, max_age).bind("127.0.0.1:0").await.unwrap();
    for n in 1..=3 {
        server.publish("doc:1", "UPDATED", &n.to_string(), &json!(n)).await.unwrap();
    }
    // Ages out 1..=3; the count limit (100) is far away.
    tokio::time::sleep(max_age + Duration::from_millis(200)).await;
    server.publish("doc:1", "UPDATED", "4", &json!(4)).await.unwrap();

    let body = json!({"type":"subscribe","topics":["doc:1"],"since":{"doc:1":1},"epoch":server.epoch()});
    let mut client = resubscribe(&server, "u1", body).await;
    let subscribed = client.recv().await;
    assert_eq!(subscribed["recovered"], false, "2 and 3 aged out: {subscribed}");
    assert_eq!(subscribed["last_seq"]["doc:1"], 4);

    let body = json!({"type":"subscribe","topics":["doc:1"],"since":{"doc:1":3},"epoch":server.epoch()});
    let mut client = resubscribe(&server, "u2", body).await;
    assert_eq!(client.recv().await["seq"], 4, "a young event is still replayed");
    assert_eq!(client.recv().await["recovered"], true);
}

#[tokio::test]
async fn another_epoch_is_not_recovered() {
    let server = Server::bind("127.0.0.1:0").await.unwrap();
    server.publish("doc:1", "UPDATED", "1", &json!(1)).await.unwrap();
    let body =
        json!({"type":"subscribe","topics":["doc:1","user:*"],"since":{"doc:1":0,"user:*":0},"epoch":"not-this-one"});
    let mut client = resubscribe(&server, "u1", body).await;
    let subscribed = client.recv().await;
    assert_eq!(subscribed["recovered"], false, "{subscribed}");
    assert_eq!(subscribed["topics"], json!(["doc:1", "user:*"]));
}

#[tokio::test]
async fn a_wildcard_resumes_from_its_wildcard_seq_with_what_every_topic_of_its_resource_missed() {
    let server = Server::bind("127.0.0.1:0").await.unwrap();
    server.publish("doc:1", "UPDATED", "1", &json!(1)).await.unwrap();
    let mut client = Client::dev(&server, "u1").await;
    client.send(r#"{"type":"subscribe","topics":["doc:*"]}"#).await;
    let subscribed = client.recv().await;
    let registered = subscribed["last_seq"]["doc:*"].as_u64().expect("a wildcard's position");
    server.publish("doc:1", "UPDATED", "1", &json!(2)).await.unwrap();
    let seen = client.recv().await;
    let seen = seen["wildcard_seq"].as_u64().expect("numbered for wildcards");
    assert!(seen > registered);
    drop(client);

    // Missed: a topic new to the client, one it had seen, and another resource's.
    server.publish("doc:2", "ADDED", "2", &json!(3)).await.unwrap();
    server.publish("doc:1", "UPDATED", "1", &json!(4)).await.unwrap();
    server.publish("note:1", "ADDED", "1", &json!(5)).await.unwrap();
    let body = json!({"type":"subscribe","topics":["doc:*"],"since":{"doc:*":seen},"epoch":server.epoch()});
    let mut client = resubscribe(&server, "u1", body).await;
    let (first, second) = (client.recv().await, client.recv().await);
    assert_eq!((first["topic"].as_str(), first["seq"].as_u64()), (Some("doc:2"), Some(1)), "{first}");
    assert_eq!((second["topic"].as_str(), second["seq"].as_u64()), (Some("doc:1"), Some(3)), "{second}");
    let last = second["wildcard_seq"].as_u64().unwrap();
    assert!(first["wildcard_seq"].as_u64().unwrap() > seen && last > first["wildcard_seq"].as_u64().unwrap());
    assert_eq!(
        client.recv().await,
        json!({"type":"subscribed","topics":["doc:*"],"recovered":true,"last_seq":{"doc:*":last}})
    );
    // Live from there, in order.
    server.publish("doc:3", "ADDED", "3", &json!(6)).await.unwrap();
    assert!(client.recv().await["wildcard_seq"].as_u64().unwrap() > last);
}

/// A dev server keeping `history_len` events per topic, and the position of
/// `doc:*` a client that has gone since was given there.
async fn wildcard_position_on_a_server_keeping(history_len: usize) -> (ServerHandle, u64) {
    let server =
        Server::builder().dev(true).history(history_len, Duration::from_secs(60)).bind("127.0.0.1:0").await.unwrap();
    let mut client = Client::dev(&server, "u1").await;
    client.send(r#"{"type":"subscribe","topics":["doc:*"]}"#).await;
    let position = client.recv().await["last_seq"]["doc:*"].as_u64().unwrap();
    (server, position)
}

#[tokio::test]
async fn a_wildcard_position_whose_events_left_their_history_is_not_recovered() {
    let (server, position) = wildcard_position_on_a_server_keeping(2).await;
    // doc:1 keeps its last two events: its first after the position is gone.
    for n in 1..=3 {
        server.publish("doc:1", "UPDATED", "1", &json!(n)).await.unwrap();
    }
    let body = json!({"type":"subscribe","topics":["doc:*"],"since":{"doc:*":position},"epoch":server.epoch()});
    let mut client = resubscribe(&server, "u1", body).await;
    let subscribed = client.recv().await;
    assert_eq!((subscribed["type"].as_str(), subscribed["recovered"].as_bool()), (Some("subscribed"), Some(false)));
    let now = subscribed["last_seq"]["doc:*"].as_u64().unwrap();
    assert!(now > position, "{subscribed}");
    // From the new position, the next events replay again.
    server.publish("doc:2", "ADDED", "2", &json!(4)).await.unwrap();
    let body = json!({"type":"subscribe","topics":["doc:*"],"since":{"doc:*":now},"epoch":server.epoch()});
    let mut client = resubscribe(&server, "u2", body).await;
    assert_eq!(client.recv().await["topic"], "doc:2");
    assert_eq!(client.recv().await["recovered"], true);
}

#[tokio::test]
async fn a_wildcard_replays_at_most_ten_times_the_history_length_and_resyncs_past_it() {
    let (server, position) = wildcard_position_on_a_server_keeping(1).await;
    // Each topic keeps its last event: ten topics, ten events to replay.
    for n in 0..10 {
        server.publish(&format!("doc:{n}"), "ADDED", "x", &json!(n)).await.unwrap();
    }
    let body = json!({"type":"subscribe","topics":["doc:*"],"since":{"doc:*":position},"epoch":server.epoch()});
    let mut client = resubscribe(&server, "u1", body.clone()).await;
    for n in 0..10 {
        assert_eq!(client.recv().await["topic"], format!("doc:{n}"));
    }
    assert_eq!(client.recv().await["recovered"], true, "ten times a history of one");
    // One more is past the bound: the client resyncs rather than replaying them.
    server.publish("doc:10", "ADDED", "x", &json!(10)).await.unwrap();
    let mut client = resubscribe(&server, "u2", body).await;
    let subscribed = client.recv().await;
    assert_eq!((subscribed["type"].as_str(), subscribed["recovered"].as_bool()), (Some("subscribed"), Some(false)));
}

#[tokio::test]
async fn restart_with_the_same_epoch_keeps_history_and_a_new_epoch_loses_it() {
    let mut server = Server::bind("127.0.0.1:0").await.unwrap();
    let addr = server.local_addr();
    let epoch = server.epoch();
    let mut client = Client::dev(&server, "u1").await;
    client.subscribe(&["doc:1"]).await;
    server.publish("doc:1", "UPDATED", "1", &json!(1)).await.unwrap();
    assert_eq!(client.recv().await["seq"], 1);

    let restarting = tokio::spawn(async move {
        server.restart(Epoch::Same).await.unwrap();
        server
    });
    let (code, reason) = client.closed().await;
    assert_eq!(code, close::GOING_AWAY);
    assert!(close::retry_after_ms(&reason).is_some_and(|ms| ms < 5_000), "{reason}");
    let server = within("the restart", restarting).await.unwrap();
    assert_eq!((server.local_addr(), server.epoch()), (addr, epoch.clone()));
    server.publish("doc:1", "UPDATED", "2", &json!(2)).await.unwrap();
    let body = json!({"type":"subscribe","topics":["doc:1"],"since":{"doc:1":1},"epoch":epoch});
    let mut client = resubscribe(&server, "u1", body.clone()).await;
    assert_eq!(client.recv().await["seq"], 2);
    assert_eq!(client.recv().await["recovered"], true);

    let mut server = server;
    let restarting = tokio::spawn(async move {
        server.restart(Epoch::New).await.unwrap();
        server
    });
    assert_eq!(client.closed().await.0, close::GOING_AWAY);
    let server = within("the restart", restarting).await.unwrap();
    assert_ne!(server.epoch(), epoch);
    let mut client = Client::dev(&server, "u1").await;
    client.send(&body.to_string()).await;
    assert_eq!(client.recv().await["recovered"], false);
}

#[tokio::test]
async fn events_published_while_paused_are_replayed_after_resume() {
    let mut server = Server::bind("127.0.0.1:0").await.unwrap();
    let addr = server.local_addr();
    let epoch = server.epoch();
    let mut client = Client::dev(&server, "u1").await;
    client.subscribe(&["doc:1"]).await;
    server.publish("doc:1", "UPDATED", "1", &json!(1)).await.unwrap();
    assert_eq!(client.recv().await["seq"], 1);

    let pausing = tokio::spawn(async move {
        server.pause().await;
        server
    });
    assert_eq!(client.closed().await.0, close::GOING_AWAY);
    let mut server = within("the pause", pausing).await.unwrap();
    assert!(tokio::net::TcpStream::connect(addr).await.is_err(), "a paused server does not listen");
    let mut during = Vec::new();
    for n in 2..=4 {
        during.push(server.publish("doc:1", "UPDATED", "1", &json!(n)).await.unwrap().seq);
    }
    assert_eq!(during, [2, 3, 4]);

    server.resume(Epoch::Same).await.unwrap();
    let body = json!({"type":"subscribe","topics":["doc:1"],"since":{"doc:1":1},"epoch":epoch});
    let mut client = resubscribe(&server, "u1", body).await;
    for seq in during {
        assert_eq!(client.recv().await["seq"], seq);
    }
    assert_eq!(client.recv().await["recovered"], true);
}

#[tokio::test]
async fn graceful_shutdown_closes_1001_with_spread_reconnect_hints() {
    let server = Server::builder().dev(true).shutdown_spread(Duration::from_secs(3)).bind("127.0.0.1:0").await.unwrap();
    let mut clients = Vec::new();
    for n in 0..5 {
        clients.push(Client::dev(&server, &format!("u{n}")).await);
    }
    let shutdown = tokio::spawn(server.shutdown());
    for client in &mut clients {
        let (code, reason) = client.closed().await;
        assert_eq!(code, close::GOING_AWAY);
        assert!(close::retry_after_ms(&reason).is_some_and(|ms| ms < 3_000), "{reason}");
    }
    within("the shutdown", shutdown).await.unwrap();
}

#[tokio::test]
async fn client_publish_is_acked_and_a_retransmission_is_not_rebroadcast() {
    let server = Server::bind("127.0.0.1:0").await.unwrap();
    let mut watcher = Client::dev(&server, "watcher").await;
    watcher.subscribe(&["doc:1"]).await;
    let mut publisher = Client::dev(&server, "writer").await;
    let publish = |id: &str| {
        json!({"type":"publish","id":id,"topic":"doc:1","event":"UPDATED",
               "data":{"entity_id":"1","payload":{"a":1},"user_id":"forged","timestamp":"2026-01-01T00:00:00Z"}})
        .to_string()
    };
    publisher.send(&publish("p-1")).await;
    assert_eq!(publisher.recv().await, json!({"type":"ack","id":"p-1","seq":1,"epoch":server.epoch()}));
    publisher.send(&publish("p-1")).await;
    assert_eq!(
        publisher.recv().await,
        json!({"type":"ack","id":"p-1","seq":1,"epoch":server.epoch(),"duplicate":true})
    );
    publisher.send(&publish("p-2")).await;
    assert_eq!(publisher.recv().await["seq"], 2);
    let first = watcher.recv().await;
    assert_eq!((first["seq"].as_u64(), first["data"]["user_id"].as_str()), (Some(1), Some("writer")));
    assert_eq!(watcher.recv().await["seq"], 2, "the duplicate was not broadcast");
}

#[tokio::test]
async fn a_publish_id_is_forgotten_after_the_dedup_window() {
    let window = Duration::from_secs(1);
    let mut builder = Server::builder().dev(true);
    builder.config_mut().dedup_window = window;
    let server = builder.bind("127.0.0.1:0").await.unwrap();
    let mut watcher = Client::dev(&server, "watcher").await;
    watcher.subscribe(&["doc:1"]).await;
    let mut publisher = Client::dev(&server, "writer").await;
    let publish = json!({"type":"publish","id":"p-1","topic":"doc:1","event":"UPDATED",
        "data":{"entity_id":"1","payload":null,"timestamp":"2026-01-01T00:00:00Z"}})
    .to_string();
    publisher.send(&publish).await;
    assert_eq!(publisher.recv().await, json!({"type":"ack","id":"p-1","seq":1,"epoch":server.epoch()}));
    publisher.send(&publish).await;
    assert_eq!(
        publisher.recv().await,
        json!({"type":"ack","id":"p-1","seq":1,"epoch":server.epoch(),"duplicate":true})
    );
    tokio::time::sleep(window + Duration::from_millis(200)).await;
    publisher.send(&publish).await;
    assert_eq!(
        publisher.recv().await,
        json!({"type":"ack","id":"p-1","seq":2,"epoch":server.epoch()}),
        "a new publish after the window"
    );
    assert_eq!(watcher.recv().await["seq"], 1);
    assert_eq!(watcher.recv().await["seq"], 2);
}

/// Two connections of one user send the same publish ids at the same time
/// (a client retransmitting on a new connection while the old one still
/// delivers): each id is broadcast once, and both copies are acked with its seq.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_publish_racing_on_two_connections_is_broadcast_once() {
    const IDS: u64 = 1_000;
    let server = Server::bind("127.0.0.1:0").await.unwrap();
    let mut watcher = Client::dev(&server, "watcher").await;
    watcher.subscribe(&["doc:1"]).await;
    let mut copies = Vec::new();
    for _ in 0..2 {
        copies.push(Client::dev(&server, "writer").await);
    }
    let go = std::sync::Arc::new(tokio::sync::Barrier::new(2));
    let senders: Vec<_> = copies
        .into_iter()
        .map(|mut copy| {
            let go = go.clone();
            tokio::spawn(async move {
                go.wait().await;
                for n in 0..IDS {
                    let publish = json!({"type":"publish","id":format!("p-{n}"),"topic":"doc:1","event":"UPDATED",
                        "data":{"entity_id":n.to_string(),"payload":n,"timestamp":"2026-01-01T00:00:00Z"}});
                    copy.send(&publish.to_string()).await;
                }
                let mut acks = std::collections::BTreeMap::new();
                while acks.len() < IDS as usize {
                    let ack = copy.recv().await;
                    let id = ack["id"].as_str().expect("an ack").to_owned();
                    acks.insert(id, (ack["seq"].as_u64().unwrap(), ack["duplicate"] == true));
                }
                acks
            })
        })
        .collect();
    let mut acks = Vec::new();
    for sender in senders {
        acks.push(within("the acks", sender).await.unwrap());
    }
    for n in 0..IDS {
        let id = format!("p-{n}");
        let ((seq_a, dup_a), (seq_b, dup_b)) = (acks[0][&id], acks[1][&id]);
        assert_eq!(seq_a, seq_b, "both copies of {id} are acked with one seq");
        assert!(dup_a != dup_b, "exactly one copy of {id} was new: {dup_a} {dup_b}");
    }
    let last = server.publish("doc:1", "UPDATED", "last", &json!("last")).await.unwrap().seq;
    assert_eq!(last, IDS + 1, "one broadcast per id");
    let mut seen = Vec::new();
    loop {
        let event = watcher.recv().await;
        seen.push(event["seq"].as_u64().unwrap());
        if event["data"]["entity_id"] == "last" {
            break;
        }
    }
    assert_eq!(seen, (1..=IDS + 1).collect::<Vec<_>>());
}

#[tokio::test]
async fn publish_without_permission_gets_error_4003_naming_the_id() {
    let server = jwt_server().await;
    let mut client = Client::authed(&server, &token("reader")).await;
    client
        .send(r#"{"type":"publish","id":"p-9","topic":"doc:1","event":"ADDED","data":{"entity_id":"1","payload":null,"timestamp":"2026-01-01T00:00:00Z"}}"#)
        .await;
    let error = client.recv().await;
    assert_eq!((error["code"].as_u64(), error["id"].as_str()), (Some(4003), Some("p-9")), "{error}");
}

#[tokio::test]
async fn presence_sends_a_snapshot_then_joins_and_leaves() {
    let server = Server::bind("127.0.0.1:0").await.unwrap();
    let mut alice = Client::dev(&server, "alice").await;
    alice.send(r#"{"type":"subscribe","topics":["doc:7"],"presence":true}"#).await;
    assert_eq!(alice.recv().await["type"], "subscribed");
    assert_eq!(alice.recv().await, json!({"type":"presence","topic":"doc:7","members":["alice"]}));
    let mut bob = Client::dev(&server, "bob").await;
    bob.send(r#"{"type":"subscribe","topics":["doc:7"],"presence":true}"#).await;
    assert_eq!(bob.recv().await["type"], "subscribed");
    assert_eq!(bob.recv().await["members"], json!(["alice", "bob"]));
    alice.presence_until("doc:7", "joined", "bob").await;
    drop(bob);
    let diff = alice.presence_until("doc:7", "left", "bob").await;
    assert_eq!(diff["joined"], json!([]), "{diff}");
}

#[tokio::test]
async fn pings_are_answered_and_the_server_pings_on_its_interval() {
    let server = Server::builder()
        .dev(true)
        .heartbeat(Duration::from_millis(100), Duration::from_secs(30))
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let mut client = Client::dev(&server, "u1").await;
    client.send(r#"{"type":"ping"}"#).await;
    let mut saw_pong = false;
    let mut saw_ping = false;
    while !(saw_pong && saw_ping) {
        match client.recv_any().await["type"].as_str() {
            Some("pong") => saw_pong = true,
            Some("ping") => saw_ping = true,
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[tokio::test]
async fn origins_outside_the_allow_list_are_closed_4003_after_the_upgrade() {
    let server = Server::builder().dev(true).allowed_origin("https://app.example").bind("127.0.0.1:0").await.unwrap();
    let url = format!("{}?token=u1", server.ws_url());
    let mut evil = Client::connect_with_origin(&url, "https://evil.example").await;
    assert_eq!(evil.closed().await.0, close::FORBIDDEN);
    let mut good = Client::connect_with_origin(&url, "https://app.example").await;
    assert_eq!(good.recv().await["type"], "connected");
}

#[tokio::test]
async fn disconnect_all_imitates_drops_for_client_tests() {
    let server = Server::bind("127.0.0.1:0").await.unwrap();
    let mut client = Client::dev(&server, "u1").await;
    server.disconnect_all(close::TOO_SLOW);
    assert_eq!(client.closed().await.0, close::TOO_SLOW);
    eventually("the connection to be freed", || server.metrics().connections == 0).await;
}

#[tokio::test]
async fn presence_carries_each_members_metadata_and_its_changes() {
    let server = Server::bind("127.0.0.1:0").await.unwrap();
    let mut alice = Client::dev(&server, "alice").await;
    alice.send(r#"{"type":"subscribe","topics":["doc:7"],"presence":true,"meta":{"name":"Ann"}}"#).await;
    assert_eq!(alice.recv().await["type"], "subscribed");
    assert_eq!(
        alice.recv().await,
        json!({"type":"presence","topic":"doc:7","members":["alice"],"meta":{"alice":{"name":"Ann"}}})
    );
    let mut bob = Client::dev(&server, "bob").await;
    bob.send(r#"{"type":"subscribe","topics":["doc:7"],"presence":true}"#).await;
    assert_eq!(bob.recv().await["type"], "subscribed");
    let snapshot = bob.recv().await;
    assert_eq!((&snapshot["members"], &snapshot["meta"]), (&json!(["alice", "bob"]), &json!({"alice":{"name":"Ann"}})));
    let diff = alice.presence_until("doc:7", "joined", "bob").await;
    assert_eq!(diff["meta"].get("bob"), None, "bob set none: {diff}");

    alice.send(r##"{"type":"set_presence","topic":"doc:7","meta":{"name":"Ann","colour":"#f80"}}"##).await;
    // Diffs of the join may come first; the change names alice again.
    loop {
        let diff = bob.presence_until("doc:7", "joined", "alice").await;
        assert_eq!(diff["left"], json!([]), "{diff}");
        if diff["meta"]["alice"] == json!({"name":"Ann","colour":"#f80"}) {
            break;
        }
        assert_eq!(diff["meta"]["alice"], json!({"name":"Ann"}), "{diff}");
    }
}

#[tokio::test]
async fn bad_presence_metadata_is_refused_with_the_reason_and_the_connection_goes_on() {
    let server = Server::bind("127.0.0.1:0").await.unwrap();
    let mut alice = Client::dev(&server, "alice").await;
    let big = "x".repeat(600);
    let cases = [
        (
            r#"{"type":"set_presence","topic":"doc:7","meta":{"name":"Ann"}}"#.to_owned(),
            "not listed in the presence of doc:7",
        ),
        (format!(r#"{{"type":"set_presence","topic":"doc:7","meta":{{"bio":"{big}"}}}}"#), "the limit is 512"),
        (r#"{"type":"set_presence","topic":"doc:7","meta":"Ann"}"#.to_owned(), "meta must be a JSON object"),
        (r#"{"type":"set_presence","topic":"doc:*","meta":{}}"#.to_owned(), "wildcard"),
        (r#"{"type":"subscribe","topics":["doc:7"],"meta":{"name":"Ann"}}"#.to_owned(), "add \"presence\": true"),
    ];
    for (frame, reason) in cases {
        alice.send(&frame).await;
        let error = alice.recv().await;
        assert_eq!((error["type"].as_str(), error["code"].as_u64()), (Some("error"), Some(400)), "{frame}: {error}");
        assert!(error["message"].as_str().unwrap().contains(reason), "{frame}: {error}");
    }
    let subscribed = alice.subscribe(&["doc:8"]).await;
    assert_eq!(subscribed["topics"], json!(["doc:8"]), "the connection goes on");
}

#[tokio::test]
async fn publishes_sent_back_to_back_on_one_connection_keep_their_order_and_are_acked_in_it() {
    let server = Server::builder().dev(true).rate_limit(0, 0, 0).bind("127.0.0.1:0").await.unwrap();
    let mut reader = Client::dev(&server, "reader").await;
    reader.subscribe(&["doc:1"]).await;
    Client::dev(&server, "writer").await.publishes_keep_their_order(&mut reader, "doc:1", 200).await;
}
