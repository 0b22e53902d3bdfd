//! The handle applications hold.

use std::sync::{
    Arc,
    atomic::{AtomicU64, Ordering},
};

use herald_core::{PublishId, PublishOptions, Status, SubscribeOptions};
use herald_protocol::{EventData, EventKind, Payload, Position, Topic};
use serde::Serialize;
use tokio::sync::{mpsc, oneshot, watch};

use crate::{ClientBuilder, Error, Events, Result, Subscription, driver::Command};

/// A Herald connection: cheap to clone, usable from any task.
///
/// One background task owns the connection and keeps it alive — reconnecting
/// with backoff, resubscribing, recovering missed events, retransmitting
/// unacked publishes — until [`close`](Self::close), a terminal error (for
/// example a refused token), or until every handle and subscription is dropped.
///
/// ```no_run
/// # async fn run() -> Result<(), herald_client::Error> {
/// use futures::StreamExt;
/// use herald_client::{Client, Update};
///
/// let client = Client::builder("ws://127.0.0.1:8080/ws").token("dev-user").connect()?;
/// // Resolves once the server confirmed the subscription: from here on, nothing is missed.
/// let mut gifts = client.subscribe("gift-list:family-123").await?;
/// let ack = client.publish("gift-list:family-123", "UPDATED", "gift-7", &serde_json::json!({"bought": true})).await?;
/// println!("published at {:?}", ack.position);
/// while let Some(update) = gifts.next().await {
///     match update {
///         Update::Live { position } => println!("live at {position:?}"),
///         Update::Event(event) => println!("{} {}", event.event, event.data.entity_id),
///         _ => {}
///     }
/// }
/// client.close().await;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Client {
    pub(crate) commands: mpsc::Sender<Command>,
    pub(crate) status: watch::Receiver<Status>,
    pub(crate) next_id: Arc<AtomicU64>,
    pub(crate) capacity: usize,
}

/// A publish the server accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Ack {
    /// The publish id.
    pub id: PublishId,
    /// The `seq` the event got, if the server numbers events (not an ephemeral one).
    pub seq: Option<u64>,
    /// The event's position, `{epoch, seq}`, if the server names its epoch:
    /// hand it to readers that start from it
    /// ([`Client::subscribe_from`]).
    pub position: Option<Position>,
    /// The server had accepted it before (a retransmission after a reconnect).
    pub duplicate: bool,
}

const _: () = {
    const fn assert_send_sync_clone<T: Send + Sync + Clone>() {}
    assert_send_sync_clone::<Client>();
};

impl Client {
    /// Starts configuring a client for `url` (`ws://` or `wss://`).
    pub fn builder(url: impl Into<String>) -> ClientBuilder {
        ClientBuilder::new(url)
    }

    /// Subscribes to a topic (`gift-list:123`) or wildcard (`gift-list:*`),
    /// and resolves once the server confirmed it: every event published
    /// after that reaches the subscription. Its first item is
    /// [`Update::Live`]. Drop it to unsubscribe; it survives reconnects.
    ///
    /// While offline, it waits for the connection (wrap it in a timeout to
    /// give up). Against a server that never confirms subscriptions it
    /// resolves once the subscribe is written, and the subscription is
    /// [unconfirmed](Subscription::is_confirmed). A refusal is
    /// [`Error::SubscribeRejected`].
    pub async fn subscribe(&self, topic: &str) -> Result<Subscription> {
        self.subscribe_with(topic, SubscribeOptions::default()).await
    }

    /// Like [`subscribe`](Self::subscribe), and also receives presence:
    /// who else is subscribed with presence.
    pub async fn subscribe_with_presence(&self, topic: &str) -> Result<Subscription> {
        self.subscribe_with(topic, SubscribeOptions::default().presence()).await
    }

    /// Subscribes starting after `position`, for example the one a REST
    /// response gave with the data it returned: the events since are
    /// replayed before [`Update::Live`], or, where the server cannot replay
    /// them, an [`Update::Resync`] says to load again.
    ///
    /// ```no_run
    /// # async fn run(client: herald_client::Client, loaded_at: herald_client::Position) -> Result<(), herald_client::Error> {
    /// // The backend read the position before the data, and returned both.
    /// let gifts = client.subscribe_from("gift-list:family-123", loaded_at).await?;
    /// # Ok(()) }
    /// ```
    pub async fn subscribe_from(&self, topic: &str, position: Position) -> Result<Subscription> {
        self.subscribe_with(topic, SubscribeOptions::default().from(position)).await
    }

    /// Changes what the other members of `topic`'s presence see of this
    /// user: a JSON object of at most 512 bytes (a name, a colour, a role),
    /// for a topic subscribed with presence (with metadata from the start:
    /// [`SubscribeOptions::presence_meta`]). It stays the user's on later
    /// connections. What the other members see is what this client says:
    /// not checked by the server, unlike the user id.
    ///
    /// ```no_run
    /// # async fn run(client: herald_client::Client) -> Result<(), herald_client::Error> {
    /// let room = client.subscribe_with_presence("room:1").await?;
    /// client.set_presence("room:1", &serde_json::json!({ "name": "Ann", "colour": "#f80" })).await?;
    /// # Ok(()) }
    /// ```
    pub async fn set_presence(&self, topic: &str, meta: &(impl Serialize + ?Sized)) -> Result<()> {
        let meta = Payload::from_value(meta)?;
        let (reply, done) = oneshot::channel();
        self.send(Command::SetPresence { topic: topic.to_owned(), meta, reply }).await?;
        done.await.map_err(|_| self.stopped())?
    }

    /// Subscribes with every option: presence (and its metadata), a starting position.
    pub async fn subscribe_with(&self, topic: &str, options: SubscribeOptions) -> Result<Subscription> {
        let topic = Topic::new(topic)?;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(self.capacity);
        let (reply, done) = oneshot::channel();
        self.send(Command::Subscribe { topic: topic.clone(), options, id, tx, reply }).await?;
        let ready = done.await.map_err(|_| self.stopped())??;
        Ok(Subscription { topic, ready, rx, _client: self.commands.clone() })
    }

    /// Publishes an event and waits for the server's ack. While offline the
    /// publish waits in a bounded queue and is sent after reconnecting; it is
    /// retransmitted until acked, and the server drops duplicates by id.
    pub async fn publish(
        &self,
        topic: &str,
        event: impl Into<EventKind>,
        entity_id: impl Into<String>,
        payload: &(impl Serialize + ?Sized),
    ) -> Result<Ack> {
        self.publish_with(topic, event, entity_id, payload, PublishOptions::default()).await
    }

    /// [`publish`](Self::publish) with a `trace_id` that subscribers' logs can correlate.
    pub async fn publish_traced(
        &self,
        topic: &str,
        event: impl Into<EventKind>,
        entity_id: impl Into<String>,
        payload: &(impl Serialize + ?Sized),
        trace_id: Option<String>,
    ) -> Result<Ack> {
        let mut options = PublishOptions::default();
        options.trace_id = trace_id;
        self.publish_with(topic, event, entity_id, payload, options).await
    }

    /// Publishes with every option: a trace id, ephemeral (typing
    /// indicators: current subscribers only, no `seq`, no retransmission),
    /// or conditional on the topic's `seq` (fails with
    /// [`Error::Conflict`] if someone published since).
    ///
    /// ```no_run
    /// # async fn run(client: herald_client::Client) -> Result<(), herald_client::Error> {
    /// use herald_client::{Error, PublishOptions};
    ///
    /// let doc = serde_json::json!({"title": "Gifts 2026"});
    /// match client.publish_with("doc:7", "UPDATED", "7", &doc, PublishOptions::default().if_seq(41)).await {
    ///     Ok(ack) => println!("saved at {:?}", ack.position),
    ///     Err(Error::Conflict { current }) => println!("someone saved first (seq {current}): reload and merge"),
    ///     Err(error) => return Err(error),
    /// }
    /// client.publish_with("doc:7", "TYPING", "7", &(), PublishOptions::default().ephemeral()).await?;
    /// # Ok(()) }
    /// ```
    pub async fn publish_with(
        &self,
        topic: &str,
        event: impl Into<EventKind>,
        entity_id: impl Into<String>,
        payload: &(impl Serialize + ?Sized),
        options: PublishOptions,
    ) -> Result<Ack> {
        let topic = Topic::new(topic)?;
        let data = EventData {
            entity_id: entity_id.into(),
            payload: Payload::from_value(payload)?,
            user_id: None,
            tenant_id: None,
            timestamp: herald_protocol::now_timestamp(),
        };
        let (reply, done) = oneshot::channel();
        self.send(Command::Publish { topic, event: event.into(), data, options, reply }).await?;
        done.await.map_err(|_| self.stopped())?
    }

    /// A stream of everything: events of every subscription, resyncs,
    /// status changes, raw frames, server errors.
    pub async fn events(&self) -> Events {
        let (tx, rx) = mpsc::channel(self.capacity);
        // A stopped client gives a stream that ends at once.
        let _ = self.send(Command::Events { tx }).await;
        Events { rx }
    }

    /// The connection status, as a `watch` to read now or await changes of.
    pub fn status(&self) -> watch::Receiver<Status> {
        self.status.clone()
    }

    /// Waits until the client is connected (at once if it is), or fails if it stopped.
    pub async fn connected(&self) -> Result<()> {
        let mut status = self.status.clone();
        let status = status
            .wait_for(|s| matches!(s, Status::Connected { .. } | Status::Disconnected { .. }))
            .await
            .map_err(|_| Error::Closed)?;
        match &*status {
            Status::Disconnected { reason } => Err(Error::Stopped(reason.clone())),
            _ => Ok(()),
        }
    }

    /// Closes the connection (code 1000) and stops reconnecting. Pending
    /// publishes fail; subscription streams end.
    pub async fn close(&self) {
        let (reply, done) = oneshot::channel();
        if self.send(Command::Close { reply }).await.is_ok() {
            let _ = done.await;
        }
    }

    async fn send(&self, command: Command) -> Result<()> {
        self.commands.send(command).await.map_err(|_| self.stopped())
    }

    fn stopped(&self) -> Error {
        match &*self.status.borrow() {
            Status::Disconnected { reason } => Error::Stopped(reason.clone()),
            _ => Error::Closed,
        }
    }
}
