//! Where a topic stands: the epoch its events are numbered in, and a `seq`.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A topic's position: the server epoch (the history its `seq` numbers
/// belong to) and the `seq` of its last event. A server recovers only
/// within the epoch it numbered the events in, so a `seq` alone recovers
/// nothing after a restart that lost the history.
///
/// Every publish answers with the event's position, and a backend reads a
/// topic's position before its data, so that a client can subscribe from
/// exactly what it loaded:
///
/// ```
/// use herald_protocol::Position;
///
/// let position: Position = serde_json::from_str(r#"{"epoch":"8f3a1c","seq":41}"#)?;
/// assert_eq!(position, Position::new("8f3a1c", 41));
/// assert_eq!(position.to_string(), "8f3a1c:41");
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Position {
    /// The history the `seq` belongs to (`connected.epoch`).
    pub epoch: String,
    /// The `seq` of the topic's last event; 0 before the first.
    pub seq: u64,
}

impl Position {
    /// The position `seq` in `epoch`.
    pub fn new(epoch: impl Into<String>, seq: u64) -> Self {
        Self { epoch: epoch.into(), seq }
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.epoch, self.seq)
    }
}
