//! The HTTP endpoints: publish, SSE, long poll, health, metrics, static files.

use herald_protocol::close;
use herald_test_support::*;
use serde_json::{Value, json};

async fn jwt_server() -> ServerHandle {
    Server::builder().secret(SECRET).bind("127.0.0.1:0").await.expect("server starts")
}

fn backend_token() -> String {
    mint_token(SECRET, &Claims::new("backend", 600).publish(["doc:*"])).unwrap()
}

const BODY: &str = r#"{"topic":"doc:1","event":"UPDATED","data":{"entity_id":"1","payload":{"title":"new"}}}"#;

#[tokio::test]
async fn http_publish_answers_the_seq_and_reaches_subscribers() {
    let server = jwt_server().await;
    let mut client = Client::authed(&server, &token("u1")).await;
    client.subscribe(&["doc:1"]).await;
    let bearer = format!("Bearer {}", backend_token());
    let headers = [("Authorization", bearer.as_str()), ("Content-Type", "application/json")];
    let (status, body) = http(&server, "POST", "/api/publish", &headers, BODY).await;
    assert_eq!((status, serde_json::from_str::<Value>(&body).unwrap()), (200, json!({"seq":1,"epoch":server.epoch()})));
    let event = client.recv().await;
    assert_eq!((event["seq"].as_u64(), &event["data"]["payload"]), (Some(1), &json!({"title":"new"})));
    assert!(event["data"]["timestamp"].as_str().is_some_and(|t| t.contains('T')));
}

#[tokio::test]
async fn http_publish_refuses_bad_tokens_forbidden_topics_and_bad_bodies() {
    let server = jwt_server().await;
    assert_eq!(post_publish(&server, "nope", BODY).await.0, 401);
    assert_eq!(post_publish(&server, &token("reader"), BODY).await.0, 403);
    let (status, body) = post_publish(&server, &backend_token(), r#"{"topic":"doc:1"}"#).await;
    assert_eq!(status, 400);
    assert!(body.contains("event"), "{body}");
}

#[tokio::test]
async fn healthz_and_metrics_answer() {
    let server = Server::bind("127.0.0.1:0").await.unwrap();
    let _client = Client::dev(&server, "u1").await;
    assert_eq!(http(&server, "GET", "/healthz", &[], "").await, (200, "ok".to_owned()));
    let (status, body) = http(&server, "GET", "/metrics", &[], "").await;
    assert_eq!(status, 200);
    assert!(body.contains("herald_connections{transport=\"websocket\"} 1"), "{body}");
    assert!(body.ends_with("# EOF\n"), "OpenMetrics text: {body}");
}

#[tokio::test]
async fn sse_streams_named_events_with_seq_ids_and_resumes_from_last_event_id() {
    let server = Server::bind("127.0.0.1:0").await.unwrap();
    let (status, mut sse) = Sse::open(&server, "/sse?topics=doc:1&token=u1", &[]).await;
    assert_eq!(status, 200);
    assert_eq!(field(&sse.next().await, "event"), Some("herald.connected"));
    assert_eq!(field(&sse.next().await, "event"), Some("herald.subscribed"));
    server.publish("doc:1", "UPDATED", "1", &json!(1)).await.unwrap();
    server.publish("doc:1", "DELETED", "1", &json!(2)).await.unwrap();
    let first = sse.next().await;
    assert_eq!((field(&first, "event"), field(&first, "id")), (Some("UPDATED"), Some("1")));
    let data: Value = serde_json::from_str(field(&first, "data").unwrap()).unwrap();
    assert_eq!(data["topic"], "doc:1");
    drop(sse);

    let (_, mut resumed) = Sse::open(&server, "/sse?topics=doc:1&token=u1", &[("Last-Event-ID", "1")]).await;
    assert_eq!(field(&resumed.next().await, "event"), Some("herald.connected"));
    let replayed = resumed.next().await;
    assert_eq!((field(&replayed, "event"), field(&replayed, "id")), (Some("DELETED"), Some("2")));
    let subscribed: Value = serde_json::from_str(field(&resumed.next().await, "data").unwrap()).unwrap();
    assert_eq!(subscribed["recovered"], true);
}

#[tokio::test]
async fn an_sse_stream_of_one_wildcard_has_wildcard_seq_ids_and_resumes_every_topic_from_last_event_id() {
    let server = Server::bind("127.0.0.1:0").await.unwrap();
    let (_, mut sse) = Sse::open(&server, "/sse?topics=doc:*&token=u1", &[]).await;
    assert_eq!(field(&sse.next().await, "event"), Some("herald.connected"));
    let subscribed: Value = serde_json::from_str(field(&sse.next().await, "data").unwrap()).unwrap();
    let position = subscribed["last_seq"]["doc:*"].as_u64().expect("a wildcard's position");
    server.publish("doc:1", "UPDATED", "1", &json!(1)).await.unwrap();
    let first = sse.next().await;
    let data: Value = serde_json::from_str(field(&first, "data").unwrap()).unwrap();
    let id = data["wildcard_seq"].as_u64().unwrap();
    assert!(id > position);
    assert_eq!(field(&first, "id"), Some(&*id.to_string()), "the id is the event's wildcard_seq");
    drop(sse);

    // Missed meanwhile: a topic the stream never saw, and one it did.
    server.publish("doc:2", "ADDED", "2", &json!(2)).await.unwrap();
    server.publish("doc:1", "DELETED", "1", &json!(3)).await.unwrap();
    let last_id = id.to_string();
    let (_, mut resumed) = Sse::open(&server, "/sse?topics=doc:*&token=u1", &[("Last-Event-ID", &last_id)]).await;
    assert_eq!(field(&resumed.next().await, "event"), Some("herald.connected"));
    let (a, b) = (resumed.next().await, resumed.next().await);
    assert_eq!((field(&a, "event"), field(&b, "event")), (Some("ADDED"), Some("DELETED")));
    let subscribed: Value = serde_json::from_str(field(&resumed.next().await, "data").unwrap()).unwrap();
    assert_eq!(subscribed["recovered"], true, "{subscribed}");
    assert_eq!(subscribed["last_seq"]["doc:*"].as_u64().map(|seq| seq.to_string()).as_deref(), field(&b, "id"));
}

#[tokio::test]
async fn sse_without_a_token_is_refused() {
    let server = jwt_server().await;
    let (status, _) = Sse::open(&server, "/sse?topics=doc:1", &[]).await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn sse_streams_end_on_shutdown_with_a_retry_hint() {
    let server = Server::bind("127.0.0.1:0").await.unwrap();
    let (_, mut sse) = Sse::open(&server, "/sse?topics=doc:1&token=u1", &[]).await;
    sse.next().await;
    sse.next().await;
    let shutdown = tokio::spawn(server.shutdown());
    let last = sse.next().await;
    assert!(field(&last, "retry").is_some(), "{last:?}");
    within("the shutdown", shutdown).await.unwrap();
}

#[tokio::test]
async fn a_poll_of_one_wildcard_resumes_from_its_position_with_every_topic_it_missed() {
    let server = Server::bind("127.0.0.1:0").await.unwrap();
    let epoch = server.epoch();
    let poll = |since: Option<u64>| {
        let since = since.map(|since| format!("&since={since}&epoch={epoch}")).unwrap_or_default();
        let path = format!("/api/poll?topics=doc:*&token=u1&timeout=0{since}");
        let server = &server;
        async move { serde_json::from_str::<Value>(&http(server, "GET", &path, &[], "").await.1).unwrap() }
    };
    let position = poll(None).await["last_seq"]["doc:*"].as_u64().expect("a wildcard's position");
    server.publish("doc:1", "UPDATED", "1", &json!(1)).await.unwrap();
    server.publish("doc:2", "ADDED", "2", &json!(2)).await.unwrap();
    let answer = poll(Some(position)).await;
    let topics: Vec<&str> = answer["events"].as_array().unwrap().iter().filter_map(|e| e["topic"].as_str()).collect();
    assert_eq!((answer["recovered"].as_bool(), topics), (Some(true), vec!["doc:1", "doc:2"]), "{answer}");
    let next = answer["last_seq"]["doc:*"].as_u64().unwrap();
    assert_eq!(Some(next), answer["events"][1]["wildcard_seq"].as_u64(), "the next poll's since");
    server.publish("doc:3", "ADDED", "3", &json!(3)).await.unwrap();
    let answer = poll(Some(next)).await;
    assert_eq!((answer["recovered"].as_bool(), &answer["events"][0]["topic"]), (Some(true), &json!("doc:3")));

    // Beside another topic, one `since` cannot be the wildcard's position.
    let path = format!("/api/poll?topics=doc:*,note:1&token=u1&timeout=0&since={next}&epoch={epoch}");
    let answer: Value = serde_json::from_str(&http(&server, "GET", &path, &[], "").await.1).unwrap();
    assert_eq!(answer["recovered"], false, "{answer}");
}

#[tokio::test]
async fn poll_returns_missed_events_at_once_and_waits_for_new_ones() {
    let server = Server::bind("127.0.0.1:0").await.unwrap();
    let epoch = server.epoch();
    server.publish("doc:1", "UPDATED", "1", &json!(1)).await.unwrap();
    server.publish("doc:1", "UPDATED", "2", &json!(2)).await.unwrap();
    let (status, body) =
        http(&server, "GET", &format!("/api/poll?topics=doc:1&since=1&epoch={epoch}&token=u1"), &[], "").await;
    assert_eq!(status, 200);
    let answer: Value = serde_json::from_str(&body).unwrap();
    assert_eq!((answer["recovered"].as_bool(), answer["events"][0]["seq"].as_u64()), (Some(true), Some(2)), "{answer}");
    assert_eq!(answer["last_seq"]["doc:1"], 2);

    let path = format!("/api/poll?topics=doc:1&since=2&epoch={epoch}&token=u1");
    let waiting = {
        let addr = server.local_addr();
        tokio::spawn(async move {
            // Re-implements `http` without a handle, which cannot move into the task.
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
            let request = format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
            stream.write_all(request.as_bytes()).await.unwrap();
            let mut response = String::new();
            stream.read_to_string(&mut response).await.unwrap();
            response
        })
    };
    eventually("the poll to wait", || server.metrics().subscriptions == 1).await;
    server.publish("doc:1", "ADDED", "3", &json!(3)).await.unwrap();
    let response = within("the poll", waiting).await.unwrap();
    assert!(response.contains(r#""seq":3"#), "{response}");

    let other_epoch = http(&server, "GET", "/api/poll?topics=doc:1&since=1&epoch=old&token=u1", &[], "").await.1;
    assert_eq!(serde_json::from_str::<Value>(&other_epoch).unwrap()["recovered"], false);
}

#[tokio::test]
async fn static_files_are_served_without_escaping_the_directory() {
    let dir = std::env::temp_dir().join(format!("herald-static-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("index.html"), "<h1>demo</h1>").unwrap();
    std::fs::write(dir.join("app.js"), "console.log(1)").unwrap();
    let mut builder = Server::builder().dev(true);
    builder.config_mut().static_dir = Some(dir.clone());
    let server = builder.bind("127.0.0.1:0").await.unwrap();
    assert_eq!(http(&server, "GET", "/", &[], "").await, (200, "<h1>demo</h1>".to_owned()));
    assert_eq!(http(&server, "GET", "/app.js", &[], "").await.1, "console.log(1)");
    assert_eq!(http(&server, "GET", "/some/route", &[], "").await.1, "<h1>demo</h1>");
    assert_eq!(http(&server, "GET", "/../Cargo.toml", &[], "").await.0, 404);
    assert_eq!(http(&server, "GET", "/healthz", &[], "").await.1, "ok");
    let mut client = Client::dev(&server, "u1").await;
    client.send(r#"{"type":"ping"}"#).await;
    assert_eq!(client.recv().await["type"], "pong");
    drop(client);
    server.disconnect_all(close::NORMAL);
    let _ = std::fs::remove_dir_all(dir);
}

/// A publish head announcing `length` bytes, followed by `sent` bytes of them.
fn partial_publish(authorization: &str, length: usize, sent: usize) -> Vec<u8> {
    let head = format!(
        "POST /api/publish HTTP/1.1\r\nHost: test\r\n{authorization}Content-Type: application/json\r\nContent-Length: {length}\r\n\r\n"
    );
    let mut request = head.into_bytes();
    request.extend(std::iter::repeat_n(b' ', sent));
    request
}

#[tokio::test]
async fn a_publish_is_refused_before_its_body_is_read_without_a_valid_token() {
    let server = jwt_server().await;
    // 2 MB announced, 10 bytes sent: the answer comes without the rest.
    let (status, body) = http_partial(&server, &partial_publish("", 2_000_000, 10)).await;
    assert_eq!(status, 401, "{body}");
    let (status, body) =
        http_partial(&server, &partial_publish("Authorization: Bearer forged\r\n", 2_000_000, 10)).await;
    assert_eq!(status, 401, "{body}");
}

#[tokio::test]
async fn publish_bodies_are_bounded_in_size_and_time() {
    let mut builder = Server::builder().secret(SECRET);
    builder.config_mut().body_timeout = std::time::Duration::from_millis(300);
    let server = builder.bind("127.0.0.1:0").await.unwrap();
    let bearer = format!("Authorization: Bearer {}\r\n", backend_token());
    let (status, body) = http_partial(&server, &partial_publish(&bearer, 64 * 1024 + 1, 10)).await;
    assert_eq!(status, 413, "announced too large: {body}");
    assert!(body.contains("65536-byte limit"), "{body}");

    // Chunked, so the size is known only while reading.
    let mut chunked = format!(
        "POST /api/publish HTTP/1.1\r\nHost: test\r\n{bearer}Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    .into_bytes();
    for _ in 0..5 {
        chunked.extend(format!("4000\r\n{}\r\n", " ".repeat(0x4000)).into_bytes());
    }
    let (status, body) = http_partial(&server, &chunked).await;
    assert_eq!(status, 413, "sent too large: {body}");

    let (status, body) = http_partial(&server, &partial_publish(&bearer, 100, 10)).await;
    assert_eq!(status, 408, "stalled: {body}");
    assert!(body.contains("did not arrive"), "{body}");
}

#[tokio::test]
async fn a_publish_body_that_is_not_json_gets_415() {
    let server = jwt_server().await;
    let bearer = format!("Bearer {}", backend_token());
    for content_type in [Some("text/plain"), Some("application/x-www-form-urlencoded"), None] {
        let mut headers = vec![("Authorization", bearer.as_str())];
        headers.extend(content_type.map(|value| ("Content-Type", value)));
        let (status, body) = http(&server, "POST", "/api/publish", &headers, BODY).await;
        assert_eq!(status, 415, "{content_type:?}: {body}");
        assert!(body.contains("application/json"), "{body}");
    }
    let headers = [("Authorization", bearer.as_str()), ("Content-Type", "application/json; charset=utf-8")];
    assert_eq!(http(&server, "POST", "/api/publish", &headers, BODY).await.0, 200);
}

#[tokio::test]
async fn http_publishes_are_rate_limited_per_user() {
    let mut builder = Server::builder().secret(SECRET);
    builder.config_mut().http_publish_rate = 1;
    builder.config_mut().http_publish_burst = 2;
    let server = builder.bind("127.0.0.1:0").await.unwrap();
    let backend = backend_token();
    assert_eq!(post_publish(&server, &backend, BODY).await.0, 200);
    assert_eq!(post_publish(&server, &backend, BODY).await.0, 200);
    let bearer = format!("Bearer {backend}");
    let headers = [("Authorization", bearer.as_str()), ("Content-Type", "application/json")];
    let (status, head, body) = http_with_head(&server, "POST", "/api/publish", &headers, BODY).await;
    assert_eq!(status, 429, "{body}");
    assert!(head.contains("retry-after: 1"), "{head}");
    let other = mint_token(SECRET, &Claims::new("other-backend", 600).publish(["doc:*"])).unwrap();
    assert_eq!(post_publish(&server, &other, BODY).await.0, 200, "another user has a bucket of its own");
}

#[tokio::test]
async fn http_endpoints_refuse_browsers_on_origins_outside_the_allow_list() {
    let server =
        Server::builder().secret(SECRET).allowed_origin("https://app.example").bind("127.0.0.1:0").await.unwrap();
    let reader = token("reader");
    let bearer = format!("Bearer {}", backend_token());
    for origin in [Some("https://evil.example"), Some("https://app.example"), None] {
        let expected = if origin == Some("https://evil.example") { 403 } else { 200 };
        let with = |mut headers: Vec<(&'static str, String)>| {
            headers.extend(origin.map(|origin| ("Origin", origin.to_owned())));
            headers
        };
        let publish = with(vec![("Authorization", bearer.clone()), ("Content-Type", "application/json".into())]);
        let publish: Vec<(&str, &str)> = publish.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let (status, body) = http(&server, "POST", "/api/publish", &publish, BODY).await;
        assert_eq!(status, expected, "publish from {origin:?}: {body}");

        let plain = with(vec![]);
        let plain: Vec<(&str, &str)> = plain.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let poll = format!("/api/poll?token={reader}&topics=doc:1");
        assert_eq!(http(&server, "GET", &poll, &plain, "").await.0, expected, "poll from {origin:?}");
        let (status, _) = Sse::open(&server, &format!("/sse?token={reader}&topics=doc:1"), &plain).await;
        assert_eq!(status, expected, "sse from {origin:?}");
    }
}

#[tokio::test]
async fn an_event_carries_its_publishers_trace_id_or_the_traceparents() {
    let server = jwt_server().await;
    let mut reader = Client::authed(&server, &token("reader")).await;
    reader.subscribe(&["doc:1"]).await;
    let bearer = format!("Bearer {}", backend_token());
    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let with_body_id = r#"{"topic":"doc:1","event":"UPDATED","data":{"entity_id":"1"},"trace_id":"from-body"}"#;
    for (body, traceparent, expected) in [
        (with_body_id, Some(traceparent), Some("from-body")),
        (BODY, Some(traceparent), Some("4bf92f3577b34da6a3ce929d0e0e4736")),
        (BODY, None, None),
    ] {
        let mut headers = vec![("Authorization", bearer.as_str()), ("Content-Type", "application/json")];
        headers.extend(traceparent.map(|value| ("traceparent", value)));
        assert_eq!(http(&server, "POST", "/api/publish", &headers, body).await.0, 200);
        let event = reader.recv().await;
        assert_eq!(event["trace_id"].as_str(), expected, "{event}");
    }
}
