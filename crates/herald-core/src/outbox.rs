//! Publishes waiting for an ack: bounded, kept in order across reconnects.

use web_time::Instant;

use crate::PublishId;

#[derive(Debug)]
pub(crate) struct Outbox {
    /// Oldest first. A `Vec`: taking from the front moves at most
    /// `capacity` entries, and the browser build then carries no second
    /// `VecDeque`.
    pending: Vec<Pending>,
    capacity: usize,
}

#[derive(Debug)]
struct Pending {
    id: PublishId,
    frame: String,
    deadline: Instant,
    kind: Kind,
}

/// What a publish needs of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Sent on any connection, again after each reconnect until acked.
    Plain,
    /// Sent only once the server announced `if_seq`; again after a reconnect.
    Conditional,
    /// Sent on the connection it was made on, never again.
    Ephemeral,
}

impl Outbox {
    pub(crate) fn new(capacity: usize) -> Self {
        Self { pending: Vec::new(), capacity }
    }

    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }

    pub(crate) fn len(&self) -> usize {
        self.pending.len()
    }

    pub(crate) fn is_full(&self) -> bool {
        self.pending.len() >= self.capacity
    }

    pub(crate) fn push(&mut self, id: PublishId, frame: String, deadline: Instant, kind: Kind) {
        debug_assert!(!self.is_full(), "callers check is_full first");
        self.pending.push(Pending { id, frame, deadline, kind });
    }

    /// Frames of the unacked publishes of `kind`, oldest first, to send on
    /// a new connection (or once its server announced what they need).
    pub(crate) fn frames(&self, kind: Kind) -> impl Iterator<Item = &str> {
        self.pending.iter().filter(move |p| p.kind == kind).map(|p| p.frame.as_str())
    }

    /// Removes and returns the publishes of `kind` (ephemeral ones when
    /// their connection is lost; conditional ones a server cannot take).
    pub(crate) fn take(&mut self, kind: Kind) -> Vec<PublishId> {
        let (taken, kept) = std::mem::take(&mut self.pending).into_iter().partition(|p| p.kind == kind);
        self.pending = kept;
        taken.into_iter().map(|p: Pending| p.id).collect()
    }

    /// Removes a publish; `false` if it was not pending (acked already or unknown).
    pub(crate) fn remove(&mut self, id: &str) -> bool {
        let found = self.pending.iter().position(|p| p.id.0 == id);
        found.map(|at| self.pending.remove(at)).is_some()
    }

    /// Removes and returns publishes whose deadline has passed.
    pub(crate) fn expire(&mut self, now: Instant) -> Vec<PublishId> {
        // Deadlines are `made + timeout` with one timeout: the queue is in deadline order.
        let due = self.pending.iter().take_while(|p| p.deadline <= now).count();
        self.pending.drain(..due).map(|p| p.id).collect()
    }

    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.pending.first().map(|p| p.deadline)
    }

    pub(crate) fn drain(&mut self) -> impl Iterator<Item = PublishId> + '_ {
        self.pending.drain(..).map(|p| p.id)
    }
}
