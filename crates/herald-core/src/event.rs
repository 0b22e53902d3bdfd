//! What the session tells the application: events, status changes, outcomes.

use std::{fmt, sync::Arc, time::Duration};

use herald_protocol::{ErrorCode, ErrorMessage, Event, Position, Presence, PresenceDiff, ProtocolError, Topic};

use crate::Transport;

/// The connection's state, as an application shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Status {
    /// The first connection is being made.
    Connecting,
    /// The transport is open and subscriptions are (re)sent.
    Connected {
        /// What carries the session: a WebSocket, or Server-Sent Events where
        /// WebSocket is blocked ([`SessionConfig::fallback`](crate::SessionConfig::fallback)).
        transport: Transport,
    },
    /// The connection was lost; attempt `attempt` starts in `next_in`.
    Reconnecting {
        /// Failed attempts in a row so far (1 after the first failure).
        attempt: u32,
        /// The wait before the next attempt.
        next_in: Duration,
    },
    /// The session stopped for good.
    Disconnected {
        /// Why.
        reason: DisconnectReason,
    },
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Connecting => f.write_str("connecting"),
            Self::Connected { transport: Transport::WebSocket } => f.write_str("connected"),
            Self::Connected { transport } => write!(f, "connected over {transport}"),
            Self::Reconnecting { attempt, next_in } => {
                // In whole milliseconds as u64: u128 formatting is a lot of code for a browser.
                let ms = u64::try_from(next_in.as_millis()).unwrap_or(u64::MAX);
                write!(f, "reconnecting (attempt {attempt}, next in {ms} ms)")
            }
            Self::Disconnected { reason } => write!(f, "disconnected: {reason}"),
        }
    }
}

/// Why a session stopped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DisconnectReason {
    /// The application closed it.
    #[error("closed by the application")]
    Closed,
    /// The server refused the token twice in a row (close 4001), the second
    /// time after the token provider gave a fresh one.
    #[error("unauthorized: {reason}; check the token or the token provider")]
    Unauthorized {
        /// The server's close reason.
        reason: String,
    },
    /// Nothing this session asked for is allowed: the server closed with
    /// 4003, or refused the last subscribed topic with error 4003.
    #[error("forbidden: {reason}; the token does not allow these topics")]
    Forbidden {
        /// The server's close reason or error message.
        reason: String,
    },
    /// `max_attempts` reconnects failed in a row.
    #[error("gave up after {attempts} failed connection attempts; is the server up and the URL right?")]
    RetriesExhausted {
        /// How many attempts failed.
        attempts: u32,
    },
}

/// Why the application must resync a topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ResyncReason {
    /// The server could not replay what was missed (history too short, or a
    /// new epoch after a restart).
    NotRecovered,
    /// The server does not support recovery, so anything may have been missed
    /// while disconnected.
    NoRecovery,
    /// A wildcard subscription reconnected, and the server had given it no
    /// position to resume from (a server before wildcard recovery, or a
    /// node of a cluster that did not know where the numbers stood).
    Wildcard,
    /// The application read too slowly: the driver dropped events of this
    /// topic rather than buffer without bound (never emitted by the session
    /// itself).
    Lagged,
    /// An event's `seq` skipped numbers: events were lost on the way.
    Gap {
        /// The `seq` expected next.
        expected: u64,
        /// The `seq` that arrived.
        got: u64,
    },
}

/// Why a publish did not get an ack.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PublishFailure {
    /// No ack within `publish_timeout` (the server may not support acks, or
    /// the connection stayed down).
    // Milliseconds as u64: u128 formatting is a lot of code for a browser.
    #[error("no ack within {} ms; the server may be down or may not ack publishes", u64::try_from(after.as_millis()).unwrap_or(u64::MAX))]
    Timeout {
        /// The timeout that ran out.
        after: Duration,
    },
    /// The server answered with an error.
    #[error("rejected by the server ({code}): {message}")]
    Rejected {
        /// The server's error code.
        code: ErrorCode,
        /// The server's message.
        message: String,
    },
    /// A conditional publish found the topic at another `seq`: rebase the
    /// change on `current` and publish again with it.
    #[error("conflict: the topic is at seq {current}, not the if_seq given; rebase on it and retry")]
    Conflict {
        /// The topic's current `seq`.
        current: u64,
    },
    /// An ephemeral publish whose connection was lost before its ack: it is
    /// not sent again (nothing ephemeral outlives a connection).
    #[error("the connection was lost before the ack; ephemeral events are not sent again")]
    NotSent,
    /// The server the publish reached does not announce the feature it
    /// needs (`if_seq`): it was not sent.
    #[error("the server does not support {feature} publishes; it was not sent")]
    Unsupported {
        /// The feature, as servers announce it.
        feature: &'static str,
    },
    /// The session stopped before the ack.
    #[error("the session stopped before the ack: {0}")]
    Stopped(DisconnectReason),
}

/// Why [`Session::publish`](crate::Session::publish) refused a publish at once.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PublishError {
    /// The event is not valid protocol v1; the message says what to fix.
    #[error("invalid publish: {0}")]
    Invalid(#[from] ProtocolError),
    /// `max_pending_publishes` publishes already wait for acks.
    #[error("{capacity} publishes already wait for an ack; wait for acks or raise max_pending_publishes")]
    QueueFull {
        /// The configured limit.
        capacity: usize,
    },
    /// The server did not announce the feature this publish needs
    /// (`ephemeral` or `if_seq`): sent anyway, an unknown field would be
    /// ignored, and a conditional write would become an unconditional one.
    #[error("the server does not support {feature} publishes (its connected message does not announce it)")]
    Unsupported {
        /// The feature, as servers announce it.
        feature: &'static str,
    },
    /// An ephemeral publish while offline: it would be stale by the time it is sent.
    #[error("ephemeral events are sent only while connected")]
    Offline,
    /// The session has stopped.
    #[error("the session has stopped: {0}")]
    Stopped(DisconnectReason),
}

/// Why [`Session::subscribe`](crate::Session::subscribe) refused a topic.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SubscribeError {
    /// The session has stopped.
    #[error("the session has stopped: {0}")]
    Stopped(DisconnectReason),
    /// [`Session::set_presence`](crate::Session::set_presence) on a topic
    /// not subscribed with presence.
    #[error("{topic} is not subscribed with presence: subscribe to it with SubscribeOptions::presence first")]
    NoPresence {
        /// The topic.
        topic: String,
    },
    /// The presence metadata is not valid; says why.
    #[error("{0}")]
    Invalid(String),
}

impl From<ProtocolError> for SubscribeError {
    fn from(error: ProtocolError) -> Self {
        Self::Invalid(error.to_string())
    }
}

/// Identifies one publish; the server's `ack` carries it back.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PublishId(pub String);

impl fmt::Display for PublishId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Something the application should know about.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum SessionEvent {
    /// The connection status changed.
    Status(Status),
    /// An event arrived on a subscribed topic (duplicates already dropped).
    Event(Event),
    /// Events of `topic` may have been missed: invalidate caches of it
    /// wholesale. For a wildcard topic, every topic it matches.
    Resync {
        /// The subscribed topic (or wildcard).
        topic: Topic,
        /// Why.
        reason: ResyncReason,
    },
    /// The subscription is live: the server confirmed it, or recovered it
    /// after a reconnect. Everything up to `position` was delivered
    /// (replayed events included), and what follows comes live. After a
    /// reconnect that could not recover, a [`Resync`](Self::Resync) comes
    /// first. A wildcard's position is its resource's `wildcard_seq`.
    /// `position` is `None` where the server gave none (a node of a
    /// cluster that has not seen the topic yet, or a server before
    /// wildcard recovery).
    Live {
        /// The subscribed topic (or wildcard).
        topic: Topic,
        /// Where the topic stands.
        position: Option<Position>,
    },
    /// The subscription was sent to a server that never confirms
    /// subscriptions (no `connected`, or no recovery support announced):
    /// events flow, but nothing proves that none was missed before the
    /// first one. It never becomes [`Live`](Self::Live).
    Unconfirmed {
        /// The subscribed topic.
        topic: Topic,
    },
    /// The server refused a subscription; the topic is no longer subscribed.
    SubscribeFailed {
        /// The topic.
        topic: String,
        /// The server's error.
        error: ErrorMessage,
    },
    /// The server accepted a publish.
    PublishAcked {
        /// The publish.
        id: PublishId,
        /// The `seq` the event got, if the server numbers events (not an
        /// ephemeral one).
        seq: Option<u64>,
        /// The event's position, if the server also names its epoch.
        position: Option<Position>,
        /// The server had already accepted it (a retransmission).
        duplicate: bool,
    },
    /// A publish failed.
    PublishFailed {
        /// The publish.
        id: PublishId,
        /// Why.
        error: PublishFailure,
    },
    /// Everyone subscribed to a topic with presence.
    Presence(Presence),
    /// Who joined and left a topic with presence.
    PresenceDiff(PresenceDiff),
    /// An error from the server not tied to a publish or a topic.
    ServerError(ErrorMessage),
    /// A JSON object that is not a Herald message (e.g. from a plain
    /// broadcast server), as its text.
    Raw(String),
    /// A frame that could not be decoded; the connection goes on.
    Malformed(Arc<ProtocolError>),
    /// The token provider failed; the attempt counts as a failed connection.
    TokenFailed {
        /// The provider's error.
        message: String,
    },
}
