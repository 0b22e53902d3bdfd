//! Messages a server sends to clients, and decoding them leniently.

#[cfg(not(wasm_browser))]
use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::{Event, ProtocolError, Topic, TopicMap, error::check_frame_size};

/// A message from server to client.
///
/// Events carry no `type` field (the seed documents' shape); every other
/// message is `{"type": ..}` tagged. [`decode`](Self::decode) turns any JSON
/// object that is none of these into [`ServerMessage::Raw`] rather than an
/// error, so a client also works against plain JSON broadcast servers.
///
/// ```
/// use herald_protocol::ServerMessage;
///
/// let hello = ServerMessage::decode(r#"{"type":"connected","userId":"u1"}"#)?;
/// let ServerMessage::Connected(connected) = hello else { panic!() };
/// assert_eq!(connected.user_id.as_deref(), Some("u1"));
///
/// let other = ServerMessage::decode(r#"{"type":"notification","message":"hi"}"#)?;
/// assert!(matches!(other, ServerMessage::Raw(_)));
/// # Ok::<(), herald_protocol::ProtocolError>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum ServerMessage {
    /// Something changed on a subscribed topic.
    Event(Event),
    /// The server checks liveness; answer with a `pong`.
    Ping,
    /// The answer to the client's `ping`.
    Pong,
    /// The connection is authenticated.
    Connected(Connected),
    /// Topics are subscribed.
    Subscribed(Subscribed),
    /// Topics are unsubscribed.
    Unsubscribed(Unsubscribed),
    /// A publish was accepted.
    Ack(Ack),
    /// A request failed.
    Error(ErrorMessage),
    /// Everyone subscribed to a topic with presence.
    Presence(Presence),
    /// Who joined and left a topic with presence.
    PresenceDiff(PresenceDiff),
    /// A JSON object that is not a Herald message, kept as its text.
    Raw(String),
}

/// `{"type":"connected"}`: authentication succeeded.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Connected {
    /// The authenticated user (`userId` is accepted too).
    #[serde(default, alias = "userId", skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    /// The user's tenant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant_id: Option<String>,
    /// Seconds until the token expires; send a `refresh` before then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_in: Option<u64>,
    /// Identifies the server's history; `seq` positions from another epoch
    /// cannot be recovered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epoch: Option<String>,
    /// The protocol version the server speaks ([`PROTOCOL_VERSION`](crate::PROTOCOL_VERSION)).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u32>,
    /// What the server supports beyond the common subset (see [`feature`]).
    /// A client never sends a field the server did not announce.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub features: Vec<String>,
}

impl Connected {
    /// Whether the server announced `feature`. A server that sends an
    /// `epoch` and no `features` (Herald before features were announced)
    /// supports [`feature::RECOVERY`].
    pub fn supports(&self, feature: &str) -> bool {
        self.features.iter().any(|f| f == feature) || (feature == feature::RECOVERY && self.epoch.is_some())
    }
}

/// What a server may announce in `connected.features`.
pub mod feature {
    /// Events numbered by `seq`, replayed after a `since`, and `subscribed`
    /// answers with positions.
    pub const RECOVERY: &str = "recovery";
    /// `publish` with `"ephemeral": true`: delivered to current subscribers
    /// only, without `seq`, history or retransmission.
    pub const EPHEMERAL: &str = "ephemeral";
    /// `publish` with `"if_seq": N`: accepted only while the topic's `seq` is N.
    pub const CONDITIONAL: &str = "if_seq";
    /// `presence` and `presence_diff`.
    pub const PRESENCE: &str = "presence";
    /// Presence metadata: `meta` in `subscribe`, `set_presence`, and `meta`
    /// in `presence` and `presence_diff`.
    pub const PRESENCE_META: &str = "presence_meta";
}

/// `{"type":"subscribed"}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Subscribed {
    /// The topics now subscribed.
    pub topics: Vec<Topic>,
    /// For a subscribe with `since`: whether every missed event of these topics
    /// was replayed before this message. `false` means the client must resync.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovered: Option<bool>,
    /// The current `seq` of each concrete topic, so a client knows its position
    /// before the first event arrives.
    #[serde(default, skip_serializing_if = "TopicMap::is_empty")]
    pub last_seq: TopicMap<u64>,
}

/// `{"type":"unsubscribed"}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Unsubscribed {
    /// The topics no longer subscribed.
    pub topics: Vec<Topic>,
}

/// `{"type":"ack"}`: the publish with this id was accepted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ack {
    /// The publish id.
    pub id: String,
    /// The `seq` the event got (none for an ephemeral event).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    /// The epoch the `seq` belongs to: with it, the event's [`Position`](crate::Position).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epoch: Option<String>,
    /// The server had already accepted this id and did not broadcast it again.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub duplicate: bool,
}

/// `{"type":"error"}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorMessage {
    /// Machine-readable code; see [`error_code`](crate::error_code).
    pub code: ErrorCode,
    /// What went wrong, for people.
    pub message: String,
    /// The publish id this error answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The topic this error is about (as the client sent it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
    /// For a refused conditional publish ([`error_code::CONFLICT`]): the
    /// topic's current `seq`, to rebase on and retry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
}

/// An error code: a number (Herald, seed servers) or a name (some peers).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ErrorCode {
    /// A numeric code such as `429` or `4003`.
    Number(u32),
    /// A named code such as `"bad_request"`.
    Name(String),
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Number(n) => write!(f, "{n}"),
            Self::Name(name) => f.write_str(name),
        }
    }
}

/// The metadata of presence members that set some, by user id.
///
/// ```
/// use herald_protocol::{Payload, PresenceMeta};
///
/// let meta = PresenceMeta::from([("u-1".to_owned(), Payload::from_json(r#"{"name":"Ann"}"#)?)]);
/// assert_eq!(meta["u-1"].get(), r#"{"name":"Ann"}"#);
/// # Ok::<(), herald_protocol::JsonError>(())
/// ```
///
/// In a browser (`wasm32-unknown-unknown`) it is the object `JSON.parse`
/// made of the message's `meta`, handed to JavaScript as it is
/// (`PresenceMeta::to_js`): no map is built for a driver that only passes
/// it on.
#[cfg(not(wasm_browser))]
pub type PresenceMeta = BTreeMap<String, crate::Payload>;
#[cfg(wasm_browser)]
pub use crate::browser::PresenceMeta;

/// `{"type":"presence"}`: everyone subscribed to `topic`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Presence {
    /// The topic.
    pub topic: Topic,
    /// User ids, each once.
    pub members: Vec<String>,
    /// The metadata of the members that set some, by user id.
    #[serde(default, skip_serializing_if = "PresenceMeta::is_empty")]
    pub meta: PresenceMeta,
}

/// `{"type":"presence_diff"}`: who joined and left `topic`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PresenceDiff {
    /// The topic.
    pub topic: Topic,
    /// Users who joined.
    #[serde(default)]
    pub joined: Vec<String>,
    /// Users who left.
    #[serde(default)]
    pub left: Vec<String>,
    /// The metadata of the users in `joined` that have some. A member whose
    /// metadata changed is in `joined` again, with the new metadata.
    #[serde(default, skip_serializing_if = "PresenceMeta::is_empty")]
    pub meta: PresenceMeta,
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Tagged<'a> {
    Ping,
    Pong,
    Connected(&'a Connected),
    Subscribed(&'a Subscribed),
    Unsubscribed(&'a Unsubscribed),
    Ack(&'a Ack),
    Error(&'a ErrorMessage),
    Presence(&'a Presence),
    PresenceDiff(&'a PresenceDiff),
}

/// An [`Event`] with the `type` it may carry, for reading events in one pass.
#[cfg(not(wasm_browser))]
#[derive(Deserialize)]
struct EventFrame<'a> {
    #[serde(rename = "type", borrow, default)]
    kind: Option<std::borrow::Cow<'a, str>>,
    topic: Topic,
    event: crate::EventKind,
    data: crate::EventData,
    #[serde(default)]
    trace_id: Option<String>,
    #[serde(default)]
    seq: Option<u64>,
    #[serde(default)]
    wildcard_seq: Option<u64>,
    #[serde(default)]
    ephemeral: bool,
}

#[cfg(not(wasm_browser))]
#[derive(Deserialize)]
struct Probe<'a> {
    #[serde(rename = "type", borrow, default)]
    kind: Option<std::borrow::Cow<'a, str>>,
    #[serde(default)]
    topic: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    event: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    data: Option<serde::de::IgnoredAny>,
}

impl ServerMessage {
    /// Encodes as compact JSON; events keep the seed's key order.
    pub fn encode(&self) -> String {
        let tagged = match self {
            Self::Event(event) => return event.encode(),
            Self::Raw(text) => return text.clone(),
            Self::Ping => Tagged::Ping,
            Self::Pong => Tagged::Pong,
            Self::Connected(m) => Tagged::Connected(m),
            Self::Subscribed(m) => Tagged::Subscribed(m),
            Self::Unsubscribed(m) => Tagged::Unsubscribed(m),
            Self::Ack(m) => Tagged::Ack(m),
            Self::Error(m) => Tagged::Error(m),
            Self::Presence(m) => Tagged::Presence(m),
            Self::PresenceDiff(m) => Tagged::PresenceDiff(m),
        };
        serde_json::to_string(&tagged).expect("server messages hold only strings, numbers and maps with string keys")
    }

    /// Decodes one text frame.
    ///
    /// A message of a Herald type with wrong fields is an error (it says which
    /// field); any other JSON object is [`ServerMessage::Raw`]; text that is not
    /// a JSON object is an error.
    ///
    /// In a browser (`wasm32-unknown-unknown`) the browser's `JSON.parse`
    /// does the parsing; see the `browser` module for the few differences.
    pub fn decode(text: &str) -> Result<Self, ProtocolError> {
        check_frame_size(text)?;
        #[cfg(wasm_browser)]
        return crate::browser::decode_server(text);
        #[cfg(not(wasm_browser))]
        Self::decode_with_serde(text)
    }

    #[cfg(not(wasm_browser))]
    fn decode_with_serde(text: &str) -> Result<Self, ProtocolError> {
        crate::error::check_object(text)?;
        // Nearly every frame a client reads is an event: read those in one
        // pass; anything else (or a broken event) takes the general path.
        if let Ok(frame) = serde_json::from_str::<EventFrame<'_>>(text)
            && frame.kind.as_deref().is_none_or(|kind| kind == "event")
        {
            let EventFrame { topic, event, data, trace_id, seq, wildcard_seq, ephemeral, .. } = frame;
            return Ok(Self::Event(Event { topic, event, data, trace_id, seq, wildcard_seq, ephemeral }));
        }
        let probe: Probe<'_> = match serde_json::from_str(text) {
            Ok(probe) => probe,
            // Valid JSON of another shape (e.g. a non-string "type") is someone else's message.
            Err(e) if e.is_data() => {
                return match serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(text) {
                    Ok(_) => Ok(Self::Raw(text.to_owned())),
                    Err(_) => Err(ProtocolError::NotAnObject),
                };
            }
            Err(e) => return Err(ProtocolError::Json(e.into())),
        };
        fn parse<'a, T: Deserialize<'a>>(kind: &str, text: &'a str) -> Result<T, ProtocolError> {
            serde_json::from_str(text)
                .map_err(|source| ProtocolError::Fields { kind: kind.to_owned(), source: source.into() })
        }
        Ok(match probe.kind.as_deref() {
            Some("ping") => Self::Ping,
            Some("pong") => Self::Pong,
            Some(kind @ "connected") => Self::Connected(parse(kind, text)?),
            Some(kind @ "subscribed") => Self::Subscribed(parse(kind, text)?),
            Some(kind @ "unsubscribed") => Self::Unsubscribed(parse(kind, text)?),
            Some(kind @ "ack") => Self::Ack(parse(kind, text)?),
            Some(kind @ "error") => Self::Error(parse(kind, text)?),
            Some(kind @ "presence") => Self::Presence(parse(kind, text)?),
            Some(kind @ "presence_diff") => Self::PresenceDiff(parse(kind, text)?),
            Some(kind @ "event") => Self::Event(parse(kind, text)?),
            None if probe.topic.is_some() && probe.event.is_some() && probe.data.is_some() => {
                Self::Event(parse("event", text)?)
            }
            _ => Self::Raw(text.to_owned()),
        })
    }
}

impl Event {
    /// Encodes as compact JSON in the seed's key order, without a `type` field.
    pub fn encode(&self) -> String {
        crate::json::event(self)
    }
}

/// Numeric codes of `{"type":"error"}` messages sent by Herald's server.
pub mod error_code {
    /// The message was malformed; the text says what is wrong.
    pub const BAD_REQUEST: u32 = 400;
    /// The token is missing, bad or expired.
    pub const UNAUTHORIZED: u32 = 4001;
    /// The token does not allow this topic (subscribe) or this publish.
    pub const FORBIDDEN: u32 = 4003;
    /// The message was larger than the limits allow.
    pub const TOO_LARGE: u32 = 413;
    /// A conditional publish (`if_seq`) found the topic at another `seq`:
    /// the error's `seq` is the current one; rebase and retry.
    pub const CONFLICT: u32 = 409;
    /// Too many messages, or a limit reached (the text says which); slow
    /// down, or the connection is closed with 4008.
    pub const RATE_LIMITED: u32 = 429;
    /// The server failed; retrying may help.
    pub const INTERNAL: u32 = 500;
}
