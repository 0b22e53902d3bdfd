//! Bad input gets the documented error or close code, the offending
//! connection's resources are freed, and every other connection keeps
//! receiving. One test per kind of bad input.

use std::time::Duration;

use futures_util::SinkExt;
use herald_protocol::close;
use herald_test_support::*;
use serde_json::json;
use tokio_tungstenite::tungstenite::{
    Message,
    protocol::frame::{
        Frame,
        coding::{Data, OpCode},
    },
};

/// A server with a bystander subscribed to `doc:1`.
async fn setup(server: ServerHandle) -> (ServerHandle, Client) {
    let mut bystander = Client::dev(&server, "bystander").await;
    bystander.subscribe(&["doc:1"]).await;
    (server, bystander)
}

/// The bystander still gets events, and only it is left connected.
async fn bystander_unharmed(server: &ServerHandle, bystander: &mut Client, connections: u64) {
    let seq = server.publish("doc:1", "UPDATED", "1", &json!({"ok":true})).await.unwrap().seq;
    assert_eq!(bystander.recv().await["seq"], seq);
    eventually("connections to be freed", || server.metrics().connections == connections).await;
}

async fn error_then_alive(client: &mut Client, bad: &str, code: u64, says: &str) {
    client.send(bad).await;
    let error = client.recv().await;
    assert_eq!((error["type"].as_str(), error["code"].as_u64()), (Some("error"), Some(code)), "{error}");
    let message = error["message"].as_str().unwrap();
    assert!(message.contains(says), "{message:?} should mention {says:?}");
    client.send(r#"{"type":"ping"}"#).await;
    assert_eq!(client.recv().await["type"], "pong");
}

#[tokio::test]
async fn malformed_json_gets_error_400() {
    let (server, mut bystander) = setup(Server::bind("127.0.0.1:0").await.unwrap()).await;
    let mut client = Client::dev(&server, "bad").await;
    error_then_alive(&mut client, r#"{"type":"subscribe","topics":["#, 400, "JSON").await;
    error_then_alive(&mut client, "[1,2]", 400, "object").await;
    bystander_unharmed(&server, &mut bystander, 2).await;
}

#[tokio::test]
async fn unknown_type_gets_error_400_listing_the_known_ones() {
    let (server, mut bystander) = setup(Server::bind("127.0.0.1:0").await.unwrap()).await;
    let mut client = Client::dev(&server, "bad").await;
    error_then_alive(&mut client, r#"{"type":"launch","missiles":3}"#, 400, "subscribe").await;
    bystander_unharmed(&server, &mut bystander, 2).await;
}

#[tokio::test]
async fn wrong_field_types_get_error_400_naming_the_field() {
    let (server, mut bystander) = setup(Server::bind("127.0.0.1:0").await.unwrap()).await;
    let mut client = Client::dev(&server, "bad").await;
    error_then_alive(&mut client, r#"{"type":"subscribe","topics":"doc:1"}"#, 400, "subscribe").await;
    let publish = r#"{"type":"publish","id":"p-1","topic":"doc:1","event":"ADDED","data":{"entity_id":7}}"#;
    client.send(publish).await;
    let error = client.recv().await;
    assert_eq!((error["code"].as_u64(), error["id"].as_str()), (Some(400), Some("p-1")), "{error}");
    bystander_unharmed(&server, &mut bystander, 2).await;
}

#[tokio::test]
async fn a_since_naming_more_topics_than_a_message_may_gets_error_400() {
    let (server, mut bystander) = setup(Server::bind("127.0.0.1:0").await.unwrap()).await;
    let mut client = Client::dev(&server, "bad").await;
    let since: serde_json::Map<String, serde_json::Value> =
        (0..257).rev().map(|n| (format!("doc:{n}"), json!(1))).collect();
    let subscribe = json!({"type":"subscribe","topics":["doc:1"],"since":since}).to_string();
    error_then_alive(&mut client, &subscribe, 400, "at most 256 topics").await;
    bystander_unharmed(&server, &mut bystander, 2).await;
}

#[tokio::test]
async fn invalid_topics_get_error_400_saying_where() {
    let (server, mut bystander) = setup(Server::bind("127.0.0.1:0").await.unwrap()).await;
    let mut client = Client::dev(&server, "bad").await;
    client.send(r#"{"type":"subscribe","topics":["gift list:1"]}"#).await;
    let error = client.recv().await;
    assert_eq!(error["code"], 400);
    assert_eq!(error["topic"], "gift list:1");
    assert!(error["message"].as_str().unwrap().contains("space not allowed at byte 4"), "{error}");
    error_then_alive(&mut client, r#"{"type":"subscribe","topics":[]}"#, 400, "empty").await;
    bystander_unharmed(&server, &mut bystander, 2).await;
}

#[tokio::test]
async fn oversized_frames_are_closed_1009() {
    let (server, mut bystander) = setup(Server::bind("127.0.0.1:0").await.unwrap()).await;
    let mut client = Client::dev(&server, "bad").await;
    let huge = format!(r#"{{"type":"ping","pad":"{}"}}"#, "x".repeat(70_000));
    client.send(&huge).await;
    assert_eq!(client.closed().await.0, close::TOO_BIG);
    bystander_unharmed(&server, &mut bystander, 1).await;
}

#[tokio::test]
async fn oversized_payloads_in_a_frame_that_fits_get_error_413() {
    let (server, mut bystander) = setup(Server::bind("127.0.0.1:0").await.unwrap()).await;
    let mut client = Client::dev(&server, "bad").await;
    let payload = "x".repeat(50_000);
    let publish = json!({"type":"publish","id":"big","topic":"doc:1","event":"ADDED",
        "data":{"entity_id":"1","payload":payload,"timestamp":"2026-01-01T00:00:00Z"}});
    error_then_alive(&mut client, &publish.to_string(), 413, "payload").await;
    bystander_unharmed(&server, &mut bystander, 2).await;
}

#[tokio::test]
async fn binary_frames_get_error_400() {
    let (server, mut bystander) = setup(Server::bind("127.0.0.1:0").await.unwrap()).await;
    let mut client = Client::dev(&server, "bad").await;
    client.send_message(Message::binary(vec![1u8, 2, 3])).await;
    let error = client.recv().await;
    assert_eq!(error["code"], 400);
    assert!(error["message"].as_str().unwrap().contains("binary"), "{error}");
    bystander_unharmed(&server, &mut bystander, 2).await;
}

#[tokio::test]
async fn invalid_utf8_is_closed_1007() {
    let (server, mut bystander) = setup(Server::bind("127.0.0.1:0").await.unwrap()).await;
    let mut client = Client::dev(&server, "bad").await;
    let frame = Frame::message(vec![b'{', 0xff, 0xfe, b'}'], OpCode::Data(Data::Text), true);
    within("a raw send", client.ws.send(Message::Frame(frame))).await.unwrap();
    assert_eq!(client.closed().await.0, 1007);
    bystander_unharmed(&server, &mut bystander, 1).await;
}

#[tokio::test]
async fn floods_get_error_429_then_close_4008() {
    let server = Server::builder().dev(true).rate_limit(10, 5, 3).bind("127.0.0.1:0").await.unwrap();
    let (server, mut bystander) = setup(server).await;
    let mut client = Client::dev(&server, "flooder").await;
    for _ in 0..20 {
        // The server may close before all are sent.
        let _ = client.ws.feed(Message::text(r#"{"type":"ping"}"#)).await;
    }
    let _ = client.ws.flush().await;
    let mut saw_429 = false;
    let code = loop {
        match within("a frame", futures_util::StreamExt::next(&mut client.ws)).await {
            Some(Ok(Message::Text(text))) => {
                let value: serde_json::Value = serde_json::from_str(&text).unwrap();
                saw_429 |= value["code"] == 429;
            }
            Some(Ok(Message::Close(Some(frame)))) => break u16::from(frame.code),
            other => panic!("unexpected {other:?}"),
        }
    };
    assert!(saw_429, "error 429 comes before the close");
    assert_eq!(code, close::RATE_LIMITED);
    bystander_unharmed(&server, &mut bystander, 1).await;
}

/// The close frame a dropped slow consumer gets is written behind the events
/// already on their way, so the sluggard reads it once it reads again: the
/// server waits up to 2 s for its socket to take the frame.
#[tokio::test]
async fn never_reading_clients_are_closed_4009_without_holding_others_back() {
    let mut builder = Server::builder().dev(true).outbound(8, Duration::from_millis(500));
    builder.config_mut().read_buffer_size = 1024;
    let (server, mut bystander) = setup(builder.bind("127.0.0.1:0").await.unwrap()).await;
    let mut sluggard = Client::dev(&server, "sluggard").await;
    sluggard.subscribe(&["doc:1"]).await;
    let reader = tokio::spawn(async move {
        let mut received = 0u64;
        loop {
            let event = bystander.recv().await;
            received += 1;
            if event["data"]["payload"] == "last" {
                return received;
            }
        }
    });
    // The sluggard never reads again: once the socket buffers fill, its queue
    // fills and the server gives up on it. 40 KB events fill loopback buffers fast.
    let payload = json!("y".repeat(40_000));
    let mut published = 0;
    while server.metrics().drops == 0 {
        server.publish("doc:1", "UPDATED", "1", &payload).await.unwrap();
        published += 1;
        assert!(published < 100_000, "the slow consumer was never dropped");
        // Lets the connection tasks and the bystander run (single-threaded test runtime).
        tokio::task::yield_now().await;
    }
    let sluggard = tokio::spawn(async move {
        let mut seqs = Vec::new();
        loop {
            match within("the sluggard's next frame", futures_util::StreamExt::next(&mut sluggard.ws)).await {
                Some(Ok(Message::Text(text))) => {
                    let event: serde_json::Value = serde_json::from_str(&text).unwrap();
                    seqs.push(event["seq"].as_u64().expect("only events were sent"));
                }
                Some(Ok(Message::Close(Some(frame)))) => {
                    return (seqs, u16::from(frame.code), frame.reason.to_string());
                }
                other => panic!("expected events, then a close frame, got {other:?}"),
            }
        }
    });
    eventually("the sluggard to be freed", || server.metrics().connections == 1).await;
    server.publish("doc:1", "UPDATED", "1", &json!("last")).await.unwrap();
    let received = within("the bystander", reader).await.unwrap();
    assert_eq!(received, published + 1, "the bystander got every event");
    let (seqs, code, reason) = within("the sluggard's close", sluggard).await.unwrap();
    assert_eq!(code, close::TOO_SLOW, "{reason}");
    assert!(reason.contains("too slow"), "{reason}");
    assert!((seqs.len() as u64) < published, "dropped before the end: {} of {published}", seqs.len());
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>(), "what it got came in order, without gaps");
}

#[tokio::test]
async fn a_consumer_dropped_as_too_slow_gets_its_close_frame_behind_what_it_had_not_read() {
    let mut builder = Server::builder().dev(true).outbound(8, Duration::from_millis(300));
    builder.config_mut().read_buffer_size = 1024;
    let server = builder.bind("127.0.0.1:0").await.unwrap();
    let mut sluggard = Client::dev(&server, "sluggard").await;
    sluggard.subscribe(&["doc:1"]).await;
    let payload = json!("y".repeat(40_000));
    while server.metrics().drops == 0 {
        server.publish("doc:1", "UPDATED", "1", &payload).await.unwrap();
        tokio::task::yield_now().await;
    }
    // Longer than the 2 s a close used to wait on a full socket.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (code, reason) = sluggard.closed().await;
    assert_eq!(code, close::TOO_SLOW, "{reason}");
    eventually("the sluggard to be freed", || server.metrics().connections == 0).await;
    assert_eq!(server.metrics().drops, 1, "one drop, counted once");
}

#[tokio::test]
async fn half_open_sockets_are_dropped_after_the_idle_timeout() {
    let server = Server::builder()
        .dev(true)
        .heartbeat(Duration::from_millis(50), Duration::from_millis(300))
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let (server, mut bystander) = setup(server).await;
    // The bystander answers pings; the silent one stands for a peer that vanished.
    let mut silent = Client::dev(&server, "silent").await;
    let answering = tokio::spawn(async move {
        loop {
            let message = bystander.recv_any().await;
            if message["type"] == "ping" {
                bystander.send(r#"{"type":"pong"}"#).await;
            }
            if message["topic"] == "doc:1" {
                return message;
            }
        }
    });
    // A normal closure, not 1001 (a restart, reconnect at once) and without a reconnect hint.
    let (code, reason) = silent.closed().await;
    assert_eq!(code, close::NORMAL, "{reason}");
    assert!(reason.starts_with("idle") && close::retry_after_ms(&reason).is_none(), "{reason}");
    eventually("the silent connection to be freed", || server.metrics().connections == 1).await;
    server.publish("doc:1", "UPDATED", "1", &json!(1)).await.unwrap();
    assert_eq!(within("the event", answering).await.unwrap()["seq"], 1);
}
