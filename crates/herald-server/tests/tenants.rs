//! Each tenant is a namespace of its own: `seq`, history, subscribers and
//! presence of a topic are per tenant, so a client sees a gap-free `seq` of
//! its own tenant's events and never another tenant's, over every transport.

use herald_test_support::*;
use serde_json::{Value, json};

async fn jwt_server() -> ServerHandle {
    Server::builder().secret(SECRET).bind("127.0.0.1:0").await.expect("server starts")
}

fn tenant_token(user: &str, tenant: &str) -> String {
    mint_token(SECRET, &Claims::new(user, 600).tenant(tenant)).unwrap()
}

/// `POST /api/publish` with a service token (no tenant) naming `tenant`; returns the answered seq.
async fn publish_as_service(server: &ServerHandle, tenant: &str, marker: &str) -> u64 {
    let service = mint_token(SECRET, &Claims::new("backend", 600).publish(["doc:*"])).unwrap();
    let body = json!({"topic":"doc:1","event":"UPDATED","data":{"entity_id":"1","payload":marker,"tenant_id":tenant}});
    let (status, answer) = post_publish(server, &service, &body.to_string()).await;
    assert_eq!(status, 200, "{answer}");
    serde_json::from_str::<Value>(&answer).unwrap()["seq"].as_u64().expect("a seq")
}

/// Reads events until the one whose payload is `last`; returns (seq, payload) of each.
async fn events_until_last(client: &mut Client) -> Vec<(u64, String)> {
    let mut events = Vec::new();
    loop {
        let event = client.recv().await;
        let payload = event["data"]["payload"].as_str().expect("a string payload").to_owned();
        events.push((event["seq"].as_u64().expect("a seq"), payload.clone()));
        if payload == "last" {
            return events;
        }
    }
}

fn seqs(events: &[(u64, String)]) -> Vec<u64> {
    events.iter().map(|(seq, _)| *seq).collect()
}

#[tokio::test]
async fn each_tenant_sees_a_gap_free_seq_of_its_own_events_and_recovers_by_it() {
    const ROUNDS: u64 = 5;
    let server = jwt_server().await;
    let mut acme = Client::authed(&server, &tenant_token("a", "acme")).await;
    let mut globex = Client::authed(&server, &tenant_token("g", "globex")).await;
    let mut untenanted = Client::authed(&server, &token("n")).await;
    acme.subscribe(&["doc:1"]).await;
    globex.subscribe(&["doc:*"]).await;
    untenanted.subscribe(&["doc:1"]).await;
    // A tenant-bound publisher is forced into its own tenant whatever it names.
    let writer = mint_token(SECRET, &Claims::new("a-writer", 600).tenant("acme").publish(["doc:*"])).unwrap();
    let mut writer = Client::authed(&server, &writer).await;

    let mut acks = Vec::new();
    for round in 1..=ROUNDS {
        acks.push(publish_as_service(&server, "globex", "globex").await);
        let publish = json!({"type":"publish","id":format!("p-{round}"),"topic":"doc:1","event":"UPDATED",
            "data":{"entity_id":"1","payload":"acme","tenant_id":"globex","timestamp":"2026-01-01T00:00:00Z"}});
        writer.send(&publish.to_string()).await;
        acks.push(writer.recv().await["seq"].as_u64().expect("an ack with a seq"));
        acks.push(server.publish("doc:1", "UPDATED", "1", &json!("untenanted")).await.unwrap().seq);
        acks.push(publish_as_service(&server, "acme", "acme").await);
    }
    // Answered seqs count per namespace: globex, acme (writer), none, acme (service).
    let expected_acks: Vec<u64> = (1..=ROUNDS).flat_map(|round| [round, 2 * round - 1, round, 2 * round]).collect();
    assert_eq!(acks, expected_acks);
    publish_as_service(&server, "acme", "last").await;
    publish_as_service(&server, "globex", "last").await;
    server.publish("doc:1", "UPDATED", "1", &json!("last")).await.unwrap();

    for (client, tenant, count) in
        [(&mut acme, "acme", 2 * ROUNDS), (&mut globex, "globex", ROUNDS), (&mut untenanted, "untenanted", ROUNDS)]
    {
        let events = events_until_last(client).await;
        assert_eq!(seqs(&events), (1..=count + 1).collect::<Vec<_>>(), "{tenant}: {events:?}");
        assert!(events[..events.len() - 1].iter().all(|(_, marker)| marker == tenant), "{tenant}: {events:?}");
    }

    // Recovery by `since` replays the gap of the client's own tenant.
    let epoch = server.epoch();
    for (token, since, last) in
        [(tenant_token("a", "acme"), 3, 2 * ROUNDS + 1), (tenant_token("g", "globex"), 1, ROUNDS + 1)]
    {
        let mut client = Client::authed(&server, &token).await;
        let body = json!({"type":"subscribe","topics":["doc:1"],"since":{"doc:1":since},"epoch":epoch});
        client.send(&body.to_string()).await;
        let mut replayed = Vec::new();
        for _ in since + 1..=last {
            replayed.push(client.recv().await["seq"].as_u64().unwrap());
        }
        assert_eq!(replayed, (since + 1..=last).collect::<Vec<_>>());
        let subscribed = client.recv().await;
        assert_eq!(subscribed["recovered"], true, "{subscribed}");
        assert_eq!(subscribed["last_seq"]["doc:1"], last);
    }
}

#[tokio::test]
async fn long_poll_and_sse_read_the_namespace_of_their_token() {
    let server = jwt_server().await;
    let epoch = server.epoch();
    publish_as_service(&server, "acme", "acme").await;
    // Over a WebSocket too, a token without a tenant publishes into the tenant the event names.
    let service = mint_token(SECRET, &Claims::new("backend", 600).publish(["doc:*"])).unwrap();
    let mut service = Client::authed(&server, &service).await;
    let publish = json!({"type":"publish","id":"p-1","topic":"doc:1","event":"UPDATED",
        "data":{"entity_id":"1","payload":"globex","tenant_id":"globex","timestamp":"2026-01-01T00:00:00Z"}});
    service.send(&publish.to_string()).await;
    assert_eq!(service.recv().await["seq"], 1, "the first event of globex");
    publish_as_service(&server, "acme", "acme").await;
    server.publish("doc:1", "UPDATED", "1", &json!("untenanted")).await.unwrap();

    let globex = tenant_token("g", "globex");
    let path = format!("/api/poll?topics=doc:1&since=0&epoch={epoch}&token={globex}");
    let (status, body) = http(&server, "GET", &path, &[], "").await;
    assert_eq!(status, 200, "{body}");
    let answer: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(answer["recovered"], true, "{answer}");
    assert_eq!(answer["last_seq"]["doc:1"], 1);
    let events = answer["events"].as_array().unwrap();
    assert_eq!(events.len(), 1, "{answer}");
    assert_eq!((events[0]["seq"].as_u64(), events[0]["data"]["payload"].as_str()), (Some(1), Some("globex")));

    let acme = tenant_token("a", "acme");
    let path = format!("/sse?topics=doc:1&epoch={epoch}&token={acme}");
    let (status, mut sse) = Sse::open(&server, &path, &[("Last-Event-ID", "1")]).await;
    assert_eq!(status, 200);
    assert_eq!(field(&sse.next().await, "event"), Some("herald.connected"));
    let replayed = sse.next().await;
    assert_eq!(field(&replayed, "id"), Some("2"), "{replayed:?}");
    let data: Value = serde_json::from_str(field(&replayed, "data").unwrap()).unwrap();
    assert_eq!(data["data"]["payload"], "acme");
    let subscribed: Value = serde_json::from_str(field(&sse.next().await, "data").unwrap()).unwrap();
    assert_eq!((subscribed["recovered"].as_bool(), &subscribed["last_seq"]["doc:1"]), (Some(true), &json!(2)));
    publish_as_service(&server, "globex", "globex").await;
    publish_as_service(&server, "acme", "acme").await;
    let live = sse.next().await;
    assert_eq!(field(&live, "id"), Some("3"), "the globex event never came: {live:?}");
}

#[tokio::test]
async fn presence_lists_and_announces_only_the_own_tenants_members() {
    let server = jwt_server().await;
    let subscribe = r#"{"type":"subscribe","topics":["doc:7"],"presence":true}"#;
    let mut alice = Client::authed(&server, &tenant_token("alice", "acme")).await;
    alice.send(subscribe).await;
    assert_eq!(alice.recv().await["type"], "subscribed");
    assert_eq!(alice.recv().await["members"], json!(["alice"]));
    let mut gina = Client::authed(&server, &tenant_token("gina", "globex")).await;
    gina.send(subscribe).await;
    assert_eq!(gina.recv().await["type"], "subscribed");
    assert_eq!(gina.recv().await["members"], json!(["gina"]));
    let mut bob = Client::authed(&server, &tenant_token("bob", "acme")).await;
    bob.send(subscribe).await;
    assert_eq!(bob.recv().await["type"], "subscribed");
    assert_eq!(bob.recv().await["members"], json!(["alice", "bob"]));
    let diff = alice.presence_until("doc:7", "joined", "bob").await;
    assert!(diff["joined"].as_array().unwrap().iter().all(|u| u == "alice" || u == "bob"), "{diff}");
    // Up to her pong (sent after bob's join was announced), gina hears of
    // nobody but herself.
    gina.send(r#"{"type":"ping"}"#).await;
    loop {
        let message = gina.recv().await;
        if message["type"] == "pong" {
            break;
        }
        assert_eq!((message["joined"].clone(), message["left"].clone()), (json!(["gina"]), json!([])), "{message}");
    }
}
