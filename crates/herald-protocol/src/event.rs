//! Events: what a server pushes to subscribers when something changed.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer, de::DeserializeOwned};
use serde_json::value::RawValue;

use crate::{
    JsonError, ProtocolError, Topic,
    error::{Quoted, quoted_char},
    limits::{MAX_EVENT_NAME_BYTES, MAX_ID_BYTES, MAX_PAYLOAD_BYTES},
};

/// One change, in the shape the seed documents use:
/// `{topic, event, data{entity_id, payload, user_id?, tenant_id?, timestamp}, trace_id?}`,
/// plus `seq` (and `wildcard_seq`) from servers that support recovery.
///
/// ```
/// use herald_protocol::{Event, EventKind};
///
/// let event: Event = serde_json::from_str(r#"{
///     "topic": "gift-list:family-123",
///     "event": "UPDATED",
///     "data": {"entity_id": "gift-7", "payload": {"bought": true},
///              "timestamp": "2026-11-25T10:00:00Z"},
///     "seq": 42
/// }"#)?;
/// assert_eq!(event.event, EventKind::Updated);
/// assert_eq!(event.seq, Some(42));
///
/// #[derive(serde::Deserialize)]
/// struct Gift { bought: bool }
/// assert!(event.payload_as::<Gift>()?.bought);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Where it happened, e.g. `gift-list:family-123`.
    pub topic: Topic,
    /// What happened.
    pub event: EventKind,
    /// The changed entity and who changed it.
    pub data: EventData,
    /// Correlates the event with the request that caused it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
    /// Per-topic sequence number, increasing by one per event on this topic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    /// Where the event stands among the events of every topic of its
    /// resource (`gift-list:*`): increasing, though not by one. A
    /// wildcard subscription resumes from the last one it saw, as a topic
    /// does from its `seq`. Servers that recover wildcards set it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wildcard_seq: Option<u64>,
    /// Sent to the subscribers of the moment only: no `seq`, not kept, not
    /// replayed (typing indicators, cursors).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ephemeral: bool,
}

/// The `data` object of an [`Event`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventData {
    /// The id of the changed resource.
    pub entity_id: String,
    /// Event-specific data, kept as the JSON text it arrived as.
    pub payload: Payload,
    /// Who triggered the change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    /// The tenant the change belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant_id: Option<String>,
    /// When it happened, RFC 3339 (e.g. `2026-11-25T10:00:00Z`).
    pub timestamp: String,
}

/// The kind of change: one of the four standard kinds or a custom name.
///
/// On the wire it is a string: `"ADDED"`, `"UPDATED"`, `"DELETED"`,
/// `"STATUS_CHANGED"` or anything else for [`EventKind::Custom`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// `ADDED`
    Added,
    /// `UPDATED`
    Updated,
    /// `DELETED`
    Deleted,
    /// `STATUS_CHANGED`
    StatusChanged,
    /// Any other name, e.g. `COMMENT_POSTED`.
    Custom(String),
}

impl EventKind {
    /// The wire name.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Added => "ADDED",
            Self::Updated => "UPDATED",
            Self::Deleted => "DELETED",
            Self::StatusChanged => "STATUS_CHANGED",
            Self::Custom(name) => name,
        }
    }

    /// Checks a custom name: 1 to [`MAX_EVENT_NAME_BYTES`] of `A-Z a-z 0-9 _ - .`.
    pub fn validate(&self) -> Result<(), ProtocolError> {
        let name = self.as_str();
        let problem = if name.is_empty() {
            "is empty".to_owned()
        } else if name.len() > MAX_EVENT_NAME_BYTES {
            format!("is {} bytes long, the limit is {MAX_EVENT_NAME_BYTES}", name.len())
        } else if let Some((at, ch)) =
            name.char_indices().find(|(_, c)| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')))
        {
            format!("has {} at byte {at}; use A-Z a-z 0-9 _ - .", quoted_char(ch))
        } else {
            return Ok(());
        };
        Err(ProtocolError::invalid("event", format!("event name {} {problem}", Quoted::text(name))))
    }
}

impl From<&str> for EventKind {
    fn from(name: &str) -> Self {
        match name {
            "ADDED" => Self::Added,
            "UPDATED" => Self::Updated,
            "DELETED" => Self::Deleted,
            "STATUS_CHANGED" => Self::StatusChanged,
            other => Self::Custom(other.to_owned()),
        }
    }
}

impl From<String> for EventKind {
    fn from(name: String) -> Self {
        match name.as_str() {
            "ADDED" | "UPDATED" | "DELETED" | "STATUS_CHANGED" => Self::from(name.as_str()),
            _ => Self::Custom(name),
        }
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for EventKind {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for EventKind {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(Self::from)
    }
}

/// An event's payload, kept as the JSON text it arrived as, so it is parsed
/// only by code that reads it, into the type it wants.
///
/// ```
/// use herald_protocol::Payload;
///
/// let payload = Payload::from_value(&serde_json::json!({"n": 1}))?;
/// assert_eq!(payload.get(), r#"{"n":1}"#);
/// assert_eq!(payload.parse::<serde_json::Value>()?["n"], 1);
/// # Ok::<(), serde_json::Error>(())
/// ```
///
/// In a browser (`wasm32-unknown-unknown`) a received payload stays the value
/// the browser's `JSON.parse` made of the frame, handed to JavaScript as it
/// is (`Payload::to_js`); its text is made only if Rust code asks for it.
#[derive(Clone)]
pub struct Payload(Text);

#[cfg(not(wasm_browser))]
type Text = Box<RawValue>;

// The browser checks JSON with its own parser; serde_json's stays out of the build.
#[cfg(wasm_browser)]
#[derive(Clone)]
struct Text {
    json: std::cell::OnceCell<Box<str>>,
    /// What `JSON.parse` made of a received payload.
    value: Option<wasm_bindgen::JsValue>,
}

#[cfg(wasm_browser)]
impl Text {
    fn json(json: String) -> Self {
        Self { json: std::cell::OnceCell::from(json.into_boxed_str()), value: None }
    }
}

impl Payload {
    /// Encodes any serializable value as a payload.
    pub fn from_value<T: Serialize + ?Sized>(value: &T) -> Result<Self, serde_json::Error> {
        serde_json::to_string(value).map(Self::checked)
    }

    /// Takes JSON text as it is, after checking that it is JSON.
    pub fn from_json(json: impl Into<String>) -> Result<Self, JsonError> {
        let json = json.into();
        #[cfg(not(wasm_browser))]
        return RawValue::from_string(json).map(Self).map_err(JsonError::from);
        #[cfg(wasm_browser)]
        return crate::browser::check_json(&json).map(|()| Self(Text::json(json)));
    }

    /// Text known to be JSON (written by a JSON serializer).
    fn checked(json: String) -> Self {
        #[cfg(not(wasm_browser))]
        return Self(RawValue::from_string(json).expect("serde_json writes JSON"));
        #[cfg(wasm_browser)]
        return Self(Text::json(json));
    }

    /// A payload the browser's `JSON.parse` made, as it is.
    #[cfg(wasm_browser)]
    pub(crate) fn from_browser(value: wasm_bindgen::JsValue) -> Self {
        Self(Text { json: std::cell::OnceCell::new(), value: Some(value) })
    }

    /// A JavaScript value as a payload: the text `JSON.stringify` makes of
    /// it now (the caller may change the value later); `None` for a value
    /// that has none (`undefined`, a function, a `BigInt`, a cycle). That
    /// text is JSON by construction, so unlike [`from_json`](Self::from_json)
    /// it is not parsed again to check it.
    #[cfg(wasm_browser)]
    pub fn from_js(value: &wasm_bindgen::JsValue) -> Option<Self> {
        let json = js_sys::JSON::stringify(value).ok()?.as_string()?;
        Some(Self(Text::json(json)))
    }

    /// The payload as a JavaScript value: the one `JSON.parse` made of the
    /// frame it came in (not parsed again), or one parsed from its text.
    #[cfg(wasm_browser)]
    pub fn to_js(&self) -> wasm_bindgen::JsValue {
        match &self.0.value {
            Some(value) => value.clone(),
            None => js_sys::JSON::parse(self.get()).unwrap_or(wasm_bindgen::JsValue::NULL),
        }
    }

    /// The JSON text.
    pub fn get(&self) -> &str {
        #[cfg(not(wasm_browser))]
        return self.0.get();
        #[cfg(wasm_browser)]
        return self.0.json.get_or_init(|| {
            let text = self.0.value.as_ref().and_then(|value| js_sys::JSON::stringify(value).ok());
            text.and_then(|s| s.as_string()).unwrap_or_else(|| "null".into()).into()
        });
    }

    /// Parses the payload into `T`.
    pub fn parse<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_str(self.get())
    }
}

impl Default for Payload {
    /// `null`
    fn default() -> Self {
        Self::checked("null".to_owned())
    }
}

impl Serialize for Payload {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[cfg(not(wasm_browser))]
        return self.0.serialize(serializer);
        #[cfg(wasm_browser)]
        return RawValue::from_string(self.get().to_owned()).map_err(serde::ser::Error::custom)?.serialize(serializer);
    }
}

impl<'de> Deserialize<'de> for Payload {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = Box::<RawValue>::deserialize(deserializer)?;
        #[cfg(not(wasm_browser))]
        return Ok(Self(raw));
        #[cfg(wasm_browser)]
        return Ok(Self(Text::json(raw.get().to_owned())));
    }
}

impl PartialEq for Payload {
    fn eq(&self, other: &Self) -> bool {
        self.get() == other.get()
    }
}

impl Eq for Payload {}

impl fmt::Debug for Payload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.get())
    }
}

impl Event {
    /// Parses `data.payload` into `T`.
    pub fn payload_as<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        self.data.payload.parse()
    }

    /// Checks everything the wire grammar does not: a concrete topic (no
    /// wildcard), the event name, id lengths, the payload size, and an RFC 3339
    /// timestamp. Servers call this on what they publish; clients accept events
    /// from lenient servers without it.
    pub fn validate(&self) -> Result<(), ProtocolError> {
        if self.topic.is_wildcard() {
            return Err(ProtocolError::invalid(
                "event",
                format!("topic {} is a wildcard; events go to one concrete topic", Quoted::text(self.topic.as_str())),
            ));
        }
        self.event.validate()?;
        self.data.validate()?;
        check_id("trace_id", self.trace_id.as_deref())
    }
}

impl EventData {
    /// Checks id lengths, the payload size and the RFC 3339 timestamp.
    pub fn validate(&self) -> Result<(), ProtocolError> {
        check_id("data.entity_id", Some(&self.entity_id))?;
        if self.entity_id.is_empty() {
            return Err(ProtocolError::invalid(
                "event",
                "data.entity_id is empty; give the id of the changed resource",
            ));
        }
        check_id("data.user_id", self.user_id.as_deref())?;
        check_id("data.tenant_id", self.tenant_id.as_deref())?;
        let size = self.payload.get().len();
        if size > MAX_PAYLOAD_BYTES {
            return Err(ProtocolError::TooLarge { what: "data.payload", len: size, max: MAX_PAYLOAD_BYTES });
        }
        crate::validate_timestamp(&self.timestamp)
    }
}

fn check_id(field: &'static str, value: Option<&str>) -> Result<(), ProtocolError> {
    match value {
        Some(v) if v.len() > MAX_ID_BYTES => {
            Err(ProtocolError::TooLarge { what: field, len: v.len(), max: MAX_ID_BYTES })
        }
        _ => Ok(()),
    }
}

/// The current time as RFC 3339 in UTC, for stamping events.
///
/// Not on `wasm32-unknown-unknown`, which has no system clock: browsers stamp
/// with `Date.prototype.toISOString`.
#[cfg(not(wasm_browser))]
pub fn now_timestamp() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .expect("formatting the current UTC time as RFC 3339 cannot fail")
}
