//! JavaScript plumbing: session values as plain JavaScript objects, built
//! with the browser's own object and JSON functions so that the wasm carries
//! no serialization code; errors; and waiting for a Promise.

use herald_core::{DisconnectReason, PublishError, PublishFailure, PublishId, ResyncReason, Status, Transport};
use herald_protocol::{ErrorCode, ErrorMessage, Event, Position, Presence, PresenceDiff, Topic};
use js_sys::{Array, Object, Promise, Reflect};
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
        self.put(key, &value.into())
    }

    /// Not generic, so that the wasm carries it once.
    fn put(self, key: &str, value: &JsValue) -> Self {
        // Setting a property on a plain object cannot fail.
        let _ = Reflect::set(&self.0, &JsValue::from_str(key), value);
        self
    }

    /// Sets `key` if there is a value: an absent optional field stays absent.
    fn optional(self, key: &str, value: Option<&str>) -> Self {
        match value {
            Some(value) => self.put(key, &JsValue::from_str(value)),
            None => self,
        }
    }

    pub(crate) fn done(self) -> JsValue {
        self.0.into()
    }

    /// Sets `key` on an object that is not a plain one (a function, an `Error`).
    pub(crate) fn assign(target: &JsValue, key: &str, value: &JsValue) {
        // Setting a property on an extensible object cannot fail.
        let _ = Reflect::set(target, &JsValue::from_str(key), value);
    }
}

fn strings(items: &[String]) -> Array {
    items.iter().map(|s| JsValue::from_str(s)).collect()
}

/// An event in the seed's shape: `{topic, event, data, trace_id?, seq?}`,
/// built field by field around the payload as `JSON.parse` made it (the
/// frame is parsed once, and nothing is serialized again).
pub(crate) fn event(event: &Event) -> JsValue {
    let data = &event.data;
    let fields = Fields::new()
        .set("entity_id", data.entity_id.as_str())
        .put("payload", &data.payload.to_js())
        .optional("user_id", data.user_id.as_deref())
        .optional("tenant_id", data.tenant_id.as_deref())
        .set("timestamp", data.timestamp.as_str());
    let event_fields = Fields::new()
        .set("topic", event.topic.as_str())
        .set("event", event.event.as_str())
        .put("data", &fields.done())
        .optional("trace_id", event.trace_id.as_deref());
    let event_fields = if event.ephemeral { event_fields.set("ephemeral", true) } else { event_fields };
    match event.seq {
        Some(seq) => event_fields.set("seq", seq as f64),
        None => event_fields,
    }
    .done()
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
        .set("meta", presence.meta.to_js())
        .done()
}

pub(crate) fn presence_diff(diff: &PresenceDiff) -> JsValue {
    Fields::new()
        .set("type", "presence_diff")
        .set("topic", diff.topic.as_str())
        .set("joined", strings(&diff.joined))
        .set("left", strings(&diff.left))
        .set("meta", diff.meta.to_js())
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

/// `{epoch, seq}`.
pub(crate) fn position(position: &Position) -> JsValue {
    Fields::new().set("epoch", position.epoch.as_str()).set("seq", position.seq as f64).done()
}

/// `{type: 'live', topic, position}`: `position` is `{epoch, seq}` or `null`.
pub(crate) fn live(topic: &Topic, position: &JsValue) -> JsValue {
    Fields::new().set("type", "live").set("topic", topic.as_str()).put("position", position).done()
}

fn code(error: &ErrorMessage) -> JsValue {
    match &error.code {
        ErrorCode::Number(n) => JsValue::from(*n),
        ErrorCode::Name(name) => JsValue::from_str(name),
    }
}

/// `{type: 'refused', topic, code, message}`: the server does not allow the topic.
pub(crate) fn refused(topic: &str, error: &ErrorMessage) -> JsValue {
    Fields::new()
        .set("type", "refused")
        .set("topic", topic)
        .set("code", code(error))
        .set("message", &error.message)
        .done()
}

/// What a refused subscription's `live` Promise rejects with: an `Error`
/// with `kind: 'refused'`, `topic`, and the server's `code`.
pub(crate) fn refusal(topic: &str, error: &ErrorMessage) -> JsValue {
    let value = failure("refused", &format!("subscription to {topic} refused ({}): {}", error.code, error.message));
    Fields::assign(&value, "topic", &JsValue::from_str(topic));
    Fields::assign(&value, "code", &code(error));
    value
}

/// `{id, seq, position, duplicate}`: what a publish's Promise resolves with
/// (`seq` and `position` only where the server gives them).
pub(crate) fn ack(id: &PublishId, seq: Option<u64>, at: Option<&Position>, duplicate: bool) -> JsValue {
    let ack = Fields::new().set("id", &id.0).set("duplicate", duplicate);
    let ack = match seq {
        Some(seq) => ack.set("seq", seq as f64),
        None => ack,
    };
    match at {
        Some(at) => ack.put("position", &position(at)),
        None => ack,
    }
    .done()
}

pub(crate) fn error(message: &str) -> JsValue {
    js_sys::Error::new(message).into()
}

/// An `Error` with a `kind` a program can switch on; the message is for people.
pub(crate) fn failure(kind: &str, message: &str) -> JsValue {
    let value = error(message);
    Fields::assign(&value, "kind", &JsValue::from_str(kind));
    value
}

/// A publish the session refused at once: `kind` is `'invalid'`,
/// `'queue_full'`, `'unsupported'` (with `feature`), `'offline'` (an
/// ephemeral publish) or `'stopped'`.
pub(crate) fn publish_refused(refusal: &PublishError) -> JsValue {
    let message = refusal.to_string();
    match refusal {
        PublishError::Invalid(_) => failure("invalid", &message),
        PublishError::QueueFull { .. } => failure("queue_full", &message),
        PublishError::Unsupported { feature } => unsupported(feature, &message),
        PublishError::Offline => failure("offline", &message),
        _ => failure("stopped", &message),
    }
}

/// A publish that failed after it was queued: `kind` is `'timeout'`,
/// `'rejected'` (with the server's `code`), `'conflict'` (with `currentSeq`,
/// the topic's seq to rebase on), `'not_sent'` (an ephemeral publish whose
/// connection was lost), `'unsupported'` (with `feature`) or `'stopped'`.
pub(crate) fn publish_failed(failed: &PublishFailure) -> JsValue {
    let message = failed.to_string();
    match failed {
        PublishFailure::Timeout { .. } => failure("timeout", &message),
        PublishFailure::Rejected { code, .. } => {
            let value = failure("rejected", &message);
            let code = match code {
                ErrorCode::Number(n) => JsValue::from(*n),
                ErrorCode::Name(name) => JsValue::from_str(name),
            };
            Fields::assign(&value, "code", &code);
            value
        }
        PublishFailure::Conflict { current } => {
            let value = failure("conflict", &message);
            Fields::assign(&value, "currentSeq", &JsValue::from(*current as f64));
            value
        }
        PublishFailure::NotSent => failure("not_sent", &message),
        PublishFailure::Unsupported { feature } => unsupported(feature, &message),
        _ => failure("stopped", &message),
    }
}

fn unsupported(feature: &str, message: &str) -> JsValue {
    let value = failure("unsupported", message);
    Fields::assign(&value, "feature", &JsValue::from_str(feature));
    value
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
