//! JavaScript plumbing: session values as plain JavaScript objects, built
//! with the browser's own object and JSON functions so that the wasm carries
//! no serialization code; errors; and waiting for a Promise.

use herald_core::{DisconnectReason, PublishId, ResyncReason, Status, Transport};
use herald_protocol::{ErrorCode, ErrorMessage, Event, Presence, PresenceDiff, Topic};
use js_sys::{Array, JSON, Object, Promise, Reflect};
use wasm_bindgen::{JsCast, prelude::*};

/// Every browser event handler has this one type, so that the wasm and its
/// glue carry one closure shim for all of them.
pub(crate) type Handler = Closure<dyn FnMut(web_sys::Event)>;

/// A plain object, field by field.
pub(crate) struct Fields(Object);

impl Fields {
    pub(crate) fn new() -> Self {
        Self(Object::new())
    }

    pub(crate) fn set(self, key: &str, value: impl Into<JsValue>) -> Self {
        // Setting a property on a plain object cannot fail.
        let _ = Reflect::set(&self.0, &JsValue::from_str(key), &value.into());
        self
    }

    pub(crate) fn done(self) -> JsValue {
        self.0.into()
    }
}

fn strings(items: &[String]) -> Array {
    items.iter().map(|s| JsValue::from_str(s)).collect()
}

/// An event in the seed's shape: `{topic, event, data, trace_id?, seq?}`.
pub(crate) fn event(event: &Event) -> JsValue {
    JSON::parse(&event.encode()).unwrap_or(JsValue::NULL)
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
    Fields::new().set("type", "resync").set("topic", topic.as_str()).set("reason", reason).done()
}

pub(crate) fn presence(presence: &Presence) -> JsValue {
    Fields::new()
        .set("type", "presence")
        .set("topic", presence.topic.as_str())
        .set("members", strings(&presence.members))
        .done()
}

pub(crate) fn presence_diff(diff: &PresenceDiff) -> JsValue {
    Fields::new()
        .set("type", "presence_diff")
        .set("topic", diff.topic.as_str())
        .set("joined", strings(&diff.joined))
        .set("left", strings(&diff.left))
        .done()
}

/// `{state: 'connecting' | 'connected' | 'reconnecting' | 'disconnected', ...}`.
pub(crate) fn status(status: &Status) -> JsValue {
    match status {
        Status::Connecting => Fields::new().set("state", "connecting"),
        Status::Connected { transport } => {
            let transport = if *transport == Transport::ServerSentEvents { "sse" } else { "websocket" };
            Fields::new().set("state", "connected").set("transport", transport)
        }
        Status::Reconnecting { attempt, next_in } => Fields::new()
            .set("state", "reconnecting")
            .set("attempt", *attempt)
            .set("nextInMs", next_in.as_millis() as f64),
        Status::Disconnected { reason } => {
            let kind = match reason {
                DisconnectReason::Closed => "closed",
                DisconnectReason::Unauthorized { .. } => "unauthorized",
                DisconnectReason::Forbidden { .. } => "forbidden",
                DisconnectReason::RetriesExhausted { .. } => "retries_exhausted",
                _ => "unknown",
            };
            Fields::new().set("state", "disconnected").set("reason", kind).set("message", reason.to_string())
        }
        _ => Fields::new().set("state", "unknown"),
    }
    .done()
}

/// `{type: 'refused', topic, code, message}`: the server does not allow the topic.
pub(crate) fn refused(topic: &str, error: &ErrorMessage) -> JsValue {
    let code = match &error.code {
        ErrorCode::Number(n) => JsValue::from(*n),
        ErrorCode::Name(name) => JsValue::from_str(name),
    };
    Fields::new().set("type", "refused").set("topic", topic).set("code", code).set("message", &error.message).done()
}

/// `{id, seq, duplicate}`: what a publish's Promise resolves with.
pub(crate) fn ack(id: &PublishId, seq: Option<u64>, duplicate: bool) -> JsValue {
    let seq = seq.map_or(JsValue::UNDEFINED, |seq| JsValue::from(seq as f64));
    Fields::new().set("id", &id.0).set("seq", seq).set("duplicate", duplicate).done()
}

pub(crate) fn error(message: &str) -> JsValue {
    js_sys::Error::new(message).into()
}

/// What a thrown or rejected value says: an `Error`'s message, or a string.
pub(crate) fn describe(error: &JsValue) -> String {
    error
        .dyn_ref::<js_sys::Error>()
        .map(|e| String::from(e.message()))
        .or_else(|| error.as_string())
        .unwrap_or_else(|| "unknown error".into())
}

#[wasm_bindgen]
extern "C" {
    /// A Promise, for `then` with a plain function (js-sys's takes a `Closure`
    /// that must be kept alive and freed by hand).
    type Thenable;
    #[wasm_bindgen(method)]
    fn then(this: &Thenable, on_fulfilled: &JsValue);
}

/// Calls `done` once `value` (a Promise, or a value as `await` takes it)
/// settles: `Ok` with what it resolved to, `Err` with why it was rejected.
/// Callbacks rather than a future: the wasm then carries no executor.
pub(crate) fn settled(value: &JsValue, done: Box<dyn FnOnce(Result<JsValue, JsValue>)>) {
    // `allSettled` always resolves, so the one callback always runs, and is freed then.
    let callback = Closure::once_into_js(move |results: JsValue| {
        let outcome = Reflect::get_u32(&results, 0).unwrap_or_default();
        let field = |name: &str| Reflect::get(&outcome, &JsValue::from_str(name)).unwrap_or_default();
        done(if field("status").as_string().as_deref() == Some("fulfilled") {
            Ok(field("value"))
        } else {
            Err(field("reason"))
        });
    });
    Promise::all_settled(&Array::of1(value)).unchecked_into::<Thenable>().then(&callback);
}
