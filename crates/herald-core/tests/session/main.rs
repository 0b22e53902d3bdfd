//! Every rule of the session, driven with a fake clock.

#[path = "../harness/mod.rs"]
mod harness;

mod auth;
mod backoff;
mod close_codes;
mod fallback;
mod heartbeat;
mod lifecycle;
mod publish;
mod recovery;
mod signals;

use std::time::Duration;

use harness::{Harness, event};
use herald_core::{
    AuthMode, DisconnectReason, FallbackConfig, PublishError, PublishFailure, PublishOptions, ResyncReason,
    SessionConfig, SessionEvent, Status, SubscribeError, SubscribeOptions, TokenReason, Transport,
    protocol::{EventData, EventKind, Payload},
};
use serde_json::json;

const URL: &str = "ws://127.0.0.1:9/ws";
const SECOND: Duration = Duration::from_secs(1);
const CONNECTED: Status = Status::Connected { transport: Transport::WebSocket };
const ON_STREAM: Status = Status::Connected { transport: Transport::ServerSentEvents };

fn config() -> SessionConfig {
    Harness::config(URL)
}

fn no_jitter() -> SessionConfig {
    let mut config = config();
    config.backoff.jitter = 0.0;
    config
}

fn data(n: u32) -> EventData {
    EventData {
        entity_id: format!("e{n}"),
        payload: Payload::from_value(&json!({ "n": n })).unwrap(),
        user_id: None,
        tenant_id: None,
        timestamp: "2026-11-25T10:00:00Z".into(),
    }
}

fn publish(h: &mut Harness, n: u32) -> herald_core::PublishId {
    let id = h
        .session
        .publish(h.now, "gift-list:1".parse().unwrap(), EventKind::Updated, data(n), PublishOptions::default())
        .unwrap();
    h.drain();
    id
}

fn resyncs(events: &[SessionEvent]) -> Vec<(String, ResyncReason)> {
    events
        .iter()
        .filter_map(|e| match e {
            SessionEvent::Resync { topic, reason } => Some((topic.to_string(), *reason)),
            _ => None,
        })
        .collect()
}

fn delivered_seqs(events: &[SessionEvent]) -> Vec<u64> {
    events
        .iter()
        .filter_map(|e| match e {
            SessionEvent::Event(e) => e.seq,
            _ => None,
        })
        .collect()
}
