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
    Json(#[source] JsonError),
    /// The frame is a JSON value, but not an object.
    #[error("frame is JSON but not an object; messages are objects like {{\"type\":\"ping\"}}")]
    NotAnObject,
    /// A client message has no `type` field, or one this protocol does not know.
    #[error("unknown message type {}; expected one of {expected}", Quoted::text(found))]
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
        /// What the parser found wrong, with the field name.
        #[source]
        source: JsonError,
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

/// Text in quotes for error messages, escaped as `{:?}` escapes it (quotes,
/// backslashes, control characters), except that other characters are
/// written as they are: `{:?}` would pull in the standard library's tables of
/// printable Unicode, which the browser build would carry for error messages
/// alone. `'` quotes a character as `{:?}` does.
pub(crate) struct Quoted<'a>(pub(crate) &'a str, pub(crate) char);

impl<'a> Quoted<'a> {
    /// `"text"`.
    pub(crate) fn text(text: &'a str) -> Self {
        Self(text, '"')
    }
}

/// `'c'`, escaped as `{:?}` escapes it (see [`Quoted`]).
pub(crate) fn quoted_char(c: char) -> String {
    Quoted(c.encode_utf8(&mut [0; 4]), '\'').to_string()
}

impl std::fmt::Display for Quoted<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use std::fmt::Write as _;
        let quote = self.1;
        f.write_char(quote)?;
        for c in self.0.chars() {
            match c {
                '\\' => f.write_str("\\\\")?,
                '\n' => f.write_str("\\n")?,
                '\r' => f.write_str("\\r")?,
                '\t' => f.write_str("\\t")?,
                c if c == quote => write!(f, "\\{c}")?,
                c if c.is_control() => write!(f, "\\u{{{:x}}}", u32::from(c))?,
                c => f.write_char(c)?,
            }
        }
        f.write_char(quote)
    }
}

/// What a JSON parser found wrong: `serde_json`'s error, or in a browser
/// what its `JSON.parse` or the field checks said.
#[derive(Debug)]
pub struct JsonError(Repr);

#[derive(Debug)]
enum Repr {
    // In a browser serde_json's errors are kept as text, so its error
    // formatting stays out of the build unless serde_json is really used.
    #[cfg(not(wasm_browser))]
    Serde(serde_json::Error),
    #[cfg_attr(not(wasm_browser), allow(dead_code))]
    Message(String),
}

impl JsonError {
    #[cfg_attr(not(wasm_browser), allow(dead_code))]
    pub(crate) fn message(message: String) -> Self {
        Self(Repr::Message(message))
    }
}

impl From<serde_json::Error> for JsonError {
    fn from(error: serde_json::Error) -> Self {
        #[cfg(not(wasm_browser))]
        return Self(Repr::Serde(error));
        #[cfg(wasm_browser)]
        return Self(Repr::Message(error.to_string()));
    }
}

impl std::fmt::Display for JsonError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            #[cfg(not(wasm_browser))]
            Repr::Serde(error) => error.fmt(f),
            Repr::Message(message) => f.write_str(message),
        }
    }
}

impl std::error::Error for JsonError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.0 {
            #[cfg(not(wasm_browser))]
            Repr::Serde(error) => Some(error),
            Repr::Message(_) => None,
        }
    }
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

/// Refuses text that is not a JSON object before serde sees it: serde would
/// read a struct from an array too (`[]` is an empty struct to it).
pub(crate) fn check_object(text: &str) -> Result<(), ProtocolError> {
    if text.trim_start().starts_with('{') {
        return Ok(());
    }
    match serde_json::from_str::<serde::de::IgnoredAny>(text) {
        Ok(_) => Err(ProtocolError::NotAnObject),
        Err(error) => Err(ProtocolError::Json(error.into())),
    }
}
