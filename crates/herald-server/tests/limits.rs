//! Every resource an outsider can make the server hold has a bound: what a
//! client sees when it reaches one, and that nobody else is hurt.

mod support;

use std::time::Duration;

use serde_json::json;
use support::*;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt, BufReader},
    net::TcpStream,
};
use tokio_tungstenite::tungstenite::{Error, client::IntoClientRequest};

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

/// A TCP connection that sent part of a request head and waits.
async fn partial_request(server: &ServerHandle) -> TcpStream {
    let mut tcp = within("connect", TcpStream::connect(server.local_addr())).await.expect("connect");
    within("a write", tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: slow\r\n")).await.expect("write");
    tcp
}

/// Whether the server closed `tcp` (reading ends or fails) before it said anything.
async fn closed_silently(tcp: &mut TcpStream) -> bool {
    let mut buf = [0; 256];
    matches!(within("the server to close", tcp.read(&mut buf)).await, Ok(0) | Err(_))
}

#[tokio::test]
async fn request_heads_that_do_not_arrive_in_time_are_dropped_and_so_are_idle_keep_alives() {
    let server = dev_server(|config| config.header_timeout = Duration::from_millis(300)).await;
    let mut slow = partial_request(&server).await;
    assert!(closed_silently(&mut slow).await, "a slowloris head is cut off");

    let tcp = within("connect", TcpStream::connect(server.local_addr())).await.expect("connect");
    let mut idle = BufReader::new(tcp);
    idle.get_mut().write_all(b"GET /healthz HTTP/1.1\r\nHost: idle\r\n\r\n").await.unwrap();
    assert_eq!(read_response(&mut idle).await, (200, "ok".to_owned()));
    assert!(closed_silently(idle.get_mut()).await, "a keep-alive connection that stays idle is closed");
}

#[tokio::test]
async fn connections_waiting_to_authenticate_are_capped_and_health_checks_still_answer() {
    let server = dev_server(|config| config.max_unauthenticated = 5).await;
    let mut member = Client::dev(&server, "member").await;
    member.subscribe(&["doc:1"]).await;
    let mut waiting = Vec::new();
    for _ in 0..5 {
        waiting.push(partial_request(&server).await);
    }
    // The gate counts a connection once accepted: wait until all five are in.
    within("the five to be accepted", async {
        loop {
            let (status, _) = http(&server, "GET", "/healthz", &[], "").await;
            let (poll, _) = http(&server, "GET", "/api/poll?token=u&topics=doc:1", &[], "").await;
            if status == 200 && poll == 503 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    let (status, head, body) = http_with_head(&server, "GET", "/api/poll?token=u&topics=doc:1", &[], "").await;
    assert_eq!(status, 503);
    assert!(body.contains("waiting to authenticate") && head.contains("retry-after: 5"), "{head}{body}");
    let seq = server.publish("doc:1", "UPDATED", "1", &json!({})).await.unwrap();
    assert_eq!(member.recv().await["seq"], seq, "an authenticated connection is unaffected");

    drop(waiting);
    eventually_ok(&server, "/api/poll?token=u&topics=doc:1").await;
    Client::dev(&server, "newcomer").await;
}

/// Polls `path` until it answers 200.
async fn eventually_ok(server: &ServerHandle, path: &str) {
    within(&format!("{path} to answer 200"), async {
        while http(server, "GET", path, &[], "").await.0 != 200 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
}

#[tokio::test]
async fn the_total_cap_refuses_clearly_and_keeps_answering_health_checks() {
    let server = dev_server(|config| config.max_connections = Some(3)).await;
    let mut held = Vec::new();
    for user in ["a", "b", "c"] {
        held.push(Client::dev(&server, user).await);
    }
    let (status, body) = http(&server, "GET", "/api/poll?token=u&topics=doc:1", &[], "").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("limit of 3 connections"), "{body}");
    assert_eq!(http(&server, "GET", "/healthz", &[], "").await, (200, "ok".to_owned()));
    let refused = tokio_tungstenite::connect_async(format!("{}?token=d", server.ws_url())).await;
    assert!(matches!(&refused, Err(Error::Http(response)) if response.status() == 503), "{refused:?}");

    held.pop();
    eventually_ok(&server, "/api/poll?token=u&topics=doc:1").await;
}

#[tokio::test]
async fn connections_per_address_are_capped_and_behind_a_trusted_proxy_per_client() {
    let server = dev_server(|config| config.max_connections_per_ip = 2).await;
    let _held = [Client::dev(&server, "a").await, Client::dev(&server, "b").await];
    let refused = tokio_tungstenite::connect_async(format!("{}?token=c", server.ws_url())).await;
    assert!(matches!(&refused, Err(Error::Http(response)) if response.status() == 429), "{refused:?}");

    // Behind a proxy every client shares its address; the proxy names them.
    let server = dev_server(|config| {
        config.max_connections_per_ip = 2;
        config.trusted_proxies = vec!["127.0.0.0/8".parse().unwrap()];
    })
    .await;
    let through_proxy = |client: &'static str, user: &'static str| {
        let url = format!("{}?token={user}", server.ws_url());
        async move {
            let mut request = url.into_client_request().unwrap();
            request.headers_mut().insert("X-Forwarded-For", client.parse().unwrap());
            tokio_tungstenite::connect_async(request).await.expect("the handshake succeeds").0
        }
    };
    let mut held = Vec::new();
    for user in ["a", "b"] {
        let mut ws = Client { ws: through_proxy("203.0.113.1", user).await };
        assert_eq!(ws.recv().await["type"], "connected");
        held.push(ws);
    }
    let mut third = Client { ws: through_proxy("203.0.113.1", "c").await };
    let (code, reason) = third.closed().await;
    assert_eq!(code, herald_protocol::close::RATE_LIMITED, "{reason}");
    assert!(reason.contains("address holds 2 connections"), "{reason}");
    let mut other = Client { ws: through_proxy("203.0.113.2", "d").await };
    assert_eq!(other.recv().await["type"], "connected", "another client behind the same proxy");
}

#[tokio::test]
async fn connections_per_user_are_capped_on_every_transport() {
    let server = dev_server(|config| config.max_connections_per_user = 2).await;
    let _held = [Client::dev(&server, "alice").await, Client::dev(&server, "alice").await];
    let mut third = Client::connect(&format!("{}?token=alice", server.ws_url())).await;
    let (code, reason) = third.closed().await;
    assert_eq!(code, herald_protocol::close::RATE_LIMITED, "{reason}");
    assert!(reason.contains("user holds 2 connections"), "{reason}");
    let (status, body) = http(&server, "GET", "/api/poll?token=alice&topics=doc:1", &[], "").await;
    assert_eq!(status, 429, "{body}");
    let (status, _) = Sse::open(&server, "/sse?token=alice&topics=doc:1", &[]).await;
    assert_eq!(status, 429);
    Client::dev(&server, "bob").await;
}
