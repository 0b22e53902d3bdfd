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

    pub(crate) fn push(&mut self, id: PublishId, frame: String, deadline: Instant) {
        debug_assert!(!self.is_full(), "callers check is_full first");
        self.pending.push(Pending { id, frame, deadline });
    }

    /// Frames of every unacked publish, oldest first, to send on a new connection.
    pub(crate) fn frames(&self) -> impl Iterator<Item = &str> {
        self.pending.iter().map(|p| p.frame.as_str())
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
