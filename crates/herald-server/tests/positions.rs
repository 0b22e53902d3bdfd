//! Positions (`{epoch, seq}`), conditional publishes (`if_seq`) and
//! ephemeral events, on every way in: WebSocket, `POST /api/publish`,
//! `GET /api/position` and the in-process handle; on one node, with durable
//! history, and across a cluster where Redis decides.

use std::time::Duration;

use herald_server::ServerError;
use herald_test_support::*;
use serde_json::{Value, json};

fn publish_frame(id: &str, topic: &str, extra: Value) -> String {
    let mut frame = json!({"type":"publish","id":id,"topic":topic,"event":"UPDATED",
        "data":{"entity_id":"1","payload":id,"timestamp":"2026-01-01T00:00:00Z"}});
    frame.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    frame.to_string()
}

async fn position_http(server: &ServerHandle, user: &str, query: &str) -> (u16, Value) {
    let bearer = format!("Bearer {user}");
    let (status, body) =
        http(server, "GET", &format!("/api/position?{query}"), &[("Authorization", &bearer)], "").await;
    (status, serde_json::from_str(&body).unwrap_or_else(|_| panic!("JSON, got {body}")))
}

async fn publish_http(server: &ServerHandle, user: &str, body: Value) -> (u16, Value) {
    let (status, answer) = post_publish(server, user, &body.to_string()).await;
    (status, serde_json::from_str(&answer).unwrap_or_else(|_| panic!("JSON, got {answer}")))
}

fn doc_body(payload: &str, extra: Value) -> Value {
    let mut body = json!({"topic":"doc:1","event":"UPDATED","data":{"entity_id":"1","payload":payload}});
    body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    body
}

#[tokio::test]
async fn connected_announces_the_protocol_features_and_acks_carry_the_epoch() {
    let server = Server::builder().dev(true).bind("127.0.0.1:0").await.unwrap();
    let mut client = Client::connect(&server.ws_url()).await;
    client.send(r#"{"type":"auth","token":"writer"}"#).await;
    let connected = client.recv().await;
    assert_eq!(connected["type"], "connected", "{connected}");
    assert_eq!(connected["version"], 1);
    let features: Vec<&str> = connected["features"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    for feature in ["recovery", "ephemeral", "if_seq", "presence"] {
        assert!(features.contains(&feature), "{feature} in {connected}");
    }
    client.send(&publish_frame("p1", "doc:1", json!({}))).await;
    let ack = client.recv().await;
    assert_eq!((ack["type"].as_str(), ack["seq"].as_u64()), (Some("ack"), Some(1)), "{ack}");
    assert_eq!(ack["epoch"], connected["epoch"], "the ack names the epoch the seq is of");
}

#[tokio::test]
async fn a_conditional_publish_over_websocket_is_refused_with_the_current_seq() {
    let server = Server::builder().dev(true).bind("127.0.0.1:0").await.unwrap();
    let mut reader = Client::dev(&server, "reader").await;
    reader.subscribe(&["doc:1"]).await;
    let mut writer = Client::dev(&server, "writer").await;
    writer.send(&publish_frame("a", "doc:1", json!({"if_seq": 0}))).await;
    assert_eq!(writer.recv().await["seq"], 1, "a new topic is at seq 0");
    writer.send(&publish_frame("b", "doc:1", json!({"if_seq": 0}))).await;
    let refused = writer.recv().await;
    assert_eq!(
        (refused["type"].as_str(), refused["code"].as_u64(), refused["id"].as_str(), refused["seq"].as_u64()),
        (Some("error"), Some(409), Some("b"), Some(1)),
        "{refused}"
    );
    assert!(refused["message"].as_str().unwrap().contains("seq 1"), "{refused}");
    // The reader saw only the accepted one.
    assert_eq!(reader.recv().await["data"]["payload"], "a");
    writer.send(&publish_frame("c", "doc:1", json!({"if_seq": 1}))).await;
    assert_eq!(writer.recv().await["seq"], 2);
    assert_eq!(reader.recv().await["data"]["payload"], "c", "no event between: the refused one was never sent");

    // Ephemeral and conditional together make no sense: a typed error, the connection lives on.
    writer.send(&publish_frame("d", "doc:1", json!({"if_seq": 2, "ephemeral": true}))).await;
    let invalid = writer.recv().await;
    assert_eq!(invalid["type"], "error", "{invalid}");
    writer.send(r#"{"type":"ping"}"#).await;
    assert_eq!(writer.recv().await["type"], "pong");
}

#[tokio::test]
async fn an_ephemeral_event_is_fanned_out_without_a_seq_and_kept_nowhere() {
    let server = Server::builder().dev(true).bind("127.0.0.1:0").await.unwrap();
    let mut reader = Client::dev(&server, "reader").await;
    reader.subscribe(&["room:1"]).await;
    let mut typist = Client::dev(&server, "typist").await;
    typist.send(&publish_frame("t1", "room:1", json!({"ephemeral": true}))).await;
    let ack = typist.recv().await;
    assert_eq!((ack["type"].as_str(), ack.get("seq")), (Some("ack"), None), "{ack}");
    let typing = reader.recv().await;
    assert_eq!((typing["ephemeral"].as_bool(), typing.get("seq")), (Some(true), None), "{typing}");
    assert_eq!(server.position("room:1").await.unwrap().seq, 0, "no seq used");

    // Over HTTP too, and a subscriber recovering from seq 0 gets nothing replayed.
    let (status, answer) = publish_http(
        &server,
        "typist",
        json!({"topic":"room:1","event":"TYPING",
        "data":{"entity_id":"1","payload":null},"ephemeral":true}),
    )
    .await;
    assert_eq!((status, &answer), (200, &json!({"ephemeral": true})));
    assert_eq!(reader.recv().await["ephemeral"], true);
    let epoch = server.position("room:1").await.unwrap().epoch;
    let mut late = Client::dev(&server, "late").await;
    late.send(&json!({"type":"subscribe","topics":["room:1"],"since":{"room:1":0},"epoch":epoch}).to_string()).await;
    let subscribed = late.recv().await;
    assert_eq!((subscribed["type"].as_str(), subscribed["recovered"].as_bool()), (Some("subscribed"), Some(true)));
    late.send(r#"{"type":"ping"}"#).await;
    assert_eq!(late.recv().await["type"], "pong", "nothing replayed before the pong");
}

#[tokio::test]
async fn http_publish_answers_with_the_position_and_refuses_a_stale_if_seq_with_409() {
    let server = Server::builder().dev(true).bind("127.0.0.1:0").await.unwrap();
    let (status, first) = publish_http(&server, "writer", doc_body("one", json!({}))).await;
    assert_eq!(status, 200, "{first}");
    let epoch = first["epoch"].as_str().expect("an epoch").to_owned();
    assert_eq!(first["seq"], 1);
    let (status, second) = publish_http(&server, "writer", doc_body("two", json!({"if_seq": 1}))).await;
    assert_eq!((status, &second), (200, &json!({"seq": 2, "epoch": epoch})));
    let (status, conflict) = publish_http(&server, "writer", doc_body("late", json!({"if_seq": 1}))).await;
    assert_eq!((status, conflict["seq"].as_u64()), (409, Some(2)), "{conflict}");
    assert!(conflict["error"].as_str().unwrap().contains("seq 2"), "{conflict}");

    let (status, position) = position_http(&server, "reader", "topic=doc:1").await;
    assert_eq!((status, position), (200, json!({"epoch": epoch, "seq": 2})));
    let (status, fresh) = position_http(&server, "reader", "topic=doc:99").await;
    assert_eq!((status, fresh["seq"].as_u64()), (200, Some(0)), "a topic never published to is at 0");
    let (status, wildcard) = position_http(&server, "reader", "topic=doc:*").await;
    assert_eq!(status, 400, "{wildcard}");
    let (status, _) = position_http(&server, "reader", "topic=not%20a%20topic").await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn the_position_endpoint_needs_a_token_that_may_read_or_write_the_topic() {
    let server = Server::builder().secret(SECRET).bind("127.0.0.1:0").await.unwrap();
    let (status, _) = http(&server, "GET", "/api/position?topic=doc:1", &[], "").await;
    assert_eq!(status, 401);
    let reader = mint_token(SECRET, &Claims::new("r", 600).topics(["doc:*"])).unwrap();
    let (status, position) = position_http(&server, &reader, "topic=doc:1").await;
    assert_eq!((status, position["seq"].as_u64()), (200, Some(0)), "{position}");
    let (status, refused) = position_http(&server, &reader, "topic=admin:1").await;
    assert_eq!(status, 403, "{refused}");
}

#[tokio::test]
async fn with_durable_history_the_condition_holds_across_a_restart() {
    let dir = TempDir::new();
    let durable = || {
        let mut builder = Server::builder().dev(true);
        builder.config_mut().data_dir = Some(dir.path().to_owned());
        builder.bind("127.0.0.1:0")
    };
    let server = durable().await.unwrap();
    let event = |payload: &str| herald_test_support::event("doc:1", payload);
    let first = server.publish_if_seq(event("a"), 0).await.unwrap();
    assert_eq!(first.seq, 1);
    assert!(matches!(server.publish_if_seq(event("b"), 0).await, Err(ServerError::Conflict { current: 1 })));
    server.shutdown().await;

    let server = durable().await.unwrap();
    assert_eq!(server.position("doc:1").await.unwrap(), first, "the same epoch and seq after the restart");
    assert!(matches!(server.publish_if_seq(event("c"), 0).await, Err(ServerError::Conflict { current: 1 })));
    assert_eq!(server.publish_if_seq(event("d"), 1).await.unwrap().seq, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_a_cluster_of_two_racing_writers_on_two_nodes_exactly_one_wins_and_positions_come_from_redis() {
    let redis = RedisServer::start().await;
    let node = || {
        Server::builder().dev(true).redis(redis.url()).shutdown_spread(Duration::from_millis(300)).bind("127.0.0.1:0")
    };
    let (a, b) = (node().await.unwrap(), node().await.unwrap());
    let base = a.publish("doc:1", "UPDATED", "1", &json!("base")).await.unwrap();
    assert_eq!(b.position("doc:1").await.unwrap(), base, "node b reads the position Redis holds");
    for round in 0..20 {
        let current = base.seq + round;
        let event = |payload: String| herald_test_support::event("doc:1", &payload);
        let (on_a, on_b) = tokio::join!(
            a.publish_if_seq(event(format!("a{round}")), current),
            b.publish_if_seq(event(format!("b{round}")), current)
        );
        match (on_a, on_b) {
            (Ok(won), Err(ServerError::Conflict { current: seen }))
            | (Err(ServerError::Conflict { current: seen }), Ok(won)) => {
                assert_eq!((won.seq, seen), (current + 1, current + 1), "round {round}");
            }
            other => panic!("round {round}: exactly one of the two wins, got {other:?}"),
        }
    }
    assert_eq!(a.position("doc:1").await.unwrap().seq, base.seq + 20);

    // Ephemeral events cross nodes too, without touching the numbering.
    let mut reader = Client::dev(&b, "reader").await;
    reader.subscribe(&["doc:1"]).await;
    let mut typing = herald_test_support::event("doc:1", "typing");
    typing.ephemeral = true;
    a.publish_ephemeral(typing).await.unwrap();
    let seen = reader.recv().await;
    assert_eq!((seen["ephemeral"].as_bool(), seen.get("seq")), (Some(true), None), "{seen}");
    assert_eq!(b.position("doc:1").await.unwrap().seq, base.seq + 20);
}
