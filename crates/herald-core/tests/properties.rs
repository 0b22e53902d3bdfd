//! Random sequences of inputs never panic the session and keep its invariants.

mod harness;

use std::time::Duration;

use harness::{Harness, event};
use herald_core::{
    FallbackConfig, PublishOptions, SessionEvent, SubscribeOptions,
    protocol::{EventData, EventKind, Payload},
};
use proptest::prelude::*;
use serde_json::json;

#[derive(Debug, Clone)]
enum Step {
    Advance(u64),
    Open,
    Close(Option<u16>, bool),
    Event(u8, u64),
    Subscribed(u8, Option<bool>, u64),
    Connected(u8),
    Ack(u8),
    Garbage(String),
    Subscribe(u8),
    Unsubscribe(u8),
    Publish,
    Token(bool),
    OpenProbe,
    FailProbe,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        (0u64..50_000).prop_map(Step::Advance),
        Just(Step::Open),
        (
            proptest::option::of(prop::sample::select(vec![1000u16, 1001, 1006, 1009, 4001, 4003, 4008, 4009])),
            any::<bool>()
        )
            .prop_map(|(c, hint)| Step::Close(c, hint)),
        (0u8..4, 0u64..20).prop_map(|(t, s)| Step::Event(t, s)),
        (0u8..4, proptest::option::of(any::<bool>()), 0u64..20).prop_map(|(t, r, s)| Step::Subscribed(t, r, s)),
        (0u8..3).prop_map(Step::Connected),
        (0u8..8).prop_map(Step::Ack),
        ".{0,40}".prop_map(Step::Garbage),
        (0u8..4).prop_map(Step::Subscribe),
        (0u8..4).prop_map(Step::Unsubscribe),
        Just(Step::Publish),
        any::<bool>().prop_map(Step::Token),
        Just(Step::OpenProbe),
        Just(Step::FailProbe),
    ]
}

fn topic(n: u8) -> String {
    if n == 3 { "t:*".into() } else { format!("t:{n}") }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]
    #[test]
    fn any_input_sequence_keeps_the_invariants(steps in prop::collection::vec(step(), 1..80), fallback: bool) {
        let mut config = Harness::config("ws://127.0.0.1:9/ws");
        config.max_pending_publishes = 5;
        config.backoff.max_attempts = Some(30);
        if fallback {
            let mut fallback = FallbackConfig::default();
            fallback.after_failures = 1;
            fallback.upgrade_after = Duration::from_secs(5);
            config.fallback = Some(fallback);
        }
        let mut h = Harness::new(config);
        h.token = None;
        let mut published = Vec::new();
        for step in steps {
            match step {
                Step::Advance(ms) => h.advance(Duration::from_millis(ms)),
                Step::Open => if h.current.is_some() { h.open() },
                Step::Close(code, hint) => if h.current.is_some() {
                    h.server_close(code, if hint { "bye; retry_after_ms=700" } else { "bye" })
                },
                Step::Event(t, seq) => if h.current.is_some() { h.recv_json(event(&format!("t:{t}"), seq)) },
                Step::Subscribed(t, recovered, seq) => if h.current.is_some() {
                    h.recv_json(json!({"type": "subscribed", "topics": [topic(t)], "recovered": recovered, "last_seq": {format!("t:{}", t % 3): seq}}))
                },
                Step::Connected(e) => if h.current.is_some() {
                    h.recv_json(json!({"type": "connected", "epoch": format!("E{e}"), "expires_in": 60}))
                },
                Step::Ack(n) => if let (Some(_), Some(id)) = (h.current, published.get(n as usize)) {
                    h.recv_json(json!({"type": "ack", "id": id}))
                },
                Step::Garbage(text) => if h.current.is_some() { h.recv(&text) },
                Step::Subscribe(t) => { let _ = h.session.subscribe(h.now, topic(t).parse().unwrap(), if t == 1 { SubscribeOptions::default().presence() } else { SubscribeOptions::default() }); h.drain(); }
                Step::Unsubscribe(t) => { h.session.unsubscribe(h.now, &topic(t)); h.drain(); }
                Step::Publish => {
                    let data = EventData { entity_id: "1".into(), payload: Payload::default(), user_id: None, tenant_id: None, timestamp: "2026-11-25T10:00:00Z".into() };
                    if let Ok(id) = h.session.publish(h.now, "t:0".parse().unwrap(), EventKind::Added, data, PublishOptions::default()) {
                        published.push(id.0);
                    }
                    h.drain();
                }
                Step::Token(ok) => { h.session.handle_token(h.now, if ok { Ok("t".into()) } else { Err("no".into()) }); h.drain(); }
                Step::OpenProbe => if h.probe.is_some() { h.open_probe() },
                Step::FailProbe => if h.probe.is_some() { h.fail_probe() },
            }
            prop_assert!(h.session.pending_publishes() <= 5);
            prop_assert!(h.session.is_stopped() || h.session.poll_timeout().is_some(), "a live session always has a timer");
        }
        let mut acked = std::collections::BTreeSet::new();
        for e in &h.events {
            if let SessionEvent::PublishAcked { id, .. } = e {
                prop_assert!(acked.insert(id.clone()), "acked twice: {id}");
            }
        }
    }
}
