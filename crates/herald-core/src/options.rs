//! How to subscribe and how to publish, beyond the topic and the event.

use herald_protocol::{Payload, Position};

/// How [`Session::subscribe`](crate::Session::subscribe) subscribes.
///
/// ```
/// use herald_core::SubscribeOptions;
/// use herald_core::protocol::Position;
///
/// // The app loaded the list at position 41 of epoch "8f3a1c" (its REST
/// // response said so): whatever changed since is replayed, or it resyncs.
/// let options = SubscribeOptions::default().from(Position::new("8f3a1c", 41));
/// assert_eq!(options.from.unwrap().seq, 41);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SubscribeOptions {
    /// Also receive presence (who is subscribed) for the topic.
    pub presence: bool,
    /// With presence: what the other members see of this user (a JSON
    /// object of at most 512 bytes: a name, a colour, a role). Change it
    /// later with [`Session::set_presence`](crate::Session::set_presence).
    pub meta: Option<Payload>,
    /// Where the application already is, e.g. the position its REST
    /// response gave with the data: the server replays what came after it,
    /// and where it cannot, the session says
    /// [`Resync`](crate::SessionEvent::Resync) before
    /// [`Live`](crate::SessionEvent::Live). Without it, the subscription
    /// starts where the topic is when the server answers.
    pub from: Option<Position>,
}

impl SubscribeOptions {
    /// Asks for presence too.
    pub fn presence(mut self) -> Self {
        self.presence = true;
        self
    }

    /// Asks for presence, listing this user with `meta`.
    pub fn presence_meta(mut self, meta: Payload) -> Self {
        self.presence = true;
        self.meta = Some(meta);
        self
    }

    /// Starts after `position`.
    pub fn from(mut self, position: Position) -> Self {
        self.from = Some(position);
        self
    }
}

/// How [`Session::publish`](crate::Session::publish) publishes.
///
/// ```
/// use herald_core::PublishOptions;
///
/// // Accepted only if nobody changed the document since seq 7.
/// let options = PublishOptions::default().if_seq(7).trace_id("req-42");
/// assert_eq!(options.if_seq, Some(7));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PublishOptions {
    /// Correlates the event with the request that caused it.
    pub trace_id: Option<String>,
    /// Deliver to the subscribers of the moment only: no `seq`, no history,
    /// not sent again after a reconnect (typing indicators, cursors). Only
    /// while connected to a server that announces it.
    pub ephemeral: bool,
    /// Accept only while the topic's `seq` is this; otherwise the publish
    /// fails with [`PublishFailure::Conflict`](crate::PublishFailure::Conflict)
    /// and the current `seq`. Only to a server that announces it: a server
    /// that ignored the field would make the write unconditional.
    pub if_seq: Option<u64>,
    /// The publish id (1 to 128 bytes, unique per user), instead of one the
    /// session makes. Given again by another session of the same user (a
    /// tab taking over a shared connection, a process retrying after a
    /// restart), it makes the server acknowledge the repeat as a duplicate
    /// within its dedup window instead of publishing the event twice.
    pub id: Option<String>,
}

impl PublishOptions {
    /// Sets the trace id.
    pub fn trace_id(mut self, trace_id: impl Into<String>) -> Self {
        self.trace_id = Some(trace_id.into());
        self
    }

    /// Makes the publish ephemeral.
    pub fn ephemeral(mut self) -> Self {
        self.ephemeral = true;
        self
    }

    /// Makes the publish conditional on the topic's `seq`.
    pub fn if_seq(mut self, seq: u64) -> Self {
        self.if_seq = Some(seq);
        self
    }

    /// Sets the publish id.
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }
}
