//! Messages a client sends to the server.

use std::{borrow::Cow, fmt};

use serde::{Deserialize, Serialize};

use crate::{
    EventData, EventKind, Payload, ProtocolError, Topic, TopicMap,
    error::Quoted,
    error::check_frame_size,
    limits::{MAX_PRESENCE_META_BYTES, MAX_PUBLISH_ID_BYTES, MAX_TOPICS_PER_MESSAGE},
};

/// A message from client to server, `{"type": ..}` tagged.
///
/// ```
/// use herald_protocol::{ClientMessage, Topic};
///
/// let subscribe = ClientMessage::subscribe(vec![Topic::new("gift-list:1")?]);
/// assert_eq!(subscribe.encode(), r#"{"type":"subscribe","topics":["gift-list:1"]}"#);
///
/// let ping = ClientMessage::decode(r#"{"type":"ping"}"#)?;
/// assert_eq!(ping, ClientMessage::Ping);
///
/// let err = ClientMessage::decode(r#"{"type":"subscribe","topics":["gift list:1"]}"#).unwrap_err();
/// assert!(err.to_string().contains(r#"topic "gift list:1": space not allowed at byte 4"#));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum ClientMessage {
    /// Start receiving events of these topics.
    Subscribe(Subscribe),
    /// Stop receiving events of these topics.
    Unsubscribe {
        /// Topics to leave.
        topics: Vec<Topic>,
    },
    /// Liveness check; the server answers `{"type":"pong"}`.
    Ping,
    /// The answer to a server's `{"type":"ping"}`.
    Pong,
    /// First-message authentication, instead of the `?token=` query parameter.
    Auth {
        /// The bearer token.
        token: Token,
    },
    /// A fresh token for a live connection, sent before the old one expires.
    Refresh {
        /// The new bearer token.
        token: Token,
    },
    /// Publish an event; the server answers with an `ack` carrying the same `id`.
    Publish(Publish),
    /// Changes what the other members see of this user in a topic's
    /// presence (a name, a colour, a role): a JSON object of at most
    /// [`MAX_PRESENCE_META_BYTES`](crate::limits::MAX_PRESENCE_META_BYTES),
    /// for a topic subscribed with presence. Only to servers that announce
    /// [`feature::PRESENCE_META`](crate::feature::PRESENCE_META).
    SetPresence {
        /// A concrete topic.
        topic: Topic,
        /// The user's metadata, replacing any earlier.
        meta: Payload,
    },
}

/// The `subscribe` message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Subscribe {
    /// Topics or `resource:*` wildcards.
    pub topics: Vec<Topic>,
    /// For recovery: the last `seq` the client saw per concrete topic. The
    /// server replays what came after, or answers `recovered: false`.
    #[serde(default, skip_serializing_if = "TopicMap::is_empty")]
    pub since: TopicMap<u64>,
    /// The server epoch the `since` positions belong to (from `connected`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epoch: Option<String>,
    /// Ask for presence (who is subscribed) on these topics.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub presence: bool,
    /// With `presence`: what the other members see of this user in these
    /// topics, as in [`ClientMessage::SetPresence`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meta: Option<Payload>,
}

/// The `publish` message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Publish {
    /// Chosen by the client, unique per user; the server drops duplicates by it.
    pub id: String,
    /// A concrete topic.
    pub topic: Topic,
    /// What happened.
    pub event: EventKind,
    /// The change. Herald's server overwrites `user_id` and `tenant_id` with
    /// the token's.
    pub data: EventData,
    /// Correlates the event with the request that caused it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
    /// Deliver to current subscribers only: no `seq`, no history, no
    /// recovery, no retransmission after a reconnect (typing indicators,
    /// cursors). Only to servers that announce [`feature::EPHEMERAL`](crate::feature::EPHEMERAL).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ephemeral: bool,
    /// Accept only while the topic's `seq` is this (a lost-update check for
    /// collaborative edits); otherwise the server answers error
    /// [`CONFLICT`](crate::error_code::CONFLICT) with the current `seq`. Only
    /// to servers that announce [`feature::CONDITIONAL`](crate::feature::CONDITIONAL).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub if_seq: Option<u64>,
}

/// A bearer token. Its `Debug` output is redacted so it never reaches logs.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Token(pub String);

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

const CLIENT_TYPES: &str = "subscribe, unsubscribe, ping, pong, auth, refresh, publish, set_presence";

#[derive(Deserialize)]
struct SetPresenceFields {
    topic: Topic,
    meta: Payload,
}

#[derive(Deserialize)]
struct TopicsField {
    topics: Vec<Topic>,
}

#[derive(Deserialize)]
struct TokenField {
    token: Token,
}

#[derive(Deserialize)]
struct TypeProbe<'a> {
    #[serde(rename = "type", borrow, default)]
    kind: Option<Cow<'a, str>>,
}

impl ClientMessage {
    /// A `subscribe` for `topics`, with no recovery positions.
    pub fn subscribe(topics: Vec<Topic>) -> Self {
        Self::Subscribe(Subscribe { topics, since: TopicMap::new(), epoch: None, presence: false, meta: None })
    }

    /// Encodes as compact JSON.
    pub fn encode(&self) -> String {
        crate::json::client_message(self)
    }

    /// Decodes and validates one text frame. Every failure says what is wrong.
    pub fn decode(text: &str) -> Result<Self, ProtocolError> {
        check_frame_size(text)?;
        crate::error::check_object(text)?;
        let probe: TypeProbe<'_> = serde_json::from_str(text)
            .map_err(|e| if e.is_data() { ProtocolError::NotAnObject } else { ProtocolError::Json(e.into()) })?;
        // Each type is parsed as its own struct: serde's tagged-enum buffering
        // cannot carry the raw JSON of a publish payload.
        fn parse<'a, T: Deserialize<'a>>(kind: &str, text: &'a str) -> Result<T, ProtocolError> {
            serde_json::from_str(text)
                .map_err(|source| ProtocolError::Fields { kind: kind.to_owned(), source: source.into() })
        }
        let message = match probe.kind.as_deref().unwrap_or_default() {
            kind @ "subscribe" => Self::Subscribe(parse(kind, text)?),
            kind @ "unsubscribe" => Self::Unsubscribe { topics: parse::<TopicsField>(kind, text)?.topics },
            "ping" => Self::Ping,
            "pong" => Self::Pong,
            kind @ "auth" => Self::Auth { token: parse::<TokenField>(kind, text)?.token },
            kind @ "refresh" => Self::Refresh { token: parse::<TokenField>(kind, text)?.token },
            kind @ "publish" => Self::Publish(parse(kind, text)?),
            kind @ "set_presence" => {
                let SetPresenceFields { topic, meta } = parse(kind, text)?;
                Self::SetPresence { topic, meta }
            }
            other => {
                return Err(ProtocolError::UnknownType { found: other.to_owned(), expected: CLIENT_TYPES });
            }
        };
        message.validate()?;
        Ok(message)
    }

    /// Checks limits the types do not: topic counts, publish ids, event names,
    /// payload sizes and timestamps.
    pub fn validate(&self) -> Result<(), ProtocolError> {
        match self {
            Self::Subscribe(Subscribe { topics, presence, meta, .. }) => {
                check_topics("subscribe", topics)?;
                match meta {
                    Some(_) if !presence => Err(ProtocolError::invalid(
                        "subscribe",
                        "meta is presence metadata: add \"presence\": true, or drop meta",
                    )),
                    Some(meta) => check_meta("subscribe", meta),
                    None => Ok(()),
                }
            }
            Self::SetPresence { topic, meta } => {
                if topic.is_wildcard() {
                    return Err(ProtocolError::invalid(
                        "set_presence",
                        format!("topic {} is a wildcard; name one concrete topic", Quoted::text(topic.as_str())),
                    ));
                }
                check_meta("set_presence", meta)
            }
            Self::Unsubscribe { topics } => check_topics("unsubscribe", topics),
            Self::Auth { token } | Self::Refresh { token } if token.0.is_empty() => {
                Err(ProtocolError::invalid("auth", "token is empty"))
            }
            Self::Publish(publish) => publish.validate(),
            _ => Ok(()),
        }
    }
}

impl Publish {
    /// Checks the id and the event (see [`Event::validate`](crate::Event::validate)).
    pub fn validate(&self) -> Result<(), ProtocolError> {
        if self.id.is_empty() || self.id.len() > MAX_PUBLISH_ID_BYTES {
            return Err(ProtocolError::invalid(
                "publish",
                format!("id must be 1 to {MAX_PUBLISH_ID_BYTES} bytes, got {}", self.id.len()),
            ));
        }
        if self.topic.is_wildcard() {
            return Err(ProtocolError::invalid(
                "publish",
                format!("topic {} is a wildcard; publish to one concrete topic", Quoted::text(self.topic.as_str())),
            ));
        }
        if self.ephemeral && self.if_seq.is_some() {
            return Err(ProtocolError::invalid(
                "publish",
                "an ephemeral event has no seq, so it cannot be conditional: drop if_seq or ephemeral",
            ));
        }
        self.event.validate()?;
        self.data.validate()
    }
}

/// Presence metadata is a small JSON object.
fn check_meta(kind: &'static str, meta: &Payload) -> Result<(), ProtocolError> {
    let json = meta.get();
    if !json.trim_start().starts_with('{') {
        return Err(ProtocolError::invalid(kind, "meta must be a JSON object, e.g. {\"name\":\"Alice\"}"));
    }
    if json.len() > MAX_PRESENCE_META_BYTES {
        return Err(ProtocolError::invalid(
            kind,
            format!("meta is {} bytes, the limit is {MAX_PRESENCE_META_BYTES}", json.len()),
        ));
    }
    Ok(())
}

fn check_topics(kind: &'static str, topics: &[Topic]) -> Result<(), ProtocolError> {
    if topics.is_empty() {
        return Err(ProtocolError::invalid(kind, "topics is empty; name at least one topic"));
    }
    if topics.len() > MAX_TOPICS_PER_MESSAGE {
        return Err(ProtocolError::invalid(
            kind,
            format!("{} topics, the limit is {MAX_TOPICS_PER_MESSAGE} per message", topics.len()),
        ));
    }
    Ok(())
}
