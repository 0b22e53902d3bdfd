//! Every resource an outsider can make the server hold has a bound: what a
//! client sees when it reaches one, and that nobody else is hurt.

use std::time::Duration;

use herald_test_support::*;
use serde_json::json;
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
    let seq = server.publish("doc:1", "UPDATED", "1", &json!({})).await.unwrap().seq;
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

#[tokio::test]
async fn a_presence_flood_is_announced_in_batches_and_closes_no_reader() {
    const JOINERS: usize = 1_500;
    let server = dev_server(|config| {
        config.outbound_queue = 64;
        config.max_connections_per_ip = 0;
        config.max_presence_members = JOINERS + 1;
    })
    .await;
    let mut reader = Client::dev(&server, "reader").await;
    reader.send(r#"{"type":"subscribe","topics":["room:1"],"presence":true}"#).await;
    assert_eq!(reader.recv().await["type"], "subscribed");
    assert_eq!(reader.recv().await["members"], json!(["reader"]));
    let before = server.metrics().messages_out;
    let start = std::time::Instant::now();

    // Each joiner subscribes with presence and stays (reading nothing more);
    // then all leave at once.
    let mut joiners = Vec::new();
    for n in 0..JOINERS {
        let mut joiner = Client::dev(&server, &format!("u-{n}")).await;
        joiner.send(r#"{"type":"subscribe","topics":["room:1"],"presence":true}"#).await;
        assert_eq!(joiner.recv().await["type"], "subscribed");
        assert_eq!(joiner.recv().await["type"], "presence");
        joiners.push(joiner);
    }
    assert_eq!(server.metrics().drops, 0, "no joiner was closed for presence it did not read");
    drop(joiners);
    eventually("every joiner to be gone", || server.metrics().connections == 1).await;
    // The reader is still there, reads everything announced, and hears
    // that the last joiner left.
    let last = format!("u-{}", JOINERS - 1);
    reader.presence_until("room:1", "left", &last).await;
    let seq = server.publish("room:1", "UPDATED", "1", &json!({})).await.unwrap().seq;
    loop {
        let message = reader.recv().await;
        if message["seq"] == seq {
            break;
        }
        assert_eq!(message["type"], "presence_diff", "{message}");
    }
    assert_eq!(server.metrics().drops, 0, "no reader was closed");
    // At most one diff per batch (one per 100 ms) to each subscriber with
    // presence, besides each joiner's `subscribed`, snapshot and a resent
    // one. A diff per join to each would be JOINERS² / 2 (over a million).
    let batches = start.elapsed().as_millis() as u64 / 100 + 2;
    let subscribers = JOINERS as u64 + 1;
    let sent = server.metrics().messages_out - before;
    assert!(sent <= batches * subscribers + 3 * subscribers, "{sent} frames in {batches} batches");
}

#[tokio::test]
async fn a_topics_presence_lists_at_most_its_cap_and_says_so_to_the_rest() {
    let server = dev_server(|config| config.max_presence_members = 2).await;
    let subscribe = r#"{"type":"subscribe","topics":["room:1"],"presence":true}"#;
    let mut members = Vec::new();
    for user in ["alice", "bob"] {
        let mut client = Client::dev(&server, user).await;
        client.send(subscribe).await;
        assert_eq!(client.recv().await["type"], "subscribed");
        assert_eq!(client.recv().await["type"], "presence");
        members.push(client);
    }
    let mut carol = Client::dev(&server, "carol").await;
    carol.send(subscribe).await;
    assert_eq!(carol.recv().await["type"], "subscribed");
    let snapshot = carol.recv().await;
    assert_eq!(snapshot["members"], json!(["alice", "bob"]), "carol is not listed");
    let note = carol.recv().await;
    assert_eq!((note["type"].as_str(), note["code"].as_u64(), note.get("topic")), (Some("error"), Some(429), None));
    assert!(note["message"].as_str().unwrap().contains("at most 2 users"), "{note}");
    // The subscription stands: carol gets events and presence.
    let seq = server.publish("room:1", "UPDATED", "1", &json!({})).await.unwrap().seq;
    loop {
        let message = carol.recv().await;
        if message["seq"] == seq {
            break;
        }
        let named = message["joined"].as_array().unwrap().iter().chain(message["left"].as_array().unwrap());
        assert!(named.clone().all(|user| user != "carol"), "carol is never announced: {message}");
    }
}

#[tokio::test]
async fn idle_topics_are_pruned_and_numbering_goes_on_above_what_clients_may_hold() {
    let server = dev_server(|config| config.history_max_age = Duration::from_millis(200)).await;
    for n in 1..=3 {
        server.publish("doc:1", "UPDATED", &n.to_string(), &json!(n)).await.unwrap();
    }
    assert_eq!((server.metrics().topics, server.metrics().history_events), (1, 3));
    eventually("the idle topic to be pruned", || server.metrics().topics == 0).await;
    assert_eq!(server.metrics().history_events, 0);

    assert_eq!(server.publish("doc:1", "UPDATED", "4", &json!(4)).await.unwrap().seq, 4, "no seq given twice");
    let mut client = Client::dev(&server, "u-1").await;
    let resume = json!({"type":"subscribe","topics":["doc:1"],"since":{"doc:1":1},"epoch":server.epoch()});
    client.send(&resume.to_string()).await;
    let subscribed = client.recv().await;
    assert_eq!((subscribed["recovered"].as_bool(), subscribed["last_seq"]["doc:1"].as_u64()), (Some(false), Some(4)));
}

#[tokio::test]
async fn remembered_publish_ids_are_bounded_by_count() {
    let server = dev_server(|config| config.max_publish_ids = 64).await;
    let mut publisher = Client::dev(&server, "backend").await;
    let publish = |id: usize| {
        json!({"type":"publish","id":format!("p-{id}"),"topic":"doc:1","event":"UPDATED",
            "data":{"entity_id":"1","payload":null,"timestamp":"2026-11-25T10:00:00Z"}})
        .to_string()
    };
    for id in 0..500 {
        publisher.send(&publish(id)).await;
        assert_eq!(publisher.recv().await["type"], "ack");
    }
    let remembered = server.metrics().publish_ids;
    assert!((1..=64).contains(&remembered), "{remembered} ids remembered");
    publisher.send(&publish(499)).await;
    assert_eq!(publisher.recv().await["duplicate"], true, "the newest id is still remembered");
}

#[tokio::test]
async fn history_is_bounded_in_bytes_per_topic_and_in_all_and_what_it_dropped_resyncs() {
    let server = dev_server(|config| {
        config.history_max_bytes = 4_000;
        config.history_total_bytes = 10_000;
    })
    .await;
    let kilobyte = "x".repeat(1_000);
    // One topic: its oldest events go once it is over its 4,000 bytes.
    for n in 1..=10 {
        server.publish("doc:1", "UPDATED", &n.to_string(), &json!(kilobyte)).await.unwrap();
    }
    let held = server.metrics();
    assert!(held.history_bytes <= 4_000, "{} bytes kept for one topic", held.history_bytes);
    assert!((2..=3).contains(&held.history_events), "{} events of about 1.2 KB kept", held.history_events);

    // Many topics: together they stay under 10,000 bytes.
    for topic in 2..=20 {
        for n in 1..=3 {
            server.publish(&format!("doc:{topic}"), "UPDATED", &n.to_string(), &json!(kilobyte)).await.unwrap();
        }
        assert!(server.metrics().history_bytes <= 10_000, "{} bytes in all", server.metrics().history_bytes);
    }
    assert!(http(&server, "GET", "/metrics", &[], "").await.1.contains("\nherald_history_bytes "));

    // A client behind what was dropped is told to resync, never given a gap;
    // one within what is kept recovers.
    let mut behind = Client::dev(&server, "u-1").await;
    let resume = json!({"type":"subscribe","topics":["doc:1"],"since":{"doc:1":1},"epoch":server.epoch()});
    behind.send(&resume.to_string()).await;
    assert_eq!(behind.recv().await["recovered"], false);
    let mut recent = Client::dev(&server, "u-2").await;
    let resume = json!({"type":"subscribe","topics":["doc:20"],"since":{"doc:20":2},"epoch":server.epoch()});
    recent.send(&resume.to_string()).await;
    assert_eq!(recent.recv().await["seq"], 3, "the kept event is replayed");
    assert_eq!(recent.recv().await["recovered"], true);
}
