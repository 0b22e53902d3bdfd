//! When a subscription becomes live, what position it starts from, what a
//! server that never confirms gets, and the publishes that need the
//! server's word (ephemeral, conditional): on a fake clock.

mod harness;

use std::time::Duration;

use harness::Harness;
use herald_core::{
    PublishError, PublishFailure, PublishOptions, ResyncReason, SessionConfig, SessionEvent, SubscribeOptions,
    protocol::{EventData, EventKind, Payload, Position},
};
use serde_json::json;

const URL: &str = "ws://herald.test/ws";
const SECOND: Duration = Duration::from_secs(1);

fn config() -> SessionConfig {
    let mut config = Harness::config(URL);
    config.backoff.jitter = 0.0;
    config
}

/// A Herald server's greeting, announcing `features`.
fn connected(epoch: &str, features: &[&str]) -> serde_json::Value {
    json!({"type":"connected","user_id":"u","epoch":epoch,"features":features})
}

fn event(topic: &str, seq: u64) -> serde_json::Value {
    json!({"topic":topic,"event":"UPDATED","data":{"entity_id":"1","payload":null,"timestamp":"2026-11-25T10:00:00Z"},"seq":seq})
}

fn data() -> EventData {
    EventData {
        entity_id: "1".into(),
        payload: Payload::from_value(&json!({"typing": true})).unwrap(),
        user_id: None,
        tenant_id: None,
        timestamp: "2026-11-25T10:00:00Z".into(),
    }
}

/// What the application heard, in order: `live`, `resync`, `unconfirmed`,
/// `event N`, `acked`, `failed`.
fn heard(events: &[SessionEvent]) -> Vec<String> {
    events
        .iter()
        .filter_map(|event| match event {
            SessionEvent::Live { topic, position } => {
                Some(format!("live {topic} {}", position.as_ref().map_or("-".into(), ToString::to_string)))
            }
            SessionEvent::Resync { topic, reason } => Some(format!("resync {topic} {reason:?}")),
            SessionEvent::Unconfirmed { topic } => Some(format!("unconfirmed {topic}")),
            SessionEvent::Event(event) => Some(format!("event {} {}", event.topic, event.seq.unwrap_or(0))),
            SessionEvent::PublishAcked { position, .. } => {
                Some(format!("acked {}", position.as_ref().map_or("-".into(), ToString::to_string)))
            }
            SessionEvent::PublishFailed { error, .. } => Some(format!("failed {error}")),
            _ => None,
        })
        .collect()
}

/// A session subscribed to `topic` (with `options`), connected to a Herald
/// server of epoch `e1` announcing `features`.
fn greeted(topic: &str, options: SubscribeOptions, features: &[&str]) -> Harness {
    let mut h = Harness::new(config());
    h.session.subscribe(h.now, topic.parse().unwrap(), options).unwrap();
    h.connect();
    h.recv_json(connected("e1", features));
    h
}

#[test]
fn a_subscription_is_live_with_its_position_once_the_server_confirms_it() {
    let mut h = greeted("doc:1", SubscribeOptions::default(), &["recovery"]);
    assert!(heard(&h.take_events()).is_empty(), "nothing is live before the server says so");
    h.recv_json(json!({"type":"subscribed","topics":["doc:1"],"last_seq":{"doc:1":41}}));
    assert_eq!(heard(&h.take_events()), ["live doc:1 e1:41"]);
    assert_eq!(h.session.position_of("doc:1"), Some(Position::new("e1", 41)));
}

#[test]
fn a_first_subscription_from_a_rest_position_replays_what_came_after_it() {
    let from = Position::new("e0", 41);
    let mut h = greeted("doc:1", SubscribeOptions::default().from(from), &["recovery"]);
    let subscribe = h.take_sent().into_iter().find(|m| m["type"] == "subscribe").unwrap();
    assert_eq!((subscribe["since"].clone(), subscribe["epoch"].clone()), (json!({"doc:1": 41}), json!("e0")));
    h.recv_json(event("doc:1", 42));
    h.recv_json(json!({"type":"subscribed","topics":["doc:1"],"recovered":true,"last_seq":{"doc:1":42}}));
    assert_eq!(heard(&h.take_events()), ["event doc:1 42", "live doc:1 e1:42"], "live: caught up to 42");
}

#[test]
fn a_rest_position_the_server_cannot_replay_from_is_a_resync_before_live() {
    let mut h = greeted("doc:1", SubscribeOptions::default().from(Position::new("old-epoch", 41)), &["recovery"]);
    h.recv_json(json!({"type":"subscribed","topics":["doc:1"],"recovered":false,"last_seq":{"doc:1":7}}));
    assert_eq!(heard(&h.take_events()), ["resync doc:1 NotRecovered", "live doc:1 e1:7"]);
}

#[test]
fn after_a_reconnect_live_comes_again_when_recovered_and_after_a_resync_when_not() {
    let mut h = greeted("doc:1", SubscribeOptions::default(), &["recovery"]);
    h.recv_json(json!({"type":"subscribed","topics":["doc:1"],"last_seq":{"doc:1":3}}));
    h.take_events();
    h.server_close(Some(1006), "");
    h.connect();
    h.recv_json(connected("e1", &["recovery"]));
    h.recv_json(event("doc:1", 4));
    h.recv_json(json!({"type":"subscribed","topics":["doc:1"],"recovered":true,"last_seq":{"doc:1":4}}));
    assert_eq!(heard(&h.take_events()), ["event doc:1 4", "live doc:1 e1:4"]);

    h.server_close(Some(1006), "");
    h.connect();
    h.recv_json(connected("e1", &["recovery"]));
    h.recv_json(json!({"type":"subscribed","topics":["doc:1"],"recovered":false,"last_seq":{"doc:1":90}}));
    assert_eq!(heard(&h.take_events()), ["resync doc:1 NotRecovered", "live doc:1 e1:90"]);
}

#[test]
fn a_server_that_never_confirms_leaves_subscriptions_unconfirmed_and_never_live() {
    // It speaks first, with something that is not `connected`.
    let mut h = Harness::new(config());
    h.session.subscribe(h.now, "doc:1".parse().unwrap(), SubscribeOptions::default()).unwrap();
    h.connect();
    h.recv_json(json!({"type":"notification","message":"welcome"}));
    assert_eq!(heard(&h.take_events()), ["unconfirmed doc:1"]);
    // A subscription made now is unconfirmed as soon as it is sent.
    h.session.subscribe(h.now, "doc:2".parse().unwrap(), SubscribeOptions::default()).unwrap();
    h.drain();
    assert_eq!(heard(&h.take_events()), ["unconfirmed doc:2"]);

    // Or it says nothing at all.
    let mut h = Harness::new(config());
    h.session.subscribe(h.now, "doc:1".parse().unwrap(), SubscribeOptions::default()).unwrap();
    h.connect();
    h.advance(SECOND * 2);
    assert!(heard(&h.take_events()).is_empty(), "still waiting for a greeting");
    h.advance(SECOND);
    assert_eq!(heard(&h.take_events()), ["unconfirmed doc:1"]);

    // Or it greets, but announces no recovery.
    let mut h = Harness::new(config());
    h.session.subscribe(h.now, "doc:1".parse().unwrap(), SubscribeOptions::default()).unwrap();
    h.connect();
    h.recv_json(json!({"type":"connected","userId":"u"}));
    assert_eq!(heard(&h.take_events()), ["unconfirmed doc:1"]);
}

#[test]
fn an_offline_subscription_waits_for_the_connection() {
    let mut h = Harness::new(config());
    h.session.subscribe(h.now, "doc:1".parse().unwrap(), SubscribeOptions::default()).unwrap();
    h.advance(SECOND * 30);
    assert!(heard(&h.take_events()).is_empty(), "no connection, no answer: the caller's timeout decides");
}

#[test]
fn acks_give_the_events_position() {
    let mut h = greeted("doc:1", SubscribeOptions::default(), &["recovery"]);
    h.session.publish(h.now, "doc:1".parse().unwrap(), EventKind::Updated, data(), PublishOptions::default()).unwrap();
    h.drain();
    let id = h.take_sent().into_iter().find(|m| m["type"] == "publish").unwrap()["id"].clone();
    h.recv_json(json!({"type":"ack","id":id,"seq":5,"epoch":"e1"}));
    assert_eq!(heard(&h.take_events()), ["acked e1:5"]);
}

#[test]
fn ephemeral_publishes_need_a_connection_whose_server_announces_them_and_are_never_sent_again() {
    let publish = |h: &mut Harness| {
        let options = PublishOptions::default().ephemeral();
        let published = h.session.publish(h.now, "doc:1".parse().unwrap(), EventKind::from("TYPING"), data(), options);
        h.drain();
        published
    };
    let mut h = Harness::new(config());
    assert!(matches!(publish(&mut h), Err(PublishError::Offline)), "stale by the time it would be sent");
    h.connect();
    h.recv_json(connected("e1", &["recovery"]));
    assert!(matches!(publish(&mut h), Err(PublishError::Unsupported { feature: "ephemeral" })));

    let mut h = greeted("doc:1", SubscribeOptions::default(), &["recovery", "ephemeral"]);
    h.take_sent();
    publish(&mut h).unwrap();
    let sent = h.take_sent();
    assert_eq!(sent[0]["ephemeral"], true, "{sent:?}");
    h.server_close(Some(1006), "");
    assert_eq!(
        heard(&h.take_events()),
        ["failed the connection was lost before the ack; ephemeral events are not sent again"]
    );
    h.connect();
    assert!(h.take_sent().iter().all(|m| m["type"] != "publish"), "not sent again");
}

#[test]
fn conditional_publishes_go_only_to_servers_that_announce_them_and_a_conflict_names_the_current_seq() {
    let publish = |h: &mut Harness| {
        let options = PublishOptions::default().if_seq(7);
        let id = h.session.publish(h.now, "doc:1".parse().unwrap(), EventKind::Updated, data(), options).unwrap();
        h.drain();
        id
    };
    // Made offline, it waits for the server's greeting, not just the socket.
    let mut h = Harness::new(config());
    publish(&mut h);
    h.connect();
    assert!(h.take_sent().iter().all(|m| m["type"] != "publish"), "not before the server said it takes if_seq");
    h.recv_json(connected("e1", &["recovery", "if_seq"]));
    let sent: Vec<_> = h.take_sent().into_iter().filter(|m| m["type"] == "publish").collect();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0]["if_seq"], 7);
    h.recv_json(json!({"type":"error","code":409,"message":"conflict","id":sent[0]["id"],"seq":9}));
    assert!(
        h.take_events()
            .iter()
            .any(|e| matches!(e, SessionEvent::PublishFailed { error: PublishFailure::Conflict { current: 9 }, .. }))
    );

    // A server that does not announce it never gets it.
    let mut h = Harness::new(config());
    publish(&mut h);
    h.connect();
    h.recv_json(connected("e1", &["recovery"]));
    assert!(h.take_sent().iter().all(|m| m["type"] != "publish"));
    assert_eq!(heard(&h.take_events()), ["failed the server does not support if_seq publishes; it was not sent"]);
    let options = PublishOptions::default().if_seq(7);
    let refused = h.session.publish(h.now, "doc:1".parse().unwrap(), EventKind::Updated, data(), options);
    assert!(matches!(refused, Err(PublishError::Unsupported { feature: "if_seq" })), "refused at once now");
}

#[test]
fn a_wildcard_is_live_without_a_position_and_resyncs_after_a_reconnect() {
    let mut h = greeted("doc:*", SubscribeOptions::default(), &["recovery"]);
    h.recv_json(json!({"type":"subscribed","topics":["doc:*"]}));
    assert_eq!(heard(&h.take_events()), ["live doc:* -"]);
    h.server_close(Some(1006), "");
    h.connect();
    h.recv_json(connected("e1", &["recovery"]));
    h.recv_json(json!({"type":"subscribed","topics":["doc:*"],"recovered":false}));
    let events = h.take_events();
    assert!(events.iter().any(|e| matches!(e, SessionEvent::Resync { reason: ResyncReason::Wildcard, .. })));
    assert_eq!(heard(&events).last().map(String::as_str), Some("live doc:* -"));
}
