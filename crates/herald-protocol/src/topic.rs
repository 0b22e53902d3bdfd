//! Topics: `resource-type:identifier`, with `resource-type:*` as a wildcard.

use std::{borrow::Borrow, fmt, str::FromStr};

use serde::{Deserialize, Deserializer, Serialize};

use crate::{
    error::{Quoted, quoted_char},
    limits::MAX_TOPIC_BYTES,
};

/// A validated topic such as `gift-list:family-123`, or a wildcard such as
/// `gift-list:*` that matches every identifier of one resource type.
///
/// The resource type is one or more of `a-z A-Z 0-9 - _ .`; the identifier is one
/// or more of those and `@ + = : ~`, or exactly `*`. Topics are at most
/// [`MAX_TOPIC_BYTES`] long.
///
/// ```
/// use herald_protocol::Topic;
///
/// let topic: Topic = "gift-list:family-123".parse()?;
/// assert_eq!(topic.resource(), "gift-list");
/// assert_eq!(topic.identifier(), "family-123");
///
/// let all: Topic = "gift-list:*".parse()?;
/// assert!(all.is_wildcard() && all.matches(&topic));
///
/// let err = "gift list:1".parse::<Topic>().unwrap_err();
/// assert_eq!(err.to_string(), r#"topic "gift list:1": space not allowed at byte 4"#);
/// # Ok::<(), herald_protocol::TopicError>(())
/// ```
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct Topic {
    text: String,
    #[serde(skip)]
    colon: usize,
}

/// Why a string is not a valid [`Topic`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("topic {}: {kind}", Quoted::text(topic))]
pub struct TopicError {
    /// The rejected text (cut to [`MAX_TOPIC_BYTES`] so errors stay small).
    pub topic: String,
    /// What is wrong with it.
    pub kind: TopicErrorKind,
}

/// What is wrong with a topic.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TopicErrorKind {
    /// The topic is empty.
    #[error("empty; use the form resource-type:identifier")]
    Empty,
    /// The topic is longer than [`MAX_TOPIC_BYTES`].
    #[error("{len} bytes long, the limit is {max}")]
    TooLong {
        /// Its length in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// There is no `:` between resource type and identifier.
    #[error("no ':' between resource type and identifier (e.g. gift-list:123)")]
    MissingColon,
    /// Nothing before the `:`.
    #[error("empty resource type before ':'")]
    EmptyResource,
    /// Nothing after the `:`.
    #[error("empty identifier after ':'")]
    EmptyIdentifier,
    /// A character outside the grammar.
    #[error("{} not allowed at byte {at}", describe(*ch))]
    InvalidChar {
        /// The character.
        ch: char,
        /// Its byte offset in the topic.
        at: usize,
    },
    /// A `*` that is not the whole identifier.
    #[error("'*' at byte {at} must be the whole identifier (resource-type:*)")]
    MisplacedWildcard {
        /// Its byte offset in the topic.
        at: usize,
    },
}

fn describe(ch: char) -> String {
    match ch {
        ' ' => "space".to_owned(),
        c if c.is_control() => format!("control character {}", quoted_char(c)),
        c => quoted_char(c),
    }
}

fn resource_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')
}

fn identifier_char(c: char) -> bool {
    resource_char(c) || matches!(c, '@' | '+' | '=' | ':' | '~')
}

impl Topic {
    /// Validates `text` as a topic or wildcard.
    pub fn new(text: impl Into<String>) -> Result<Self, TopicError> {
        let text = text.into();
        match Self::check(&text) {
            Ok(colon) => Ok(Self { text, colon }),
            Err(kind) => {
                let mut topic = text;
                if topic.len() > MAX_TOPIC_BYTES {
                    let mut cut = MAX_TOPIC_BYTES;
                    while !topic.is_char_boundary(cut) {
                        cut -= 1;
                    }
                    topic.truncate(cut);
                }
                Err(TopicError { topic, kind })
            }
        }
    }

    fn check(text: &str) -> Result<usize, TopicErrorKind> {
        if text.is_empty() {
            return Err(TopicErrorKind::Empty);
        }
        if text.len() > MAX_TOPIC_BYTES {
            return Err(TopicErrorKind::TooLong { len: text.len(), max: MAX_TOPIC_BYTES });
        }
        let mut colon = None;
        for (at, ch) in text.char_indices() {
            match colon {
                None if ch == ':' => {
                    if at == 0 {
                        return Err(TopicErrorKind::EmptyResource);
                    }
                    colon = Some(at);
                }
                None if resource_char(ch) => {}
                Some(c) if ch == '*' => {
                    if at != c + 1 || text.len() != at + 1 {
                        return Err(TopicErrorKind::MisplacedWildcard { at });
                    }
                }
                Some(_) if identifier_char(ch) => {}
                _ if ch == '*' => return Err(TopicErrorKind::MisplacedWildcard { at }),
                _ => return Err(TopicErrorKind::InvalidChar { ch, at }),
            }
        }
        let colon = colon.ok_or(TopicErrorKind::MissingColon)?;
        if colon + 1 == text.len() {
            return Err(TopicErrorKind::EmptyIdentifier);
        }
        Ok(colon)
    }

    /// The whole topic text.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The part before the first `:` (`gift-list` in `gift-list:123`).
    pub fn resource(&self) -> &str {
        &self.text[..self.colon]
    }

    /// The part after the first `:` (`123` in `gift-list:123`, `*` for a wildcard).
    pub fn identifier(&self) -> &str {
        &self.text[self.colon + 1..]
    }

    /// Whether this is a `resource-type:*` wildcard.
    pub fn is_wildcard(&self) -> bool {
        self.identifier() == "*"
    }

    /// Whether an event on `topic` is delivered to a subscription on `self`.
    pub fn matches(&self, topic: &Self) -> bool {
        if self.is_wildcard() { self.resource() == topic.resource() } else { self == topic }
    }

    /// Like [`matches`](Self::matches), for a topic not yet parsed.
    pub fn matches_str(&self, topic: &str) -> bool {
        if self.is_wildcard() {
            topic.split_once(':').is_some_and(|(resource, _)| resource == self.resource())
        } else {
            self.text == topic
        }
    }

    /// Consumes the topic, returning its text.
    pub fn into_string(self) -> String {
        self.text
    }
}

impl fmt::Display for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.text, f)
    }
}

impl FromStr for Topic {
    type Err = TopicError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl TryFrom<String> for Topic {
    type Error = TopicError;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::new(s)
    }
}

impl TryFrom<&str> for Topic {
    type Error = TopicError;

    fn try_from(s: &str) -> Result<Self, Self::Error> {
        Self::new(s)
    }
}

impl AsRef<str> for Topic {
    fn as_ref(&self) -> &str {
        &self.text
    }
}

impl Borrow<str> for Topic {
    fn borrow(&self) -> &str {
        &self.text
    }
}

impl PartialEq<str> for Topic {
    fn eq(&self, other: &str) -> bool {
        self.text == other
    }
}

impl PartialEq<&str> for Topic {
    fn eq(&self, other: &&str) -> bool {
        self.text == *other
    }
}

impl<'de> Deserialize<'de> for Topic {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::new(text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_seed_topics() {
        for t in ["gift-list:family-123", "user:456", "bench:1", "a:b", "doc.v2:x@y:z"] {
            Topic::new(t).unwrap();
        }
    }

    #[test]
    fn rejects_with_a_message_that_says_where() {
        let cases: &[(&str, &str)] = &[
            ("", r#"topic "": empty; use the form resource-type:identifier"#),
            ("gift-list", r#"topic "gift-list": no ':' between resource type and identifier (e.g. gift-list:123)"#),
            (":1", r#"topic ":1": empty resource type before ':'"#),
            ("a:", r#"topic "a:": empty identifier after ':'"#),
            ("gift list:1", r#"topic "gift list:1": space not allowed at byte 4"#),
            ("a:b/c", r#"topic "a:b/c": '/' not allowed at byte 3"#),
            ("a:*x", r#"topic "a:*x": '*' at byte 2 must be the whole identifier (resource-type:*)"#),
            ("*:x", r#"topic "*:x": '*' at byte 0 must be the whole identifier (resource-type:*)"#),
            ("a:x*", r#"topic "a:x*": '*' at byte 3 must be the whole identifier (resource-type:*)"#),
            ("a:\n", r#"topic "a:\n": control character '\n' not allowed at byte 2"#),
        ];
        for (input, message) in cases {
            assert_eq!(Topic::new(*input).unwrap_err().to_string(), *message, "{input:?}");
        }
        let long = format!("a:{}", "x".repeat(MAX_TOPIC_BYTES));
        let err = Topic::new(long).unwrap_err();
        assert_eq!(err.kind, TopicErrorKind::TooLong { len: MAX_TOPIC_BYTES + 2, max: MAX_TOPIC_BYTES });
        assert_eq!(err.topic.len(), MAX_TOPIC_BYTES);
    }

    #[test]
    fn wildcards_match_one_resource_type() {
        let all = Topic::new("gift-list:*").unwrap();
        assert!(all.matches(&Topic::new("gift-list:1").unwrap()));
        assert!(!all.matches(&Topic::new("gift-lists:1").unwrap()));
        assert!(all.matches_str("gift-list:2"));
        assert!(!all.matches_str("gift-list"));
        let one = Topic::new("gift-list:1").unwrap();
        assert!(one.matches_str("gift-list:1") && !one.matches_str("gift-list:2"));
    }
}
