//! The client's one error type.

use std::time::Duration;

use herald_core::{DisconnectReason, PublishFailure};
use herald_protocol::{ErrorCode, ProtocolError, TopicError};

/// What went wrong, and what to do about it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The URL is not a `ws://` or `wss://` URL.
    #[error("bad URL {url:?}: {problem}; use e.g. ws://127.0.0.1:8080/ws")]
    Url {
        /// The URL given.
        url: String,
        /// What is wrong with it.
        problem: String,
    },
    /// A topic is not valid; the message says where.
    #[error(transparent)]
    Topic(#[from] TopicError),
    /// A publish is not valid protocol v1; the message says what to fix.
    #[error("invalid publish: {0}")]
    Invalid(#[from] ProtocolError),
    /// The payload could not be serialized to JSON.
    #[error("the payload is not serializable to JSON: {0}")]
    Payload(#[from] serde_json::Error),
    /// Too many publishes wait for acks already.
    #[error("{capacity} publishes already wait for an ack; await some, or raise the queue size on the builder")]
    QueueFull {
        /// The configured limit.
        capacity: usize,
    },
    /// The server refused the publish (e.g. `4003`: the token may not
    /// publish on this topic); retrying the same publish will not help.
    #[error("the server rejected the publish ({code}): {message}")]
    Rejected {
        /// The server's error code.
        code: ErrorCode,
        /// The server's message.
        message: String,
    },
    /// The server refused the subscription (e.g. `4003`: the token may not
    /// read this topic).
    #[error("the server refused the subscription to {topic} ({code}): {message}")]
    SubscribeRejected {
        /// The topic.
        topic: String,
        /// The server's error code.
        code: ErrorCode,
        /// The server's message.
        message: String,
    },
    /// A conditional publish (`if_seq`) found the topic at another `seq`:
    /// someone published first. Reload, rebase the change on `current`, and
    /// publish again with it.
    #[error("conflict: the topic is at seq {current}, not the if_seq given; reload, rebase and retry")]
    Conflict {
        /// The topic's current `seq`.
        current: u64,
    },
    /// The server does not announce the feature the publish needs
    /// (`ephemeral` or `if_seq`); it was not sent.
    #[error("the server does not support {feature} publishes; it was not sent (upgrade the server)")]
    Unsupported {
        /// The feature, as servers announce it.
        feature: &'static str,
    },
    /// An ephemeral publish while offline, or whose connection was lost
    /// before its ack: ephemeral events are never queued or sent again.
    #[error("the ephemeral event was not sent: the client is offline (ephemeral events are never queued)")]
    NotSent,
    /// No ack arrived in time.
    #[error("no ack within {} ms; the server may be down, or may not ack publishes", after.as_millis())]
    Timeout {
        /// The timeout that ran out.
        after: Duration,
    },
    /// The client stopped: closed, unauthorized, forbidden or out of retries.
    #[error("the client stopped: {0}")]
    Stopped(DisconnectReason),
    /// [`ClientBuilder::connect`](crate::ClientBuilder::connect) was called outside a tokio runtime.
    #[error("no tokio runtime; call connect() from within a tokio runtime (e.g. #[tokio::main])")]
    NoRuntime,
    /// The client was closed (or its task ended) before the call completed.
    #[error("the client is closed; build a new one to reconnect")]
    Closed,
    /// Presence metadata refused before it was sent (not an object, too
    /// large, or a topic not subscribed with presence); says why.
    #[error("presence metadata not set: {0}")]
    Presence(herald_core::SubscribeError),
}

impl From<herald_core::SubscribeError> for Error {
    fn from(error: herald_core::SubscribeError) -> Self {
        match error {
            herald_core::SubscribeError::Stopped(reason) => Self::Stopped(reason),
            other => Self::Presence(other),
        }
    }
}

impl From<PublishFailure> for Error {
    fn from(failure: PublishFailure) -> Self {
        match failure {
            PublishFailure::Timeout { after } => Self::Timeout { after },
            PublishFailure::Stopped(reason) => Self::Stopped(reason),
            PublishFailure::Rejected { code, message } => Self::Rejected { code, message },
            PublishFailure::Conflict { current } => Self::Conflict { current },
            PublishFailure::Unsupported { feature } => Self::Unsupported { feature },
            PublishFailure::NotSent => Self::NotSent,
            _ => Self::Closed,
        }
    }
}

impl From<herald_core::PublishError> for Error {
    fn from(error: herald_core::PublishError) -> Self {
        match error {
            herald_core::PublishError::Invalid(e) => Self::Invalid(e),
            herald_core::PublishError::QueueFull { capacity } => Self::QueueFull { capacity },
            herald_core::PublishError::Stopped(reason) => Self::Stopped(reason),
            herald_core::PublishError::Unsupported { feature } => Self::Unsupported { feature },
            herald_core::PublishError::Offline => Self::NotSent,
            _ => Self::Closed,
        }
    }
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
