//! Bounded delivery to one reader: a reader that falls behind loses events,
//! never memory, and is told to resync the topics it lost.

use std::collections::BTreeSet;

use herald_core::{ResyncReason, SessionEvent};
use herald_protocol::Topic;
use tokio::sync::mpsc::{Sender, error::TrySendError};

use crate::Update;

/// Something that can be delivered to a reader and replaced by a resync of its topic.
pub(crate) trait Item: Sized {
    fn topic(&self) -> Option<&Topic>;
    fn lagged(topic: Topic) -> Self;
}

impl Item for Update {
    fn topic(&self) -> Option<&Topic> {
        match self {
            Self::Event(e) => Some(&e.topic),
            Self::Resync { topic, .. } => Some(topic),
            Self::Presence(p) => Some(&p.topic),
            Self::PresenceDiff(p) => Some(&p.topic),
            _ => None,
        }
    }

    fn lagged(topic: Topic) -> Self {
        Self::Resync { topic, reason: ResyncReason::Lagged }
    }
}

impl Item for SessionEvent {
    fn topic(&self) -> Option<&Topic> {
        match self {
            Self::Event(e) => Some(&e.topic),
            Self::Resync { topic, .. } => Some(topic),
            Self::Presence(p) => Some(&p.topic),
            Self::PresenceDiff(p) => Some(&p.topic),
            _ => None,
        }
    }

    fn lagged(topic: Topic) -> Self {
        Self::Resync { topic, reason: ResyncReason::Lagged }
    }
}

#[derive(Debug)]
pub(crate) struct Outlet<T> {
    tx: Sender<T>,
    /// Topics whose items were dropped and whose resync is not delivered yet.
    lost: BTreeSet<Topic>,
}

impl<T: Item> Outlet<T> {
    pub(crate) fn new(tx: Sender<T>) -> Self {
        Self { tx, lost: BTreeSet::new() }
    }

    /// Delivers `item`, or records its topic as lost when the reader is
    /// behind. Returns `false` once the reader is gone.
    pub(crate) fn deliver(&mut self, item: T) -> bool {
        // Resyncs go first, so a reader never sees newer events of a topic
        // before learning that it missed some.
        if !self.flush() {
            return false;
        }
        if !self.lost.is_empty() {
            if let Some(topic) = item.topic() {
                self.lost.insert(topic.clone());
            }
            return true;
        }
        match self.tx.try_send(item) {
            Ok(()) => true,
            Err(TrySendError::Full(item)) => {
                // Items without a topic (status, raw frames) have no cache to invalidate.
                if let Some(topic) = item.topic() {
                    self.lost.insert(topic.clone());
                }
                true
            }
            Err(TrySendError::Closed(_)) => false,
        }
    }

    /// Delivers pending resyncs as far as the reader has room. Returns
    /// `false` once the reader is gone.
    pub(crate) fn flush(&mut self) -> bool {
        while let Some(topic) = self.lost.first().cloned() {
            match self.tx.try_send(T::lagged(topic.clone())) {
                Ok(()) => {
                    self.lost.remove(&topic);
                }
                Err(TrySendError::Full(_)) => break,
                Err(TrySendError::Closed(_)) => return false,
            }
        }
        true
    }

    /// Whether resyncs wait for room.
    pub(crate) fn is_lagging(&self) -> bool {
        !self.lost.is_empty()
    }
}
