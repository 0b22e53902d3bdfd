//! Turning session values into plain JavaScript objects with the browser's
//! own JSON parser, so the wasm carries no JS-object serialization code.

use herald_core::{DisconnectReason, ResyncReason, Status, Transport};
use herald_protocol::{Event, Topic};
use js_sys::JSON;
use wasm_bindgen::JsValue;

fn parse(json: &str) -> JsValue {
    JSON::parse(json).expect("serde_json produced the JSON")
}

/// An event in the seed's shape: `{topic, event, data, trace_id?, seq?}`.
pub(crate) fn event(event: &Event) -> JsValue {
    parse(&event.encode())
}

pub(crate) fn resync(topic: &Topic, reason: ResyncReason) -> JsValue {
    let reason = match reason {
        ResyncReason::NotRecovered => "not_recovered",
        ResyncReason::NoRecovery => "no_recovery",
        ResyncReason::Wildcard => "wildcard",
        ResyncReason::Gap { .. } => "gap",
        ResyncReason::Lagged => "lagged",
        _ => "unknown",
    };
    parse(&serde_json::json!({"type": "resync", "topic": topic.as_str(), "reason": reason}).to_string())
}

/// `{state: 'connecting' | 'connected' | 'reconnecting' | 'disconnected', ...}`.
pub(crate) fn status(status: &Status) -> JsValue {
    let value = match status {
        Status::Connecting => serde_json::json!({"state": "connecting"}),
        Status::Connected { transport } => {
            let transport = if *transport == Transport::ServerSentEvents { "sse" } else { "websocket" };
            serde_json::json!({"state": "connected", "transport": transport})
        }
        Status::Reconnecting { attempt, next_in } => {
            serde_json::json!({"state": "reconnecting", "attempt": attempt, "nextInMs": next_in.as_millis() as u64})
        }
        Status::Disconnected { reason } => {
            let kind = match reason {
                DisconnectReason::Closed => "closed",
                DisconnectReason::Unauthorized { .. } => "unauthorized",
                DisconnectReason::Forbidden { .. } => "forbidden",
                DisconnectReason::RetriesExhausted { .. } => "retries_exhausted",
                _ => "unknown",
            };
            serde_json::json!({"state": "disconnected", "reason": kind, "message": reason.to_string()})
        }
        _ => serde_json::json!({"state": "unknown"}),
    };
    parse(&value.to_string())
}

/// `{type: 'refused', topic, code, message}`: the server does not allow the topic.
pub(crate) fn refused(topic: &str, error: &herald_protocol::ErrorMessage) -> JsValue {
    parse(
        &serde_json::json!({"type": "refused", "topic": topic, "code": error.code, "message": error.message})
            .to_string(),
    )
}

pub(crate) fn error(message: &str) -> JsValue {
    js_sys::Error::new(message).into()
}
