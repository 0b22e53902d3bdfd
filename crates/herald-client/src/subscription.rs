//! What a subscription yields, and the `Stream` handles.

use std::{
    pin::Pin,
    task::{Context, Poll},
};

use futures::Stream;
use herald_core::{ResyncReason, SessionEvent};
use herald_protocol::{ErrorMessage, Event, Position, Presence, PresenceDiff, Topic};
use tokio::sync::mpsc;

use crate::driver::Command;

/// What arrives on a [`Subscription`].
///
/// The first item is [`Live`](Self::Live) (after the events replayed since
/// [`SubscribeOptions::from`](crate::SubscribeOptions::from), if any), or
/// [`Unconfirmed`](Self::Unconfirmed) from a server that does not confirm
/// subscriptions. After a reconnect comes `Live` again if nothing was
/// missed, and [`Resync`](Self::Resync) then `Live` if something may have been.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Update {
    /// The subscription is live: every event up to `position` was
    /// delivered, and what follows comes as it happens.
    Live {
        /// Where the topic stands (`None` for a wildcard, or a server that
        /// does not number events).
        position: Option<Position>,
    },
    /// Sent to a server that never confirms subscriptions: events flow, but
    /// nothing proves that none was missed before the first. Never followed
    /// by `Live`.
    Unconfirmed,
    /// An event of the subscribed topic (duplicates already dropped).
    Event(Event),
    /// Events of `topic` may have been missed (the server could not replay
    /// them, or this subscription read too slowly): refetch or invalidate
    /// everything cached for it.
    Resync {
        /// The topic (for a wildcard subscription, a concrete topic or the wildcard).
        topic: Topic,
        /// Why.
        reason: ResyncReason,
    },
    /// Everyone subscribed to the topic (subscriptions made with presence).
    Presence(Presence),
    /// Who joined and left (subscriptions made with presence).
    PresenceDiff(PresenceDiff),
    /// The server refused the subscription; the stream ends after this.
    Rejected(ErrorMessage),
}

impl Update {
    /// What a subscriber reads of what the session says.
    pub(crate) fn from_session(event: SessionEvent) -> Option<Self> {
        Some(match event {
            SessionEvent::Event(event) => Self::Event(event),
            SessionEvent::Resync { topic, reason } => Self::Resync { topic, reason },
            SessionEvent::Live { position, .. } => Self::Live { position },
            SessionEvent::Unconfirmed { .. } => Self::Unconfirmed,
            SessionEvent::Presence(presence) => Self::Presence(presence),
            SessionEvent::PresenceDiff(diff) => Self::PresenceDiff(diff),
            SessionEvent::SubscribeFailed { error, .. } => Self::Rejected(error),
            _ => return None,
        })
    }
}

/// How a `subscribe` call was answered.
#[derive(Debug)]
pub(crate) struct Ready {
    pub(crate) position: Option<Position>,
    pub(crate) confirmed: bool,
}

/// A stream of [`Update`]s of one topic (or wildcard). Dropping it
/// unsubscribes, once no other `Subscription` of the same topic remains.
///
/// ```no_run
/// # async fn run(client: herald_client::Client) -> Result<(), herald_client::Error> {
/// use futures::StreamExt;
/// use herald_client::Update;
///
/// let mut gifts = client.subscribe("gift-list:family-123").await?;
/// while let Some(update) = gifts.next().await {
///     match update {
///         Update::Event(event) => println!("{} {}", event.event, event.data.entity_id),
///         Update::Resync { topic, .. } => println!("refetch everything of {topic}"),
///         _ => {}
///     }
/// }
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Subscription {
    pub(crate) topic: Topic,
    pub(crate) ready: Ready,
    pub(crate) rx: mpsc::Receiver<Update>,
    /// Keeps the background task alive while the subscription is read, even
    /// after every `Client` handle is dropped. Dropping the subscription
    /// closes `rx`, which the task notices and unsubscribes.
    pub(crate) _client: mpsc::Sender<Command>,
}

impl Subscription {
    /// The subscribed topic or wildcard.
    pub fn topic(&self) -> &Topic {
        &self.topic
    }

    /// Where the topic stood when the server confirmed the subscription
    /// (`None` for a wildcard, or a server that does not number events).
    /// Later positions come with each [`Update::Live`].
    pub fn position(&self) -> Option<&Position> {
        self.ready.position.as_ref()
    }

    /// Whether the server confirmed the subscription. `false` against a
    /// server that never does (no recovery announced): then nothing proves
    /// that no event was missed before the first one.
    pub fn is_confirmed(&self) -> bool {
        self.ready.confirmed
    }
}

impl Stream for Subscription {
    type Item = Update;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Update>> {
        self.rx.poll_recv(cx)
    }
}

/// A stream of everything the session reports: events of every
/// subscription, resyncs, status changes, raw frames, server errors.
#[derive(Debug)]
pub struct Events {
    pub(crate) rx: mpsc::Receiver<SessionEvent>,
}

impl Stream for Events {
    type Item = SessionEvent;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<SessionEvent>> {
        self.rx.poll_recv(cx)
    }
}
