//! Tokens at the edges: claims an attacker with a validly signed token (or
//! a careless issuer) can choose, and how long each transport honours one.

use herald_protocol::close;
use herald_test_support::*;
use serde_json::{Value, json};

async fn jwt_server() -> ServerHandle {
    Server::builder().secret(SECRET).bind("127.0.0.1:0").await.expect("server starts")
}

fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

/// A token that expires at the end of time (`exp` = 2^64 − 1).
fn endless(user: &str) -> String {
    let mut claims = Claims::new(user, 0).publish(["doc:*"]);
    claims.exp = u64::MAX;
    mint_token(SECRET, &claims).unwrap()
}

#[tokio::test]
async fn a_token_expiring_at_the_end_of_time_works_everywhere_and_leaks_no_connection() {
    let server = jwt_server().await;
    let mut client = Client::connect(&format!("{}?token={}", server.ws_url(), endless("u-1"))).await;
    let connected = client.recv().await;
    assert_eq!(connected["type"], "connected", "{connected}");
    client.subscribe(&["doc:1"]).await;
    // The same token again, as a refresh.
    client.send(&json!({"type":"refresh","token":endless("u-1")}).to_string()).await;
    assert_eq!(client.recv().await["type"], "connected");
    let seq = server.publish("doc:1", "UPDATED", "1", &json!({})).await.unwrap().seq;
    assert_eq!(client.recv().await["seq"], seq);

    let bearer = format!("Bearer {}", endless("backend"));
    let headers = [("Authorization", bearer.as_str()), ("Content-Type", "application/json")];
    let body = r#"{"topic":"doc:1","event":"UPDATED","data":{"entity_id":"1"}}"#;
    assert_eq!(http(&server, "POST", "/api/publish", &headers, body).await.0, 200);
    assert_eq!(client.recv().await["seq"], seq + 1);
    let (status, mut sse) = Sse::open(&server, &format!("/sse?topics=doc:1&token={}", endless("u-2")), &[]).await;
    assert_eq!(status, 200);
    assert_eq!(field(&sse.next().await, "event"), Some("herald.connected"));

    drop((client, sse));
    eventually("every connection to be gone", || server.metrics().connections == 0).await;
}

#[tokio::test]
async fn a_token_not_valid_yet_is_refused_on_every_transport() {
    let server = jwt_server().await;
    let later = Claims::new("u-1", 7200).publish(["doc:*"]).not_before(unix_now() + 3600);
    let later = mint_token(SECRET, &later).unwrap();

    let mut client = Client::connect(&format!("{}?token={later}", server.ws_url())).await;
    let (code, reason) = client.closed().await;
    assert_eq!(code, close::UNAUTHORIZED, "{reason}");
    assert!(reason.contains("not valid yet"), "{reason}");

    let mut client = Client::authed(&server, &token("u-1")).await;
    client.send(&json!({"type":"refresh","token":later}).to_string()).await;
    let (code, reason) = client.closed().await;
    assert_eq!(code, close::UNAUTHORIZED, "{reason}");

    let bearer = format!("Bearer {later}");
    let headers = [("Authorization", bearer.as_str()), ("Content-Type", "application/json")];
    let body = r#"{"topic":"doc:1","event":"UPDATED","data":{"entity_id":"1"}}"#;
    let (status, body) = http(&server, "POST", "/api/publish", &headers, body).await;
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("not valid yet"), "{body}");
    let (status, _) = Sse::open(&server, &format!("/sse?topics=doc:1&token={later}"), &[]).await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn a_plain_sse_stream_ends_when_its_token_expires() {
    let server = jwt_server().await;
    let short = mint_token(SECRET, &Claims::new("u-1", 2)).unwrap();
    let (status, mut sse) = Sse::open(&server, &format!("/sse?topics=doc:1&token={short}"), &[]).await;
    assert_eq!(status, 200);
    assert_eq!(field(&sse.next().await, "event"), Some("herald.connected"));
    assert_eq!(field(&sse.next().await, "event"), Some("herald.subscribed"));
    server.publish("doc:1", "UPDATED", "1", &json!({})).await.unwrap();
    assert_eq!(field(&sse.next().await, "id"), Some("1"));

    let end = sse.next().await;
    assert_eq!(field(&end, "event"), Some("herald.close"), "{end:?}");
    let close: Value = serde_json::from_str(field(&end, "data").unwrap()).unwrap();
    assert_eq!(close["code"], close::UNAUTHORIZED);
    eventually("the stream's subscription to be gone", || server.metrics().subscriptions == 0).await;
    assert!(sse.ended().await, "nothing follows the close");
}

#[tokio::test]
async fn http_publishes_carry_the_tokens_user_unless_it_publishes_on_behalf_of_users() {
    let server = jwt_server().await;
    let mut reader = Client::authed(&server, &token("reader")).await;
    reader.subscribe(&["doc:1"]).await;
    let body = r#"{"topic":"doc:1","event":"UPDATED","data":{"entity_id":"1","user_id":"bob"}}"#;

    let alice = mint_token(SECRET, &Claims::new("alice", 600).publish(["doc:*"])).unwrap();
    let bearer = format!("Bearer {alice}");
    let headers = [("Authorization", bearer.as_str()), ("Content-Type", "application/json")];
    assert_eq!(http(&server, "POST", "/api/publish", &headers, body).await.0, 200);
    assert_eq!(reader.recv().await["data"]["user_id"], "alice", "alice cannot publish as bob");

    let backend = Claims::new("backend", 600).publish(["doc:*"]).on_behalf_of_users();
    let bearer = format!("Bearer {}", mint_token(SECRET, &backend).unwrap());
    let headers = [("Authorization", bearer.as_str()), ("Content-Type", "application/json")];
    assert_eq!(http(&server, "POST", "/api/publish", &headers, body).await.0, 200);
    assert_eq!(reader.recv().await["data"]["user_id"], "bob", "a backend names who triggered the change");
}

#[tokio::test]
async fn websocket_publishes_follow_the_same_rule() {
    let server = jwt_server().await;
    let mut reader = Client::authed(&server, &token("reader")).await;
    reader.subscribe(&["doc:1"]).await;
    let publish = json!({"type":"publish","id":"p-1","topic":"doc:1","event":"UPDATED",
        "data":{"entity_id":"1","payload":null,"user_id":"bob","timestamp":"2026-11-25T10:00:00Z"}})
    .to_string();
    for (claims, expected) in [
        (Claims::new("alice", 600).publish(["doc:*"]), "alice"),
        (Claims::new("backend", 600).publish(["doc:*"]).on_behalf_of_users(), "bob"),
    ] {
        let mut publisher = Client::authed(&server, &mint_token(SECRET, &claims).unwrap()).await;
        publisher.send(&publish).await;
        assert_eq!(publisher.recv().await["type"], "ack");
        assert_eq!(reader.recv().await["data"]["user_id"], expected);
    }
}
