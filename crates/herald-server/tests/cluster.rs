//! Several nodes on one real `redis-server`: every subscriber of a topic, on
//! any node, sees the same gap-free `seq` order; a client recovers on another
//! node; publish ids are remembered across nodes; a Redis that restarts
//! gives the cluster a new epoch and clients resync.

use std::time::Duration;

use herald_server::{HeraldBuilder, ServerError};
use herald_test_support::{
    process::free_port,
    tls::{CertFiles, TestCa},
    *,
};
use serde_json::{Value, json};

/// Events each of the four publishers sends in the interleaving test.
const PER_PUBLISHER: usize = 15;

/// A node of the cluster on the Redis at `url`, to configure further.
fn on(url: String) -> HeraldBuilder {
    Server::builder().dev(true).redis(url).shutdown_spread(Duration::from_millis(300))
}

async fn node(redis: &RedisServer) -> ServerHandle {
    on(redis.url()).bind("127.0.0.1:0").await.expect("the node joins the cluster")
}

fn publish_frame(id: &str, payload: &str) -> String {
    json!({"type":"publish","id":id,"topic":"doc:1","event":"UPDATED",
        "data":{"entity_id":"1","payload":payload,"timestamp":"2026-01-01T00:00:00Z"}})
    .to_string()
}

/// Publishes over WebSocket and returns the ack.
async fn publish_ws(client: &mut Client, id: &str, payload: &str) -> Value {
    client.send(&publish_frame(id, payload)).await;
    let ack = client.recv().await;
    assert_eq!((&ack["type"], &ack["id"]), (&json!("ack"), &json!(id)), "{ack}");
    ack
}

/// `POST /api/publish` as `user` (a dev token), with an optional id; returns status and answer.
async fn publish_http(server: &ServerHandle, user: &str, id: Option<&str>, payload: &str) -> (u16, Value) {
    let mut body = json!({"topic":"doc:1","event":"UPDATED","data":{"entity_id":"1","payload":payload}});
    if let Some(id) = id {
        body["id"] = json!(id);
    }
    let (status, answer) = post_publish(server, user, &body.to_string()).await;
    (status, serde_json::from_str(&answer).unwrap_or_else(|_| panic!("JSON, got {answer}")))
}

/// The next `count` events as (seq, payload).
async fn events(client: &mut Client, count: usize) -> Vec<(u64, String)> {
    let mut events = Vec::new();
    while events.len() < count {
        let event = client.recv().await;
        assert!(event["seq"].is_u64(), "expected an event, got {event}");
        events.push((event["seq"].as_u64().unwrap(), event["data"]["payload"].as_str().unwrap().to_owned()));
    }
    events
}

fn seqs(events: &[(u64, String)]) -> Vec<u64> {
    events.iter().map(|(seq, _)| *seq).collect()
}

async fn healthz(server: &ServerHandle) -> u16 {
    http(server, "GET", "/healthz", &[], "").await.0
}

/// Waits until `/healthz` answers `status`.
async fn health_becomes(server: &ServerHandle, status: u16) {
    within("the node's health to change", async {
        while healthz(server).await != status {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribers_on_two_nodes_see_interleaved_publishes_in_one_gap_free_order() {
    let redis = RedisServer::start().await;
    let (a, b) = (node(&redis).await, node(&redis).await);
    assert_eq!(a.epoch(), b.epoch(), "the epoch is the cluster's");
    let mut on_a = Client::dev(&a, "reader-a").await;
    let mut on_b = Client::dev(&b, "reader-b").await;
    for reader in [&mut on_a, &mut on_b] {
        let subscribed = reader.subscribe(&["doc:1"]).await;
        // Nothing was published yet: Redis says so, though the nodes saw no event.
        assert_eq!(subscribed["last_seq"], json!({"doc:1": 0}), "{subscribed}");
    }

    // Four publishers at once: WebSocket and HTTP, through each node.
    async fn ws(server: &ServerHandle, name: &str) -> Vec<u64> {
        let mut client = Client::dev(server, name).await;
        let mut acked = Vec::new();
        for n in 0..PER_PUBLISHER {
            let ack = publish_ws(&mut client, &format!("p-{n}"), &format!("{name}-{n}")).await;
            acked.push(ack["seq"].as_u64().expect("a seq"));
        }
        acked
    }
    async fn post(server: &ServerHandle, name: &str) -> Vec<u64> {
        let mut acked = Vec::new();
        for n in 0..PER_PUBLISHER {
            let (status, answer) = publish_http(server, name, None, &format!("{name}-{n}")).await;
            assert_eq!(status, 200, "{answer}");
            acked.push(answer["seq"].as_u64().expect("a seq"));
        }
        acked
    }
    let (ws_a, ws_b, http_a, http_b) =
        tokio::join!(ws(&a, "ws-a"), ws(&b, "ws-b"), post(&a, "http-a"), post(&b, "http-b"));
    let total = 4 * PER_PUBLISHER;
    let mut acked: Vec<u64> = [ws_a, ws_b, http_a, http_b].concat();
    acked.sort_unstable();
    assert_eq!(acked, (1..=total as u64).collect::<Vec<_>>(), "every publish got its own seq");

    let (seen_a, seen_b) = (events(&mut on_a, total).await, events(&mut on_b, total).await);
    assert_eq!(seqs(&seen_a), (1..=total as u64).collect::<Vec<_>>(), "gap-free, in order, once each");
    assert_eq!(seen_a, seen_b, "both nodes deliver the same events in the same order");
    let payloads: std::collections::HashSet<&String> = seen_a.iter().map(|(_, payload)| payload).collect();
    assert_eq!(payloads.len(), total, "no event twice");
    // Both nodes now know the position.
    for server in [&a, &b] {
        let mut late = Client::dev(server, "late").await;
        assert_eq!(late.subscribe(&["doc:1"]).await["last_seq"], json!({"doc:1": total}));
    }
    // Each node times its publishes through Redis (docs/operations.md).
    for server in [&a, &b] {
        let metrics = http(server, "GET", "/metrics", &[], "").await.1;
        assert!(metrics.contains("\nherald_cluster_bus_up 1\n"), "{metrics}");
        let count = metrics.lines().find_map(|line| line.strip_prefix("herald_cluster_publish_seconds_count "));
        let count: u64 = count.and_then(|n| n.parse().ok()).unwrap_or_else(|| panic!("{metrics}"));
        assert!(count >= 2 * PER_PUBLISHER as u64, "{count} publishes timed");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_moves_to_another_node_recovers_what_it_missed_exactly_once() {
    let redis = RedisServer::start().await;
    let (a, b) = (node(&redis).await, node(&redis).await);
    let mut client = Client::dev(&a, "mover").await;
    client.subscribe(&["doc:1"]).await;
    // Shows when node B has applied an event.
    let mut watcher = Client::dev(&b, "watcher").await;
    watcher.subscribe(&["doc:1"]).await;
    for n in 1..=3 {
        b.publish("doc:1", "UPDATED", "1", &json!(format!("before-{n}"))).await.unwrap();
    }
    assert_eq!(seqs(&events(&mut client, 3).await), [1, 2, 3]);
    drop(client);

    // Published through both nodes while the client is away.
    for n in 4..=6 {
        let node = if n % 2 == 0 { &a } else { &b };
        node.publish("doc:1", "UPDATED", "1", &json!(format!("away-{n}"))).await.unwrap();
    }
    assert_eq!(seqs(&events(&mut watcher, 6).await), (1..=6).collect::<Vec<_>>());
    let mut moved = Client::dev(&b, "mover").await;
    let body = json!({"type":"subscribe","topics":["doc:1"],"since":{"doc:1":3},"epoch":a.epoch()});
    moved.send(&body.to_string()).await;
    let replayed = events(&mut moved, 3).await;
    assert_eq!(seqs(&replayed), [4, 5, 6], "the missed events, once each, from either node");
    let subscribed = moved.recv().await;
    assert_eq!(subscribed, json!({"type":"subscribed","topics":["doc:1"],"recovered":true,"last_seq":{"doc:1":6}}));
    a.publish("doc:1", "UPDATED", "1", &json!("after")).await.unwrap();
    assert_eq!(events(&mut moved, 1).await, [(7, "after".to_owned())], "live delivery goes on, nothing twice");
}

/// The next event's topic, `seq` and `wildcard_seq`.
async fn numbered(client: &mut Client) -> (String, u64, u64) {
    let event = client.recv().await;
    let numbers = (event["seq"].as_u64(), event["wildcard_seq"].as_u64());
    let (Some(seq), Some(wildcard_seq)) = numbers else { panic!("expected a numbered event, got {event}") };
    (event["topic"].as_str().unwrap().to_owned(), seq, wildcard_seq)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wildcard_that_moves_to_another_node_recovers_what_every_topic_missed() {
    let redis = RedisServer::start().await;
    let (a, b) = (node(&redis).await, node(&redis).await);
    let mut client = Client::dev(&a, "mover").await;
    let subscribed = client.subscribe(&["doc:*"]).await;
    assert!(subscribed["last_seq"]["doc:*"].is_u64(), "a node listening knows where the numbers stand: {subscribed}");
    // Shows when node B has applied an event.
    let mut watcher = Client::dev(&b, "watcher").await;
    watcher.subscribe(&["doc:*"]).await;
    b.publish("doc:1", "UPDATED", "1", &json!("before")).await.unwrap();
    let (_, _, position) = numbered(&mut client).await;
    drop(client);

    // While it is away, through both nodes: a topic new to it, and one it saw.
    a.publish("doc:2", "ADDED", "2", &json!("away-1")).await.unwrap();
    b.publish("doc:1", "UPDATED", "1", &json!("away-2")).await.unwrap();
    a.publish("note:1", "ADDED", "1", &json!("another resource")).await.unwrap();
    for _ in 0..3 {
        numbered(&mut watcher).await;
    }
    let since = json!({"type":"subscribe","topics":["doc:*"],"since":{"doc:*":position},"epoch":a.epoch()});
    let mut moved = Client::dev(&b, "mover").await;
    moved.send(&since.to_string()).await;
    let (first, second) = (numbered(&mut moved).await, numbered(&mut moved).await);
    assert_eq!((first.0.as_str(), first.1, second.0.as_str(), second.1), ("doc:2", 1, "doc:1", 2));
    assert!(position < first.2 && first.2 < second.2);
    assert_eq!(
        moved.recv().await,
        json!({"type":"subscribed","topics":["doc:*"],"recovered":true,"last_seq":{"doc:*":second.2}})
    );
    a.publish("doc:3", "ADDED", "3", &json!("after")).await.unwrap();
    let third = numbered(&mut moved).await;
    assert_eq!(third.0, "doc:3", "live after the replay, once");

    // A node that joined after those events reads them from Redis.
    let c = node(&redis).await;
    let mut late = Client::dev(&c, "mover").await;
    late.send(&since.to_string()).await;
    let mut replayed = Vec::new();
    for _ in 0..3 {
        replayed.push(numbered(&mut late).await);
    }
    assert_eq!(replayed, [first, second, third.clone()], "from Redis, in order");
    assert_eq!(
        late.recv().await,
        json!({"type":"subscribed","topics":["doc:*"],"recovered":true,"last_seq":{"doc:*":third.2}})
    );
    b.publish("doc:2", "UPDATED", "2", &json!("live")).await.unwrap();
    assert_eq!(numbered(&mut late).await.0, "doc:2", "then live");

    // A position from before what Redis keeps cannot be recovered.
    let trimmed = on(redis.url()).history(1, Duration::from_secs(300)).bind("127.0.0.1:0").await.unwrap();
    for n in 0..12 {
        trimmed.publish(&format!("doc:{n}"), "ADDED", "x", &json!(n)).await.unwrap();
    }
    let d = node(&redis).await;
    let mut old = Client::dev(&d, "mover").await;
    old.send(&since.to_string()).await;
    assert_eq!(old.recv().await["recovered"], false, "ten of one resource's events at most, with one per topic");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_poll_on_another_node_recovers_within_the_epoch_only() {
    let redis = RedisServer::start().await;
    let (a, b) = (node(&redis).await, node(&redis).await);
    let mut watcher = Client::dev(&b, "watcher").await;
    watcher.subscribe(&["doc:1"]).await;
    for n in 1..=3 {
        a.publish("doc:1", "UPDATED", "1", &json!(n.to_string())).await.unwrap();
    }
    assert_eq!(seqs(&events(&mut watcher, 3).await), [1, 2, 3], "node B has them");
    let poll = |epoch: &str| format!("/api/poll?topics=doc:1&since=1&epoch={epoch}&token=u");
    let (status, answer) = http(&b, "GET", &poll(&a.epoch()), &[], "").await;
    assert_eq!(status, 200, "{answer}");
    let answer: Value = serde_json::from_str(&answer).unwrap();
    assert_eq!((&answer["recovered"], &answer["last_seq"]), (&json!(true), &json!({"doc:1": 3})), "{answer}");
    let replayed: Vec<&Value> = answer["events"].as_array().unwrap().iter().map(|e| &e["seq"]).collect();
    assert_eq!(replayed, [&json!(2), &json!(3)]);
    let answer: Value = serde_json::from_str(&http(&b, "GET", &poll("another"), &[], "").await.1).unwrap();
    assert_eq!((&answer["recovered"], &answer["events"]), (&json!(false), &json!([])), "{answer}");
}

/// A node keeping `len` events of each topic, in Redis too.
async fn node_keeping(redis: &RedisServer, len: usize) -> ServerHandle {
    on(redis.url())
        .history(len, Duration::from_secs(300))
        .bind("127.0.0.1:0")
        .await
        .expect("the node joins the cluster")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_joins_or_restarts_later_serves_a_since_from_before_it_joined() {
    let redis = RedisServer::start().await;
    let a = node(&redis).await;
    for n in 1..=3 {
        a.publish("doc:1", "UPDATED", "1", &json!(n.to_string())).await.unwrap();
    }
    // Node C never saw those events; it reads them from the cluster's history.
    let c = node(&redis).await;
    let epoch = a.epoch().to_string();
    let since = |seq: u64| json!({"type":"subscribe","topics":["doc:1"],"since":{"doc:1":seq},"epoch":epoch});
    let mut moved = Client::dev(&c, "u").await;
    moved.send(&since(1).to_string()).await;
    assert_eq!(events(&mut moved, 2).await, [(2, "2".to_owned()), (3, "3".to_owned())]);
    let subscribed = moved.recv().await;
    assert_eq!(subscribed, json!({"type":"subscribed","topics":["doc:1"],"recovered":true,"last_seq":{"doc:1":3}}));
    a.publish("doc:1", "UPDATED", "1", &json!("4")).await.unwrap();
    assert_eq!(events(&mut moved, 1).await, [(4, "4".to_owned())], "live after the replay, once");

    // A node that restarts (a deploy) serves it at once too, over SSE as well.
    a.shutdown().await;
    let a = node(&redis).await;
    let mut back = Client::dev(&a, "u").await;
    back.send(&since(2).to_string()).await;
    assert_eq!(seqs(&events(&mut back, 2).await), [3, 4]);
    assert_eq!(back.recv().await["recovered"], json!(true));
    let path = format!("/sse?topics=doc:1&token=u&epoch={epoch}");
    let (status, mut sse) = Sse::open(&a, &path, &[("Last-Event-ID", "3")]).await;
    assert_eq!(status, 200);
    let field =
        |fields: &[(String, String)], name: &str| fields.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone());
    assert_eq!(field(&sse.next().await, "event").as_deref(), Some("herald.connected"));
    assert_eq!(field(&sse.next().await, "id").as_deref(), Some("4"), "replayed from Redis");
    let subscribed: Value = serde_json::from_str(&field(&sse.next().await, "data").unwrap()).unwrap();
    assert_eq!(subscribed["recovered"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_has_not_seen_a_topic_since_it_joined_gives_its_position_from_redis_when_it_cannot_replay() {
    let redis = RedisServer::start().await;
    let a = node_keeping(&redis, 1).await;
    let mut client = Client::dev(&a, "u").await;
    client.subscribe(&["doc:1"]).await;
    for n in 1..=2 {
        a.publish("doc:1", "UPDATED", "1", &json!(n.to_string())).await.unwrap();
    }
    assert_eq!(seqs(&events(&mut client, 2).await), [1, 2]);
    drop(client);

    // Node C joined after those events, and the cluster's history keeps
    // only the last: it cannot replay events 1 and 2 after 0, but Redis
    // says where the topic is, so the client has a position to go on from.
    let c = node_keeping(&redis, 1).await;
    let mut moved = Client::dev(&c, "u").await;
    let body = json!({"type":"subscribe","topics":["doc:1"],"since":{"doc:1":0},"epoch":c.epoch()});
    moved.send(&body.to_string()).await;
    let subscribed = moved.recv().await;
    assert_eq!(subscribed, json!({"type":"subscribed","topics":["doc:1"],"recovered":false,"last_seq":{"doc:1":2}}));
    // The next event follows that position without a gap.
    a.publish("doc:1", "UPDATED", "1", &json!("3")).await.unwrap();
    assert_eq!(events(&mut moved, 1).await, [(3, "3".to_owned())]);
}

/// A publish frame for `topic` with more fields (`if_seq`).
fn publish_to(id: &str, topic: &str, payload: &str, more: Value) -> String {
    let mut frame = json!({"type":"publish","id":id,"topic":topic,"event":"UPDATED",
        "data":{"entity_id":"1","payload":payload,"timestamp":"2026-01-01T00:00:00Z"}});
    frame.as_object_mut().unwrap().extend(more.as_object().unwrap().clone());
    frame.to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_conditional_publish_is_a_duplicate_found_without_reading_the_topics_seq() {
    let redis = RedisServer::start().await;
    let a = node(&redis).await;
    let mut writer = Client::dev(&a, "writer").await;
    let publish = publish_to("c1", "doc:1", "first", json!({"if_seq": 0}));
    writer.send(&publish).await;
    assert_eq!(writer.recv().await["seq"], 1);

    let gets = redis.calls("get").await;
    writer.send(&publish).await;
    let answer = writer.recv().await;
    assert_eq!((&answer["type"], &answer["seq"], &answer["duplicate"]), (&json!("ack"), &json!(1), &json!(true)));
    let reads = redis.calls("get").await - gets;
    assert_eq!(reads, 2, "the epoch and the publish id; the topic's seq only matters to a new event");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishes_waiting_on_one_connection_go_to_redis_in_one_script_call_each_with_its_dedup_and_condition() {
    let redis = RedisServer::start().await;
    let link = RedisLink::to(&redis).await;
    let a = on(link.url()).bind("127.0.0.1:0").await.expect("node A joins through the link");
    let b = node(&redis).await;
    a.publish("warm:1", "UPDATED", "1", &json!("loads the script")).await.unwrap();
    let mut reader = Client::dev(&b, "reader").await;
    let position = reader.subscribe(&["doc:*", "note:1"]).await["last_seq"]["doc:*"].as_u64().unwrap();
    let mut writer = Client::dev(&a, "writer").await;

    // Redis answers slowly, so the publishes sent back to back wait while
    // the first is on its way: they go as one batch.
    let scripts_before = redis.calls("evalsha").await;
    link.delay(Duration::from_millis(200));
    let batch = [
        publish_to("p0", "doc:1", "first", json!({})),
        publish_to("b1", "doc:1", "one", json!({})),
        publish_to("b1", "doc:1", "one again", json!({})),
        publish_to("b2", "doc:1", "stale", json!({"if_seq": 1})),
        publish_to("b3", "doc:1", "current", json!({"if_seq": 2})),
        publish_to("n1", "note:1", "note", json!({})),
        publish_to("d2", "doc:2", "two", json!({})),
    ];
    for frame in &batch {
        writer.send(frame).await;
    }
    let mut answers = Vec::new();
    for _ in 0..batch.len() {
        let answer = writer.recv().await;
        answers.push((
            answer["type"].clone(),
            answer["id"].clone(),
            answer["seq"].clone(),
            answer["duplicate"].clone(),
        ));
    }
    let answer = |kind: &str, id: &str, seq: u64, duplicate: Value| (json!(kind), json!(id), json!(seq), duplicate);
    assert_eq!(
        answers,
        [
            answer("ack", "p0", 1, Value::Null),
            answer("ack", "b1", 2, Value::Null),
            answer("ack", "b1", 2, json!(true)),
            answer("error", "b2", 2, Value::Null),
            answer("ack", "b3", 3, Value::Null),
            answer("ack", "n1", 1, Value::Null),
            answer("ack", "d2", 1, Value::Null),
        ],
        "each publish answered in order, as if published alone"
    );
    let scripts = redis.calls("evalsha").await - scripts_before;
    assert!(scripts <= 2, "the first alone, the six that waited in one call: {scripts} calls");
    link.delay(Duration::ZERO);

    let mut seen = Vec::new();
    for _ in 0..5 {
        let event = reader.recv().await;
        seen.push((event["topic"].as_str().unwrap().to_owned(), event["data"]["payload"].as_str().unwrap().to_owned()));
    }
    let seen: Vec<(&str, &str)> = seen.iter().map(|(topic, payload)| (&**topic, &**payload)).collect();
    assert_eq!(
        seen,
        [("doc:1", "first"), ("doc:1", "one"), ("doc:1", "current"), ("note:1", "note"), ("doc:2", "two")],
        "broadcast once each, in order, the refused one never"
    );

    // The resource's history in Redis chains the batch's events: a node
    // that joins now replays them all from the position before.
    let c = node(&redis).await;
    let mut late = Client::dev(&c, "reader").await;
    let since = json!({"type":"subscribe","topics":["doc:*"],"since":{"doc:*":position},"epoch":a.epoch()});
    late.send(&since.to_string()).await;
    let mut replayed = Vec::new();
    for _ in 0..4 {
        let (topic, seq, _) = numbered(&mut late).await;
        replayed.push((topic, seq));
    }
    let doc = |topic: &str, seq| (topic.to_owned(), seq);
    assert_eq!(replayed, [doc("doc:1", 1), doc("doc:1", 2), doc("doc:1", 3), doc("doc:2", 1)]);
    assert_eq!(late.recv().await["recovered"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_id_repeated_on_another_node_is_acked_with_the_first_seq_and_not_broadcast() {
    let redis = RedisServer::start().await;
    let (a, b) = (node(&redis).await, node(&redis).await);
    let mut reader = Client::dev(&b, "reader").await;
    reader.subscribe(&["doc:1"]).await;
    let mut on_a = Client::dev(&a, "writer").await;
    let mut on_b = Client::dev(&b, "writer").await;

    let first = publish_ws(&mut on_a, "p-1", "first").await;
    assert_eq!((&first["seq"], &first["duplicate"]), (&json!(1), &Value::Null), "{first}");
    let again = publish_ws(&mut on_b, "p-1", "first").await;
    assert_eq!((&again["seq"], &again["duplicate"]), (&json!(1), &json!(true)), "{again}");
    // The same user and id over HTTP, on either node.
    assert_eq!(
        publish_http(&a, "writer", Some("p-1"), "first").await,
        (200, json!({"seq":1,"epoch":a.epoch(),"duplicate":true}))
    );
    // Ids are per user: another user's p-1 is new.
    assert_eq!(publish_http(&b, "someone-else", Some("p-1"), "other").await, (200, json!({"seq":2,"epoch":b.epoch()})));
    a.publish("doc:1", "UPDATED", "1", &json!("last")).await.unwrap();

    let seen = events(&mut reader, 3).await;
    assert_eq!(seen, [(1, "first".into()), (2, "other".into()), (3, "last".into())], "broadcast once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_redis_restarts_empty_nodes_close_clients_refuse_publishes_then_start_a_new_epoch() {
    let mut redis = RedisServer::start().await;
    let (a, b) = (node(&redis).await, node(&redis).await);
    let old_epoch = a.epoch();
    let mut client = Client::dev(&a, "u").await;
    client.subscribe(&["doc:1"]).await;
    for n in 1..=3 {
        b.publish("doc:1", "UPDATED", "1", &json!(n.to_string())).await.unwrap();
    }
    assert_eq!(seqs(&events(&mut client, 3).await), [1, 2, 3]);
    assert_eq!(a.metrics().cluster_bus_up, Some(true));

    redis.kill();
    let (code, reason) = client.closed().await;
    assert_eq!(code, 1001, "{reason}");
    assert!(reason.contains("retry_after_ms="), "a spread reconnect hint: {reason}");
    health_becomes(&a, 503).await;
    health_becomes(&b, 503).await;
    assert_eq!(a.metrics().cluster_bus_up, Some(false));
    assert!(http(&a, "GET", "/metrics", &[], "").await.1.contains("\nherald_cluster_bus_up 0\n"));

    // Publishes fail with a clear error: over HTTP, WebSocket and the API.
    let (status, answer) = publish_http(&b, "writer", None, "lost").await;
    assert_eq!(status, 503, "{answer}");
    let error = answer["error"].as_str().unwrap();
    assert!(error.contains("cluster bus") && error.contains("retry"), "{error}");
    let mut during = Client::dev(&b, "writer").await;
    during.send(&publish_frame("p-down", "lost")).await;
    let refused = during.recv().await;
    assert_eq!((&refused["type"], &refused["code"], &refused["id"]), (&json!("error"), &json!(500), &json!("p-down")));
    assert!(refused["message"].as_str().unwrap().contains("cluster bus"), "{refused}");
    match a.publish("doc:1", "UPDATED", "1", &json!("lost")).await {
        Err(ServerError::Unavailable(message)) => assert!(message.contains("nothing was published"), "{message}"),
        other => panic!("expected Unavailable, got {other:?}"),
    }

    redis.restart().await;
    // A connection opened while its node was off the bus subscribed before
    // the node listened again: it is closed once the node is back.
    assert_eq!(during.closed().await.0, 1001);
    health_becomes(&a, 200).await;
    health_becomes(&b, 200).await;
    assert_eq!(a.metrics().cluster_bus_up, Some(true));
    let new_epoch = a.epoch();
    assert_ne!(new_epoch, old_epoch, "Redis lost the history: the cluster has a new epoch");
    assert_eq!(b.epoch(), new_epoch);

    let mut back = Client::connect(&format!("{}?token=u", a.ws_url())).await;
    let connected = back.recv().await;
    assert_eq!(connected["epoch"], json!(new_epoch), "{connected}");
    let body = json!({"type":"subscribe","topics":["doc:1"],"since":{"doc:1":3},"epoch":old_epoch});
    back.send(&body.to_string()).await;
    assert_eq!(back.recv().await["recovered"], false, "an old epoch's position cannot be recovered");
    let seq = b.publish("doc:1", "UPDATED", "1", &json!("new")).await.unwrap().seq;
    assert_eq!(seq, 1, "numbers start over in the new epoch");
    assert_eq!(events(&mut back, 1).await, [(1, "new".to_owned())]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_cut_off_from_redis_forgets_what_it_may_have_missed_and_closes_late_connections_when_back() {
    let redis = RedisServer::start().await;
    let mut link = RedisLink::to(&redis).await;
    let a = on(link.url()).bind("127.0.0.1:0").await.expect("node A joins through the link");
    let b = node(&redis).await;
    let epoch = a.epoch();
    let mut client = Client::dev(&a, "u").await;
    client.subscribe(&["doc:1"]).await;
    for n in 1..=2 {
        b.publish("doc:1", "UPDATED", "1", &json!(n.to_string())).await.unwrap();
    }
    assert_eq!(seqs(&events(&mut client, 2).await), [1, 2]);

    link.cut();
    assert_eq!(client.closed().await.0, 1001);
    health_becomes(&a, 503).await;
    // The cluster goes on without node A.
    for n in 3..=4 {
        b.publish("doc:1", "UPDATED", "1", &json!(n.to_string())).await.unwrap();
    }
    let mut late = Client::dev(&a, "late").await;
    late.subscribe(&["doc:1"]).await;

    link.restore().await;
    // Its subscription began while node A heard nothing: closed once A is back.
    assert_eq!(late.closed().await.0, 1001);
    health_becomes(&a, 200).await;
    assert_eq!(a.epoch(), epoch, "Redis kept its data: same epoch");
    // 3 and 4 never reached A, which reads them from the cluster's history.
    let mut back = Client::dev(&a, "u").await;
    let body = json!({"type":"subscribe","topics":["doc:1"],"since":{"doc:1":2},"epoch":epoch});
    back.send(&body.to_string()).await;
    assert_eq!(events(&mut back, 2).await, [(3, "3".to_owned()), (4, "4".to_owned())]);
    let subscribed = back.recv().await;
    assert_eq!(subscribed, json!({"type":"subscribed","topics":["doc:1"],"recovered":true,"last_seq":{"doc:1":4}}));
    b.publish("doc:1", "UPDATED", "1", &json!("5")).await.unwrap();
    assert_eq!(events(&mut back, 1).await, [(5, "5".to_owned())]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_that_restarts_with_its_data_still_gives_the_cluster_a_new_epoch() {
    let mut redis = RedisServer::start_persistent().await;
    let a = node(&redis).await;
    let old_epoch = a.epoch();
    for n in 1..=2 {
        a.publish("doc:1", "UPDATED", "1", &json!(n.to_string())).await.unwrap();
    }
    redis.save().await;
    // Published after the snapshot: a restart brings the counter back to 2.
    assert_eq!(a.publish("doc:1", "UPDATED", "1", &json!("3")).await.unwrap().seq, 3);
    redis.kill();
    health_becomes(&a, 503).await;
    redis.restart().await;
    health_becomes(&a, 200).await;
    assert_ne!(a.epoch(), old_epoch, "numbers may have gone back: positions of the old epoch must not count");
    let mut client = Client::dev(&a, "u").await;
    let body = json!({"type":"subscribe","topics":["doc:1"],"since":{"doc:1":3},"epoch":old_epoch});
    client.send(&body.to_string()).await;
    assert_eq!(client.recv().await["recovered"], false);
    // The restored counter goes on from the snapshot, in the new epoch.
    assert_eq!(a.publish("doc:1", "UPDATED", "1", &json!("again")).await.unwrap().seq, 3);
    assert_eq!(events(&mut client, 1).await, [(3, "again".to_owned())]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_redis_loses_its_data_while_up_the_next_publish_starts_a_new_epoch_on_every_node() {
    let redis = RedisServer::start().await;
    let (a, b) = (node(&redis).await, node(&redis).await);
    let old_epoch = a.epoch();
    let mut on_a = Client::dev(&a, "u").await;
    let mut on_b = Client::dev(&b, "u").await;
    for client in [&mut on_a, &mut on_b] {
        client.subscribe(&["doc:1"]).await;
    }
    for n in 1..=2 {
        a.publish("doc:1", "UPDATED", "1", &json!(n.to_string())).await.unwrap();
    }
    assert_eq!(seqs(&events(&mut on_a, 2).await), [1, 2]);
    assert_eq!(seqs(&events(&mut on_b, 2).await), [1, 2]);

    redis.flush_all().await;
    // Node B finds the epoch gone when it publishes: it names a new one and
    // publishes in it; node A learns it from the event.
    assert_eq!(b.publish("doc:1", "UPDATED", "1", &json!("new")).await.unwrap().seq, 1);
    for client in [&mut on_a, &mut on_b] {
        let (code, reason) = client.closed().await;
        assert_eq!(code, 1001, "{reason}");
    }
    assert_ne!(b.epoch(), old_epoch);
    let new_epoch = b.epoch();
    within("node A to adopt the new epoch", async {
        while a.epoch() != new_epoch {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    let mut back = Client::dev(&a, "u").await;
    let body = json!({"type":"subscribe","topics":["doc:1"],"since":{"doc:1":2},"epoch":old_epoch});
    back.send(&body.to_string()).await;
    assert_eq!(back.recv().await["recovered"], false);
    assert_eq!(a.publish("doc:1", "UPDATED", "1", &json!("next")).await.unwrap().seq, 2);
    assert_eq!(events(&mut back, 1).await, [(2, "next".to_owned())]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_stay_apart_across_nodes_each_with_a_gap_free_seq() {
    const ROUNDS: u64 = 5;
    let redis = RedisServer::start().await;
    let jwt_node = || async {
        Server::builder().secret(SECRET).redis(redis.url()).bind("127.0.0.1:0").await.expect("the node joins")
    };
    let (a, b) = (jwt_node().await, jwt_node().await);
    let tenant_token = |user: &str, tenant: &str| mint_token(SECRET, &Claims::new(user, 600).tenant(tenant)).unwrap();
    let mut acme = Client::authed(&a, &tenant_token("a", "acme")).await;
    let mut globex = Client::authed(&b, &tenant_token("g", "globex")).await;
    let mut untenanted = Client::authed(&a, &token("n")).await;
    acme.subscribe(&["doc:1"]).await;
    globex.subscribe(&["doc:*"]).await;
    untenanted.subscribe(&["doc:1"]).await;
    // A tenant-bound writer on B publishes into acme whatever it names; a
    // service token on A publishes into the tenant it names.
    let writer = mint_token(SECRET, &Claims::new("w", 600).tenant("acme").publish(["doc:*"])).unwrap();
    let mut writer = Client::authed(&b, &writer).await;
    let service = mint_token(SECRET, &Claims::new("backend", 600).publish(["doc:*"])).unwrap();
    for round in 1..=ROUNDS {
        let publish = json!({"type":"publish","id":format!("p-{round}"),"topic":"doc:1","event":"UPDATED",
            "data":{"entity_id":"1","payload":"acme","tenant_id":"globex","timestamp":"2026-01-01T00:00:00Z"}});
        writer.send(&publish.to_string()).await;
        assert_eq!(writer.recv().await["type"], "ack");
        let body =
            json!({"topic":"doc:1","event":"UPDATED","data":{"entity_id":"1","payload":"globex","tenant_id":"globex"}});
        let (status, _) = post_publish(&a, &service, &body.to_string()).await;
        assert_eq!(status, 200);
        b.publish("doc:1", "UPDATED", "1", &json!("untenanted")).await.unwrap();
    }
    for (client, own, count) in
        [(&mut acme, "acme", ROUNDS), (&mut globex, "globex", ROUNDS), (&mut untenanted, "untenanted", ROUNDS)]
    {
        let seen = events(client, count as usize).await;
        assert_eq!(seqs(&seen), (1..=count).collect::<Vec<_>>(), "{own}: gap-free");
        assert!(seen.iter().all(|(_, payload)| payload == own), "{own} saw only its own events: {seen:?}");
    }
    // Nothing foreign is queued behind: a last event of each namespace comes next.
    let body = json!({"topic":"doc:1","event":"UPDATED","data":{"entity_id":"1","payload":"acme","tenant_id":"acme"}});
    post_publish(&b, &service, &body.to_string()).await;
    assert_eq!(events(&mut acme, 1).await, [(ROUNDS + 1, "acme".to_owned())]);
}

#[tokio::test]
async fn a_bad_or_unreachable_redis_is_a_clear_error_at_start() {
    let not_a_url = Server::builder().dev(true).redis("http://127.0.0.1:6379").bind("127.0.0.1:0").await;
    let error = not_a_url.expect_err("not a Redis URL");
    assert!(matches!(error, ServerError::Redis { .. }), "{error:?}");

    // Nothing listens on a port just freed; the password stays out of the message.
    let port = herald_test_support::process::free_port();
    let url = format!("redis://:hunter2@127.0.0.1:{port}");
    let error = Server::builder().dev(true).redis(url).bind("127.0.0.1:0").await.expect_err("nothing listens");
    let message = error.to_string();
    assert!(matches!(error, ServerError::Redis { .. }), "{error:?}");
    assert!(message.contains(&format!("127.0.0.1:{port}")) && message.contains("redis-server"), "{message}");
    assert!(!message.contains("hunter2"), "{message}");

    let redis = RedisServer::start().await;
    let both = Server::builder().dev(true).redis(redis.url()).epoch("fixed").bind("127.0.0.1:0").await;
    assert!(matches!(both, Err(ServerError::Config(ref m)) if m.contains("epoch")), "{both:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acl_user_with_a_password_joins_and_a_wrong_password_is_a_clear_error_without_the_secret() {
    let acl = ["--user", "herald", "on", ">s3cret-pass", "~*", "&*", "+@all"];
    let redis = RedisServer::start_with(&acl).await;
    let a = Server::builder().dev(true).redis(redis.url_as("herald", "s3cret-pass")).bind("127.0.0.1:0").await.unwrap();
    let b = Server::builder().dev(true).redis(redis.url_as("herald", "s3cret-pass")).bind("127.0.0.1:0").await.unwrap();
    let mut reader = Client::dev(&b, "reader").await;
    reader.subscribe(&["doc:1"]).await;
    let seq = a.publish("doc:1", "UPDATED", "1", &json!("as herald")).await.unwrap().seq;
    assert_eq!(events(&mut reader, 1).await, [(seq, "as herald".to_owned())]);

    let wrong = Server::builder().dev(true).redis(redis.url_as("herald", "wrong-pass")).bind("127.0.0.1:0").await;
    let error = wrong.expect_err("a wrong password is refused at start");
    let message = error.to_string();
    assert!(matches!(error, ServerError::Redis { .. }), "{error:?}");
    assert!(!message.contains("wrong-pass"), "the password stays out of the message: {message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_cluster_is_refused_at_start_with_the_reason() {
    let dir = TempDir::new();
    let nodes = dir.path().join("nodes.conf");
    let redis =
        RedisServer::start_with(&["--cluster-enabled", "yes", "--cluster-config-file", nodes.to_str().unwrap()]).await;
    let error = Server::builder().dev(true).redis(redis.url()).bind("127.0.0.1:0").await.expect_err("refused");
    let message = error.to_string();
    assert!(message.contains("Redis Cluster") && message.contains("single Redis"), "{message}");
}

/// Subscribes `client` to `topic` with presence; returns the members it was given.
async fn with_presence(client: &mut Client, topic: &str) -> Value {
    client.send(&json!({"type":"subscribe","topics":[topic],"presence":true}).to_string()).await;
    assert_eq!(client.recv().await["type"], "subscribed");
    let presence = client.recv().await;
    assert_eq!((presence["type"].as_str(), presence["topic"].as_str()), (Some("presence"), Some(topic)), "{presence}");
    presence["members"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_spans_the_nodes_and_a_node_that_joins_later_or_shuts_down_is_counted_right() {
    let redis = RedisServer::start().await;
    // Longer than any wait of the test: users leave with their node's
    // goodbye or their last connection, never by the TTL.
    let node = |url: String| async move {
        on(url).presence_ttl(Duration::from_secs(60)).bind("127.0.0.1:0").await.expect("the node joins the cluster")
    };
    let (a, b) = (node(redis.url()).await, node(redis.url()).await);
    let mut alice = Client::dev(&a, "alice").await;
    assert_eq!(with_presence(&mut alice, "room:1").await, json!(["alice"]));
    let mut bob = Client::dev(&b, "bob").await;
    let members = with_presence(&mut bob, "room:1").await;
    // Bob's node may not have heard of alice yet: then a diff brings her.
    if members != json!(["alice", "bob"]) {
        assert_eq!(members, json!(["bob"]));
        bob.presence_until("room:1", "joined", "alice").await;
    }
    alice.presence_until("room:1", "joined", "bob").await;

    // Alice's second tab, on the other node, is still alice: she leaves
    // when her last connection anywhere does.
    let mut alice_on_b = Client::dev(&b, "alice").await;
    with_presence(&mut alice_on_b, "room:1").await;
    drop(alice);
    drop(alice_on_b);
    bob.presence_until("room:1", "left", "alice").await;

    // A node that joins now learns who is there from the others.
    let c = node(redis.url()).await;
    let mut carol = Client::dev(&c, "carol").await;
    let members = with_presence(&mut carol, "room:1").await;
    if members != json!(["bob", "carol"]) {
        carol.presence_until("room:1", "joined", "bob").await;
    }

    // A node that shuts down says so: its users leave the others' lists at once.
    b.shutdown().await;
    carol.presence_until("room:1", "left", "bob").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_metadata_set_on_one_node_reaches_the_others() {
    let redis = RedisServer::start().await;
    let (a, b) = (node(&redis).await, node(&redis).await);
    let mut alice = Client::dev(&a, "alice").await;
    alice.send(r#"{"type":"subscribe","topics":["room:1"],"presence":true,"meta":{"name":"Ann"}}"#).await;
    assert_eq!(alice.recv().await["type"], "subscribed");
    alice.recv().await;
    let mut bob = Client::dev(&b, "bob").await;
    bob.send(r#"{"type":"subscribe","topics":["room:1"],"presence":true}"#).await;
    assert_eq!(bob.recv().await["type"], "subscribed");
    let snapshot = bob.recv().await;
    if snapshot["members"] != json!(["alice", "bob"]) {
        let diff = bob.presence_until("room:1", "joined", "alice").await;
        assert_eq!(diff["meta"], json!({"alice":{"name":"Ann"}}), "{diff}");
    } else {
        assert_eq!(snapshot["meta"], json!({"alice":{"name":"Ann"}}), "{snapshot}");
    }
    alice.send(r#"{"type":"set_presence","topic":"room:1","meta":{"name":"Ann B."}}"#).await;
    loop {
        let diff = bob.presence_until("room:1", "joined", "alice").await;
        if diff["meta"]["alice"] == json!({"name":"Ann B."}) {
            break;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_redis_slows_publishes_up_to_a_bound_then_the_node_leaves_the_bus_until_redis_answers_again() {
    let redis = RedisServer::start().await;
    let link = RedisLink::to(&redis).await;
    let a = on(link.url()).bind("127.0.0.1:0").await.expect("node A joins through the link");
    let mut client = Client::dev(&a, "u").await;
    client.subscribe(&["doc:1"]).await;

    // Slow, within the bound: publishes wait for Redis, and go through.
    link.delay(Duration::from_millis(300));
    let (status, answer) = publish_http(&a, "u", None, "slow").await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(events(&mut client, 1).await, [(answer["seq"].as_u64().unwrap(), "slow".to_owned())]);

    // Slower than the bound (2 s): the publish ends in time and says why, and
    // the node leaves the bus (its clients reconnect, maybe to another node).
    link.delay(Duration::from_secs(3));
    let (status, answer) = publish_http(&a, "u", None, "too slow").await;
    assert_eq!(status, 503, "{answer}");
    let reason = answer["error"].as_str().unwrap_or_default();
    assert!(reason.contains("timed out") || reason.contains("no answer in time"), "{answer}");
    assert_eq!(client.closed().await.0, 1001);
    health_becomes(&a, 503).await;

    link.delay(Duration::ZERO);
    health_becomes(&a, 200).await;
    let (status, answer) = publish_http(&a, "u", None, "back").await;
    assert_eq!(status, 200, "{answer}");
}

/// A connection's publishes waiting for Redis are bounded: it holds at most 64
/// besides the batch on its way, and reads nothing more until that batch is
/// answered. Its `ping` shows when it reads: answered at once below the bound,
/// only after the batch's ack at it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_holds_at_most_64_publishes_waiting_for_a_slow_redis_then_stops_reading() {
    let redis = RedisServer::start().await;
    let link = RedisLink::to(&redis).await;
    let a = on(link.url()).bind("127.0.0.1:0").await.expect("node A joins through the link");
    let mut client = Client::dev(&a, "writer").await;
    link.delay(Duration::from_millis(250));
    let mut sent = 0;
    let mut publish = async |client: &mut Client, n: usize| {
        for _ in 0..n {
            client.send(&publish_frame(&format!("p-{sent}"), "x")).await;
            sent += 1;
        }
    };
    let ack = |message: &Value, i: usize| {
        assert_eq!(
            (message["type"].as_str(), message["id"].as_str()),
            (Some("ack"), Some(&*format!("p-{i}"))),
            "{message}"
        );
    };

    // Below the bound: one on its way to Redis, 63 waiting; the ping is read.
    publish(&mut client, 64).await;
    client.send(r#"{"type":"ping"}"#).await;
    assert_eq!(client.recv().await["type"], "pong", "read on below the bound");
    for i in 0..64 {
        ack(&client.recv().await, i);
    }

    // At the bound: one on its way, 64 waiting; the ping waits in the socket
    // until the first is answered and the 64 go out as the next batch.
    publish(&mut client, 65).await;
    client.send(r#"{"type":"ping"}"#).await;
    ack(&client.recv().await, 64);
    assert_eq!(client.recv().await["type"], "pong", "read again once the batch was answered");
    for i in 65..129 {
        ack(&client.recv().await, i);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_over_rediss_verifies_redis_against_the_ca_given_and_refuses_one_it_cannot_verify() {
    let ca = TestCa::new();
    let leaf = ca.issue();
    let files = CertFiles::new(&leaf);
    let dir = TempDir::new();
    let ca_file = dir.path().join("redis-ca.pem");
    std::fs::write(&ca_file, ca.cert_pem()).unwrap();
    let tls_port = free_port().to_string();
    let (cert, key) = (files.cert.to_str().unwrap(), files.key.to_str().unwrap());
    let redis = RedisServer::start_with(&[
        "--tls-port",
        &tls_port,
        "--tls-cert-file",
        cert,
        "--tls-key-file",
        key,
        "--tls-ca-cert-file",
        ca_file.to_str().unwrap(),
        "--tls-auth-clients",
        "no",
    ])
    .await;
    let url = format!("rediss://localhost:{tls_port}");
    let node = || Server::builder().dev(true).redis(url.clone()).redis_ca(&ca_file).bind("127.0.0.1:0");
    let (a, b) = (node().await.expect("node A joins over TLS"), node().await.expect("node B joins over TLS"));
    let mut on_b = Client::dev(&b, "reader").await;
    on_b.subscribe(&["doc:1"]).await;
    a.publish("doc:1", "UPDATED", "1", &json!("over TLS")).await.unwrap();
    assert_eq!(events(&mut on_b, 1).await, [(1, "over TLS".to_owned())]);

    // The system's roots do not know the test CA: the node says so at start.
    let error = Server::builder().dev(true).redis(url.clone()).bind("127.0.0.1:0").await.unwrap_err();
    let message = error.to_string();
    assert!(message.contains("rediss://localhost") && message.to_lowercase().contains("certificate"), "{message}");
    // A CA file for a connection without TLS is a mistake.
    let error =
        Server::builder().redis("redis://127.0.0.1:1").redis_ca(&ca_file).bind("127.0.0.1:0").await.unwrap_err();
    assert!(error.to_string().contains("give a rediss:// URL"), "{error}");
    drop(redis);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishes_sent_back_to_back_on_one_connection_keep_their_order_and_are_acked_in_it() {
    let redis = RedisServer::start().await;
    let (a, b) = (node(&redis).await, node(&redis).await);
    let mut reader = Client::dev(&b, "reader").await;
    reader.subscribe(&["doc:1"]).await;
    // Sent in batches: many at once on their way to Redis.
    Client::dev(&a, "writer").await.publishes_keep_their_order(&mut reader, "doc:1", 200).await;
}
