//! What a subscription yields, and the `Stream` handles.

use std::{
    pin::Pin,
    task::{Context, Poll},
};

use futures::Stream;
use herald_core::{ResyncReason, SessionEvent};
use herald_protocol::{ErrorMessage, Event, Presence, PresenceDiff, Topic};
use tokio::sync::mpsc;

use crate::driver::Command;

/// What arrives on a [`Subscription`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Update {
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
