//! `GET /sse?mode=frames` + `POST /sse/send`: a whole protocol v1 connection
//! over Server-Sent Events, for networks that block WebSocket.

use std::time::Duration;

use herald_protocol::close;
use herald_test_support::*;
use serde_json::{Value, json};

/// An open frames stream and the path its frames are posted to.
struct Stream {
    sse: Sse,
    send: String,
}

impl Stream {
    async fn open(server: &ServerHandle, query: &str) -> Self {
        let (status, mut sse) = Sse::open(server, &format!("/sse?mode=frames{query}"), &[]).await;
        assert_eq!(status, 200);
        let hello = frame(&sse.next().await);
        assert_eq!(hello["type"], "session");
        let id = hello["id"].as_str().expect("a session id").to_owned();
        assert_eq!(id.len(), 32, "128 random bits: {id}");
        Self { sse, send: format!("/sse/send?session={id}") }
    }

    async fn recv(&mut self) -> Value {
        frame(&self.sse.next().await)
    }

    /// The next frame that is not a server ping.
    async fn recv_message(&mut self) -> Value {
        loop {
            let frame = self.recv().await;
            if frame["type"] != "ping" {
                return frame;
            }
        }
    }

    async fn post(&self, server: &ServerHandle, frames: &[Value]) -> u16 {
        let body: Vec<String> = frames.iter().map(Value::to_string).collect();
        http(server, "POST", &self.send, &[("Content-Type", "text/plain")], &body.join("\n")).await.0
    }
}

/// Frames are unnamed events whose data is the JSON a WebSocket would carry.
fn frame(fields: &[(String, String)]) -> Value {
    assert_eq!(field(fields, "event"), None, "frames are unnamed events: {fields:?}");
    serde_json::from_str(field(fields, "data").expect("a data line")).expect("JSON data")
}

#[tokio::test]
async fn a_frames_stream_carries_a_whole_connection() {
    let server = Server::bind("127.0.0.1:0").await.unwrap();
    let mut stream = Stream::open(&server, "&token=u1").await;
    let connected = stream.recv().await;
    assert_eq!((connected["type"].as_str(), connected["user_id"].as_str()), (Some("connected"), Some("u1")));
    assert!(connected["epoch"].is_string());

    let subscribe = json!({"type":"subscribe","topics":["doc:1"]});
    let ping = json!({"type":"ping"});
    assert_eq!(stream.post(&server, &[subscribe, ping]).await, 202);
    assert_eq!(stream.recv().await["type"], "subscribed");
    assert_eq!(stream.recv().await["type"], "pong", "frames of one post are handled in order");

    server.publish("doc:1", "UPDATED", "1", &json!({"n": 1})).await.unwrap();
    let event = stream.recv_message().await;
    assert_eq!((event["topic"].as_str(), event["seq"].as_u64()), (Some("doc:1"), Some(1)));

    let publish = json!({"type":"publish","id":"p-1","topic":"doc:1","event":"ADDED",
        "data":{"entity_id":"7","payload":null,"timestamp":"2026-11-25T10:00:00Z"}});
    assert_eq!(stream.post(&server, &[publish]).await, 202);
    let mut seen = [stream.recv_message().await, stream.recv_message().await];
    seen.sort_by_key(|m| m["type"].is_string());
    assert_eq!((seen[0]["seq"].as_u64(), seen[0]["data"]["user_id"].as_str()), (Some(2), Some("u1")));
    assert_eq!((seen[1]["type"].as_str(), seen[1]["id"].as_str()), (Some("ack"), Some("p-1")));
}

#[tokio::test]
async fn first_message_auth_and_token_refusals_work_as_over_websocket() {
    let server = Server::builder().secret(SECRET).bind("127.0.0.1:0").await.unwrap();
    let mut stream = Stream::open(&server, "").await;
    let auth = json!({"type":"auth","token": token("u2")});
    assert_eq!(stream.post(&server, &[auth]).await, 202);
    assert_eq!(stream.recv().await["user_id"], "u2");

    let mut refused = Stream::open(&server, "&token=not-a-token").await;
    let close = refused.recv().await;
    assert_eq!((close["type"].as_str(), close["code"].as_u64()), (Some("close"), Some(close::UNAUTHORIZED as u64)));
    assert!(close["reason"].as_str().is_some_and(|r| !r.is_empty()));
}

#[tokio::test]
async fn a_refresh_that_allows_fewer_topics_ends_them_as_over_websocket() {
    let server = Server::builder().secret(SECRET).bind("127.0.0.1:0").await.unwrap();
    let wide = mint_token(SECRET, &Claims::new("u-1", 600).topics(["doc:*", "note:*"])).unwrap();
    let mut stream = Stream::open(&server, &format!("&token={wide}")).await;
    assert_eq!(stream.recv().await["type"], "connected");
    assert_eq!(stream.post(&server, &[json!({"type":"subscribe","topics":["doc:1","note:1"]})]).await, 202);
    assert_eq!(stream.recv_message().await["type"], "subscribed");
    let narrow = mint_token(SECRET, &Claims::new("u-1", 600).topics(["doc:*"])).unwrap();
    assert_eq!(stream.post(&server, &[json!({"type":"refresh","token":narrow})]).await, 202);
    assert_eq!(stream.recv_message().await["type"], "connected");
    let error = stream.recv_message().await;
    assert_eq!((error["code"].as_u64(), error["topic"].as_str()), (Some(4003), Some("note:1")), "{error}");
    server.publish("note:1", "UPDATED", "1", &json!({})).await.unwrap();
    server.publish("doc:1", "UPDATED", "1", &json!({})).await.unwrap();
    assert_eq!(stream.recv_message().await["topic"], "doc:1", "nothing of note:1");
}

#[tokio::test]
async fn a_stream_whose_client_left_is_cleaned_up_and_its_session_refused() {
    let server = Server::builder()
        .dev(true)
        .heartbeat(Duration::from_millis(100), Duration::from_secs(5))
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let mut stream = Stream::open(&server, "&token=u3").await;
    stream.recv().await;
    assert_eq!(stream.post(&server, &[json!({"type":"subscribe","topics":["doc:9"]})]).await, 202);
    stream.recv_message().await;
    assert_eq!(server.metrics().subscriptions, 1);

    let Stream { sse, send } = stream;
    drop(sse);
    eventually("the connection to end", || server.metrics().connections == 0).await;
    assert_eq!(server.metrics().subscriptions, 0);
    let (status, body) = http(&server, "POST", &send, &[], r#"{"type":"ping"}"#).await;
    assert_eq!(status, 404);
    assert!(body.contains("open a new one"), "{body}");
    let (status, _) = http(&server, "POST", "/sse/send?session=guess", &[], r#"{"type":"ping"}"#).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn browsers_on_allowed_origins_may_read_streams_and_post() {
    let server = Server::builder().dev(true).allowed_origin("http://app.example").bind("127.0.0.1:0").await.unwrap();
    let allowed = [("Origin", "http://app.example")];
    let (_, head, _) = http_with_head(&server, "POST", "/sse/send?session=x", &allowed, "").await;
    assert!(head.contains("access-control-allow-origin: http://app.example"), "{head}");
    let foreign = [("Origin", "http://evil.example")];
    let (_, head, _) = http_with_head(&server, "POST", "/sse/send?session=x", &foreign, "").await;
    assert!(!head.contains("access-control-allow-origin"), "{head}");

    let (_, mut sse) = Sse::open(&server, "/sse?mode=frames&token=u4", &foreign).await;
    sse.next().await;
    let close = frame(&sse.next().await);
    assert_eq!((close["type"].as_str(), close["code"].as_u64()), (Some("close"), Some(close::FORBIDDEN as u64)));
}
