//! The handle applications hold.

use std::sync::{
    Arc,
    atomic::{AtomicU64, Ordering},
};

use herald_core::{PublishId, Status};
use herald_protocol::{EventData, EventKind, Payload, Topic};
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
/// let mut gifts = client.subscribe("gift-list:family-123").await?;
/// let ack = client.publish("gift-list:family-123", "UPDATED", "gift-7", &serde_json::json!({"bought": true})).await?;
/// println!("published as seq {:?}", ack.seq);
/// if let Some(Update::Event(event)) = gifts.next().await {
///     println!("{} {}", event.event, event.data.entity_id);
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
    /// The `seq` the event got, if the server numbers events.
    pub seq: Option<u64>,
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

    /// Subscribes to a topic (`gift-list:123`) or wildcard (`gift-list:*`).
    /// The subscription survives reconnects; drop it to unsubscribe.
    pub async fn subscribe(&self, topic: &str) -> Result<Subscription> {
        self.subscribe_inner(topic, false).await
    }

    /// Like [`subscribe`](Self::subscribe), and also receives presence:
    /// who else is subscribed with presence.
    pub async fn subscribe_with_presence(&self, topic: &str) -> Result<Subscription> {
        self.subscribe_inner(topic, true).await
    }

    async fn subscribe_inner(&self, topic: &str, presence: bool) -> Result<Subscription> {
        let topic = Topic::new(topic)?;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(self.capacity);
        let (reply, done) = oneshot::channel();
        self.send(Command::Subscribe { topic: topic.clone(), presence, id, tx, reply }).await?;
        done.await.map_err(|_| self.stopped())??;
        Ok(Subscription { topic, rx, _client: self.commands.clone() })
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
        self.publish_traced(topic, event, entity_id, payload, None).await
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
        let topic = Topic::new(topic)?;
        let data = EventData {
            entity_id: entity_id.into(),
            payload: Payload::from_value(payload)?,
            user_id: None,
            tenant_id: None,
            timestamp: herald_protocol::now_timestamp(),
        };
        let (reply, done) = oneshot::channel();
        self.send(Command::Publish { topic, event: event.into(), data, trace_id, reply }).await?;
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
