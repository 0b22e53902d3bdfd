//! Every resource an outsider can make the server hold has a bound: what a
//! client sees when it reaches one, and that nobody else is hurt.

mod support;

use serde_json::json;
use support::*;

async fn dev_server(configure: impl FnOnce(&mut herald_server::ServerConfig)) -> ServerHandle {
    let mut builder = Server::builder().dev(true);
    configure(builder.config_mut());
    builder.bind("127.0.0.1:0").await.expect("server starts")
}

#[tokio::test]
async fn subscriptions_per_connection_are_capped_with_an_error_per_topic_over() {
    let server = dev_server(|config| config.max_subscriptions = 3).await;
    let mut client = Client::dev(&server, "u-1").await;
    client.send(&json!({"type":"subscribe","topics":["doc:1","doc:2","note:*","doc:4","doc:5"]}).to_string()).await;
    let mut refused = Vec::new();
    let subscribed = loop {
        let message = client.recv().await;
        if message["type"] == "subscribed" {
            break message;
        }
        assert_eq!((message["type"].as_str(), message["code"].as_u64()), (Some("error"), Some(429)), "{message}");
        assert!(message["message"].as_str().unwrap().contains("at most 3 topics"), "{message}");
        refused.push(message["topic"].as_str().unwrap().to_owned());
    };
    assert_eq!(refused, ["doc:4", "doc:5"]);
    assert_eq!(subscribed["topics"], json!(["doc:1", "doc:2", "note:*"]));
    assert_eq!(server.metrics().subscriptions, 3);

    // At the cap, a topic already held is no new subscription.
    assert_eq!(client.subscribe(&["doc:1"]).await["topics"], json!(["doc:1"]));
    client.send(r#"{"type":"unsubscribe","topics":["doc:2"]}"#).await;
    assert_eq!(client.recv().await["type"], "unsubscribed");
    assert_eq!(client.subscribe(&["doc:4"]).await["topics"], json!(["doc:4"]));

    let (status, body) = http(&server, "GET", "/api/poll?token=u-2&topics=a:1,a:2,a:3,a:4", &[], "").await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("at most 3"), "{body}");
}
