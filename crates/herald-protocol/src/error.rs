//! Errors of decoding and validating protocol messages.

use crate::{TopicError, limits::MAX_FRAME_BYTES};

/// Why a frame or message was refused. The message says what is wrong and
/// where, so it can be shown to whoever sent it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProtocolError {
    /// Something is larger than protocol v1 allows.
    #[error("{what} is {len} bytes, over the {max}-byte limit")]
    TooLarge {
        /// What was too large (`frame`, `data.payload`, ...).
        what: &'static str,
        /// Its size in bytes.
        len: usize,
        /// The limit in bytes.
        max: usize,
    },
    /// The frame is not JSON.
    #[error("frame is not valid JSON: {0}")]
    Json(#[source] serde_json::Error),
    /// The frame is a JSON value, but not an object.
    #[error("frame is JSON but not an object; messages are objects like {{\"type\":\"ping\"}}")]
    NotAnObject,
    /// A client message has no `type` field, or one this protocol does not know.
    #[error("unknown message type {found:?}; expected one of {expected}")]
    UnknownType {
        /// The `type` found (`""` when missing).
        found: String,
        /// The types that are understood.
        expected: &'static str,
    },
    /// A message of a known type has missing or mistyped fields.
    #[error("\"{kind}\" message: {source}")]
    Fields {
        /// The message type.
        kind: String,
        /// What serde found wrong, with the field name.
        #[source]
        source: serde_json::Error,
    },
    /// A topic is not valid.
    #[error(transparent)]
    Topic(#[from] TopicError),
    /// A field has a value the protocol does not allow.
    #[error("\"{kind}\" message: {problem}")]
    Invalid {
        /// The message type.
        kind: &'static str,
        /// What is wrong, with the field name.
        problem: String,
    },
}

impl ProtocolError {
    pub(crate) fn invalid(kind: &'static str, problem: impl Into<String>) -> Self {
        Self::Invalid { kind, problem: problem.into() }
    }
}

/// Refuses frames over [`MAX_FRAME_BYTES`] before any parsing.
pub(crate) fn check_frame_size(text: &str) -> Result<(), ProtocolError> {
    match text.len() {
        len if len > MAX_FRAME_BYTES => Err(ProtocolError::TooLarge { what: "frame", len, max: MAX_FRAME_BYTES }),
        _ => Ok(()),
    }
}
